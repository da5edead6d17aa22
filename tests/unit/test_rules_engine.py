"""Planning on gathered facts (no host needed): RHEL/SELinux and systemd paths the
Debian lab hosts cannot show, editors, rule data validation, the PKI."""

import os
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from metalctl.errors import InputError
from metalctl.pki import SitePKI
from metalctl.rules import catalogue as rules
from metalctl.rules import edit, engine, gather

RULES = rules.load()
SITE = {"lsm": "auto", "libvirt": {"tls_priority": "NORMAL:-VERS-ALL:+VERS-TLS1.2"},
        "updates": {"apply": "no"}, "repositories": {"dnf": [], "apt": []}}


def rhel_facts(**kw) -> gather.HostFacts:
    f = gather.HostFacts(os_id="rhel", os_like="fedora", version="9.4", family="rhel",
                         init="systemd", selinux_enabled=True, getenforce="Permissive",
                         pkg={"dnf"}, groups={"root", "qemu"}, binaries={"virtproxyd"},
                         processes={"virtproxyd"})
    conf = "#listen_tls = 0\n"
    f.files = {p: gather.FileFact(True, "644", "root", "root", None, c) for p, c in {
        "/etc/selinux/config": "SELINUX=permissive\nSELINUXTYPE=targeted\n",
        "/etc/libvirt/virtproxyd.conf": conf, "/etc/libvirt/qemu.conf": "",
        "/etc/dnf/dnf.conf": "[main]\ngpgcheck=True\n",
        "/etc/yum.repos.d/a.repo": "[appstream]\ngpgcheck=0\n"}.items()}
    f.units = {"virtproxyd-tls.socket": "disabled", "virtproxyd-tcp.socket": "enabled"}
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def ctx() -> engine.Context:
    return engine.Context(host="c1", mgmt_address="192.0.2.10",
                          allowed_dns=["C=US,O=s,CN=c1"], site=SITE)


def by_rule(plan):
    return {o.rule: o for o in plan.outcomes}


def test_rhel_selinux_permissive_is_enforced_and_modular_daemon_configured():
    plan = engine.evaluate(RULES, rhel_facts(), ctx())
    o = by_rule(plan)
    assert o["SEL-001"].status == "change"
    assert ("SEL-003", "setenforce 1") in plan.commands
    assert o["SEL-006"].status == "change"  # SELinux active: the driver is set now
    assert 'security_driver = "selinux"' in plan.files["/etc/libvirt/qemu.conf"].new
    # modular libvirt: TLS settings go to virtproxyd.conf, socket units are switched
    assert "listen_tls = 1" in plan.files["/etc/libvirt/virtproxyd.conf"].new
    assert "/etc/libvirt/libvirtd.conf" not in plan.files
    assert ("LVT-003", "systemctl enable virtproxyd-tls.socket") in plan.commands
    assert ("LVT-003", "systemctl disable --now virtproxyd-tcp.socket") in plan.commands
    assert o["LVT-004"].status == "notapplicable"  # sysv-only rule
    # gpgcheck=True already means on; the repo's gpgcheck=0 is fixed
    assert "gpgcheck=True" in plan.files["/etc/dnf/dnf.conf"].new
    assert "gpgcheck=1" in plan.files["/etc/yum.repos.d/a.repo"].new
    assert o["PKG-006"].status == "notchecked"  # the site declared no repositories


def test_selinux_disabled_schedules_relabel_and_defers():
    plan = engine.evaluate(RULES, rhel_facts(selinux_enabled=False, getenforce="Disabled"),
                           ctx())
    o = by_rule(plan)
    assert ("SEL-001", "touch /.autorelabel") in plan.commands
    assert o["SEL-003"].status == "deferred"
    assert o["SEL-006"].status == "deferred"
    assert "security_driver" not in plan.files["/etc/libvirt/qemu.conf"].new
    assert any("relabel scheduled" in r for r in plan.reboot_required)


def test_missing_pki_and_group_are_errors_not_guesses():
    plan = engine.evaluate(RULES, rhel_facts(groups={"root"}), ctx())
    o = by_rule(plan)
    assert o["LVT-020"].status == "error"
    assert "metalctl pki issue" in o["LVT-020"].detail


def test_editors_are_idempotent_and_keep_comments():
    text = "# listen_tls = 0\nlisten_tcp = 1\nlisten_tcp = 1\n"
    once = edit.set_kv(text, "listen_tcp", "0")
    assert once == "# listen_tls = 0\nlisten_tcp = 0\n"
    assert edit.set_kv(once, "listen_tcp", "0") == once
    assert edit.libvirt_value(["a", "b"]) == '["a", "b"]'
    ini = "[a]\nx=1\n\n[b]\ny=2\n"
    assert edit.set_ini(ini, "a", "z", "3") == "[a]\nx=1\nz=3\n\n[b]\ny=2\n"
    assert edit.get_ini(edit.set_ini(ini, "c", "k", "v"), "c", "k") == "v"
    assert edit.set_shell("SELINUX=permissive\n", "SELINUX", "enforcing") == "SELINUX=enforcing\n"


def test_rule_data_is_validated_with_file_and_rule_named(tmp_path):
    assert len({r.id for r in RULES}) == len(RULES) >= 30
    assert all(r.references is not None for r in RULES)
    (tmp_path / "bad.yaml").write_text("- id: XYZ-001\n  title: A title\n  rationale: why not\n"
                                       "  severity: urgent\n  platforms: [rhel]\n"
                                       "  check: {kind: libvirt_kv}\n")
    with pytest.raises(InputError, match=r"bad.yaml:4: XYZ-001.severity"):
        rules.load([tmp_path])
    (tmp_path / "bad.yaml").write_text("- id: SEL-001\n  title: Duplicate\n  rationale: again\n"
                                       "  severity: low\n  platforms: [rhel]\n"
                                       "  check: {kind: service, name: x}\n")
    with pytest.raises(InputError, match="duplicate rule id"):
        rules.load([tmp_path])


def test_pki_issues_what_libvirt_checks(tmp_path):
    pki = SitePKI(tmp_path / "pki", organization="Site")
    pki.init()
    assert pki.init() == pki.ca_cert_path  # idempotent: the CA is kept
    certs = pki.issue("c1", ["c1.example"], ["192.0.2.10"])
    server = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    client = x509.load_pem_x509_certificate(certs.client_cert.read_bytes())
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ExtendedKeyUsageOID.CLIENT_AUTH in \
        client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    names, addresses = pki.sans("c1")
    assert names == ["c1", "c1.example"]
    assert addresses == ["192.0.2.10"]
    assert certs.client_dn == "C=US,O=Site,CN=c1"
    for key in (pki.ca_key_path, certs.server_key, certs.client_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert pki.due(30) == []
    assert [h.host for h in pki.due(400)] == ["c1"]
    other = SitePKI(tmp_path / "imported")
    other.import_ca(pki.ca_cert_path, pki.ca_key_path)
    with pytest.raises(InputError, match="not a CA certificate"):
        SitePKI(tmp_path / "x").import_ca(certs.server_cert, certs.server_key)
