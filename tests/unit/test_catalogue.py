"""The whole rule catalogue, as ansible-lint tests its own: every shipped rule is valid,
and every check kind is exercised by a fixture that passes and one that fails."""

from __future__ import annotations

import re
from typing import Any

import pytest

from metalctl.errors import InputError
from metalctl.rules import catalogue, engine, kinds
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import FileFact, HostFacts
from metalctl.rules.kinds.bmc import TESTS

RULES = catalogue.load()
SITE = {"lsm": "selinux", "libvirt": {"tls_priority": "NORMAL"}, "updates": {"apply": "no"},
        "repositories": {"dnf": [{"id": "baseos", "gpgkey": "file:///k"}],
                         "apt": [{"uri": "http://deb.example/debian",
                                  "signed_by": "/usr/share/keyrings/site.gpg"}]}}


def test_every_shipped_rule_is_well_formed():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids)) >= 70
    for r in RULES:
        assert re.fullmatch(r"[A-Z]{3}-\d{3}", r.id)
        assert r.severity in catalogue.SEVERITIES
        assert set(r.references) <= {"stig_rhel9", "cis_rhel9", "cis_debian12", "ossg", "scap",
                                      "upstream"}
        assert any(r.references.values()), f"{r.id}: no reference"
        assert r.kind in kinds.REGISTRY
        # fixed by harden (a kind that plans changes) or says how to fix it by hand
        assert r.remediation or r.kind not in CHECK_ONLY, f"{r.id}: no remediation"


CHECK_ONLY = {"cmdline", "probe_lines", "present", "process_labels", "certificate", "report",
              "bmc"}


def test_the_kind_list_lives_in_one_place():
    schema_enum = catalogue._frame_schema()["properties"]["check"]["properties"]["kind"]
    assert set(schema_enum["enum"]) == set(kinds.REGISTRY)


def test_every_bmc_test_is_used_by_a_shipped_rule():
    used = {r.check["test"] for r in RULES if r.kind == "bmc"}
    assert used == set(TESTS)


@pytest.mark.parametrize(("body", "field"), [
    ("{kind: libvirt_kv, file: /etc/libvirt/qemu.conf, key: k, vaule: 1}", "check.vaule"),
    ("{kind: sshd, key: PermitRootLogin, allowed: [no], max: 3}", "check"),
    ("{kind: service}", "check.name"),
    ("{kind: no_such_kind}", "check.kind"),
    ("{kind: files, files: [{path: /x, sorce: pki:ca}]}", "check.files[0].sorce"),
])
def test_a_misspelled_or_incomplete_rule_is_an_input_error_at_load(tmp_path, body, field):
    (tmp_path / "site.yaml").write_text(
        "- id: XYZ-001\n  title: A title\n  rationale: a reason\n  severity: low\n"
        f"  platforms: [rhel]\n  references: {{cis_rhel9: ['1.1']}}\n  check: {body}\n")
    with pytest.raises(InputError) as ei:
        catalogue.load([tmp_path])
    assert ei.value.path.endswith("site.yaml")
    assert ei.value.field.startswith(f"XYZ-001.{field}")
    assert ei.value.line == 7


# --- every kind exercised: one passing and one failing host per kind ----------------------


def facts(**kw: Any) -> HostFacts:
    f = HostFacts(os_id="rhel", family="rhel", init="systemd", selinux_enabled=True,
                  getenforce="Enforcing", pkg={"dnf"}, groups={"root", "qemu"},
                  binaries={"libvirtd"}, processes={"libvirtd"})
    files = kw.pop("files", {})
    modes = kw.pop("modes", {})
    f.files = {p: FileFact(True, modes.get(p, "644"), "root", "root", None, c)
               for p, c in files.items()}
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def rule(check: dict[str, Any], rid: str = "TST-001") -> Rule:
    return Rule(id=rid, title="fixture rule", rationale="fixture", severity="low",
                platforms=("rhel",), check=check, remediation="fix it by hand")


FIREWALLD_OK = ("state: running\ndefault: metalctl\nactive: metalctl\nmetalctl (active)\n"
                "  target: DROP\n  services: ssh\n  ports:\n  rich rules:\n"
                '\trule family="ipv4" destination address="192.0.2.1" port port="16514" '
                'protocol="tcp" accept\n'
                '\trule family="ipv4" destination address="192.0.2.1" port port="49152-49215" '
                'protocol="tcp" accept\n')
CERT_FAIL = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"
QEMU = "/etc/libvirt/qemu.conf"
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]] = {
    # kind: (check body, passing facts, failing facts, failing status)
    "libvirt_kv": ({"file": QEMU, "key": "security_driver", "value": "selinux"},
                   {"files": {QEMU: 'security_driver = "selinux"\n'}},
                   {"files": {QEMU: 'security_driver = "none"\n'}}, "change"),
    "libvirt_kv_set": ({"file": QEMU, "values": {"vnc_tls": 1}},
                       {"files": {QEMU: "vnc_tls = 1\n"}}, {"files": {QEMU: ""}}, "change"),
    "shell_kv": ({"file": "/etc/selinux/config", "key": "SELINUX", "value": "enforcing"},
                 {"files": {"/etc/selinux/config": "SELINUX=enforcing\n"}},
                 {"files": {"/etc/selinux/config": "SELINUX=permissive\n"}}, "change"),
    "ini_set": ({"file": "/etc/dnf/dnf.conf", "section": "main", "values": {"gpgcheck": 1}},
                {"files": {"/etc/dnf/dnf.conf": "[main]\ngpgcheck=True\n"}},
                {"files": {"/etc/dnf/dnf.conf": "[main]\ngpgcheck=0\n"}}, "change"),
    "ini_all": ({"glob": "/etc/yum.repos.d/*.repo", "values": {"gpgcheck": 1}},
                {"files": {"/etc/yum.repos.d/a.repo": "[a]\ngpgcheck=1\n"}},
                {"files": {"/etc/yum.repos.d/a.repo": "[a]\ngpgcheck=0\n"}}, "change"),
    "file": ({"path": "/etc/motd", "content": "hi\n", "mode": "0644"},
             {"files": {"/etc/motd": "hi\n"}}, {"files": {"/etc/motd": "bye\n"}}, "change"),
    "files": ({"files": [{"path": "/etc/a", "content": "a\n"}]},
              {"files": {"/etc/a": "a\n"}}, {}, "change"),
    "units": ({"enable": ["x.socket"]}, {"units": {"x.socket": "enabled"}},
              {"units": {"x.socket": "disabled"}}, "change"),
    "command": ({"probe": "true", "expect": "^ok$"}, {"probes": {"TST-001": "ok"}},
                {"probes": {"TST-001": "no"}}, "manual"),
    "selinux_runtime": ({}, {}, {"getenforce": "Permissive"}, "change"),
    "service": ({"name": "libvirtd"},
                {"probes": {"service:libvirtd": "pidfile=/run/libvirtd.pid pid=7 comm=libvirtd"}},
                {"probes": {"service:libvirtd": ""}}, "change"),
    "apparmor_runtime": ({}, {"lsms": ["capability", "apparmor"], "apparmor_module": "Y",
                              "probes": {"aa-status": "enabled"}},
                         {"lsms": ["capability"], "probes": {"aa-status": "absent"}}, "manual"),
    "file_modes": ({"paths": ["/etc/nova/*.conf"], "clear": "0007"},
                   {"files": {"/etc/nova/nova.conf": "x"}, "modes": {"/etc/nova/nova.conf": "640"}},
                   {"files": {"/etc/nova/nova.conf": "x"}}, "change"),
    "listening": ({"port": 16514}, {"listening": {"0.0.0.0:16514"}}, {}, "change"),
    "report": ({"probe_dnf": "echo 0", "probe_apt": "echo 0"},
               {"probes": {"TST-001-dnf": "0"}}, {}, "report"),
    "dnf_allowlist": ({}, {"files": {"/etc/yum.repos.d/a.repo": "[baseos]\ngpgkey=file:///k\n"}},
                      {"files": {"/etc/yum.repos.d/a.repo": "[other]\nenabled=1\n"}},
                      "change"),
    "apt_allowlist": ({}, {"files": {"/etc/apt/sources.list":
                                     "deb [signed-by=/usr/share/keyrings/site.gpg] "
                                     "http://deb.example/debian bookworm main\n"}},
                      {"files": {"/etc/apt/sources.list":
                                 "deb http://elsewhere.example/debian bookworm main\n"}},
                      "change"),
    "sshd": ({"key": "PermitRootLogin", "allowed": ["no"]},
             {"probes": {"sshd-T": "permitrootlogin no\n"}},
             {"probes": {"sshd-T": "permitrootlogin yes\n"}}, "change"),
    "sysctl": ({"key": "kernel.kptr_restrict", "value": 1},
               {"probes": {"sysctl:kernel.kptr_restrict": "kernel.kptr_restrict = 1\n"}},
               {"probes": {"sysctl:kernel.kptr_restrict": "kernel.kptr_restrict = 0\n"}}, "change"),
    "cmdline": ({"absent": ["selinux=0"]}, {"probes": {"cmdline": "ro quiet"}},
                {"probes": {"cmdline": "ro selinux=0"}}, "deferred"),
    "audit_rules": ({"rules": ["-w /etc/libvirt/ -p wa -k virt"]},
                    {"processes": {"auditd"}, "probes": {"auditctl-l": "-w /etc/libvirt -p wa "
                                                                       "-k virt\n"},
                     "files": {"/etc/audit/rules.d/50-metalctl.rules":
                               "-w /etc/libvirt/ -p aw -k virt\n"}},
                    {"processes": {"auditd"}, "probes": {"auditctl-l": "No rules\n"}},
                    "change"),
    "probe_lines": ({"probe": "find /"}, {"probes": {"TST-001": ""}},
                    {"probes": {"TST-001": "/world-writable\n"}}, "manual"),
    "present": ({"probe": "auditctl -l", "expect": "-w /etc/libvirt"},
                {"probes": {"TST-001": "-w /etc/libvirt -p wa\n"}},
                {"probes": {"TST-001": ""}}, "manual"),
    "process_labels": ({}, {"probes": {"qemu-labels": "system_u:system_r:svirt_t:s0:c1,c2 "
                                                      "qemu-kvm\n"}},
                       {"probes": {"qemu-labels": "unconfined_t qemu-kvm\n"}}, "manual"),
    "firewall": ({"address": "192.0.2.1", "ports": [16514, "49152-49215"]},
                 {"probes": {"firewall:firewalld": FIREWALLD_OK},
                  "units": {"firewalld.service": "enabled"}},
                 {"probes": {"firewall:firewalld": "state: not running\n"}}, "change"),
    "certificate": ({"path": "/etc/pki/libvirt/servercert.pem"}, None,
                    {"files": {"/etc/pki/libvirt/servercert.pem": CERT_FAIL}}, "manual"),
}


def test_every_kind_the_engine_evaluates_has_a_fixture():
    evaluated = {n for n, k in kinds.REGISTRY.items() if k.evaluate is not None}
    assert set(CASES) == evaluated


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_passes_and_fails_on_its_fixture(kind, tmp_path):
    body, good, bad, failing = CASES[kind]
    r = rule({"kind": kind, **body})
    kinds.get(kind).schema()  # the fixture body is valid for its kind
    from metalctl.data import validate
    validate(r.check, kinds.get(kind).schema(), "fixture")
    ctx = engine.Context(host="h", mgmt_address="192.0.2.1", allowed_dns=[], site=SITE)
    spec = engine.gather_spec([r])  # the kind says what it needs gathered
    assert spec.content or spec.globs or spec.probes or spec.units or kind in (
        "selinux_runtime", "listening", "process_labels")
    [failed] = engine.evaluate([r], facts(**bad), ctx).outcomes
    assert failed.status == failing, failed
    if good is None:  # a valid certificate needs a CA: covered by the PKI test below
        return
    [passed] = engine.evaluate([r], facts(**good), ctx).outcomes
    assert passed.status in ("compliant", "report"), passed


def test_a_valid_certificate_chained_to_the_site_ca_passes(tmp_path):
    from metalctl.pki import SitePKI

    pki = SitePKI(tmp_path / "pki", organization="Site")
    pki.init()
    certs = pki.issue("h1", ["h1.example"], ["192.0.2.1"])
    r = rule({"kind": "certificate", "path": "/c.pem", "ca": "/ca.pem"})
    f = facts(files={"/c.pem": certs.server_cert.read_text(),
                     "/ca.pem": pki.ca_cert_path.read_text()})
    ctx = engine.Context(host="h1", mgmt_address="192.0.2.1", allowed_dns=[], site=SITE)
    [o] = engine.evaluate([r], f, ctx).outcomes
    assert o.status == "compliant", o


def test_the_readme_kinds_table_matches_the_kind_schemas():
    from metalctl.data.paths import data_dir

    readme = (data_dir("hardening") / "README.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r"^\| `([a-z_]+)` \| ([^|]*) \|", readme, re.MULTILINE)}
    assert set(rows) == set(kinds.REGISTRY)
    for name, kind in kinds.REGISTRY.items():
        documented = set(re.findall(r"`([a-z_]+)`\??", rows[name].split(";")[0]))
        assert documented == set(kind.body), (name, documented ^ set(kind.body))
        optional = set(re.findall(r"`([a-z_]+)`\?", rows[name].split(";")[0]))
        assert optional == set(kind.body) - set(kind.required), name
