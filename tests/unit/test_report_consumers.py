"""metalctl's audit reports, checked by the programs that read them.

JUnit against Jenkins xUnit's junit-10.xsd and Ant's JUnit schema; SARIF with Microsoft's
SARIF Multitool and GitHub's rules. The report covers every status, a waiver, a host that
could not be reached, a finding on a known line and one about a whole file.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import xmlschema

from metalctl.audit import formats, xccdf
from metalctl.audit.locate import key_line, locate, rule_path
from metalctl.audit.model import (
    ERROR,
    FAIL,
    NOTAPPLICABLE,
    NOTCHECKED,
    PASS,
    WAIVED,
    Evidence,
    HostAudit,
    Report,
    Result,
)
from metalctl.rules.gather import FileFact, HostFacts
from tests.consumers import SCHEMAS, run, sarif_github_findings, tool, validate_junit

RULES = {
    "SSH-003": {"title": "Root login by key only", "severity": "high",
                "references": {"stig_rhel9": ["RHEL-09-255045"], "cis_rhel9": ["5.1.20"]},
                "rationale": "r", "remediation": "metalctl harden --rule SSH-003",
                "tags": ["sshd"]},
    "LVT-002": {"title": "libvirtd plain TCP listener off", "severity": "high",
                "references": {"ossg": ["Hardening the virtualization layers"]},
                "rationale": "r", "remediation": None, "tags": ["libvirt"]},
    "KRN-011": {"title": "IPv4 forwarding off", "severity": "medium",
                "references": {"stig_rhel9": ["RHEL-09-253075"], "cis_rhel9": ["3.3.1"],
                               "scap": ["sysctl_net_ipv4_ip_forward"]},
                "rationale": "r", "remediation": "x", "tags": []},
    "LVT-010": {"title": "libvirtd listening only on TLS port", "severity": "low",
                "references": {}, "rationale": "r", "remediation": None, "tags": []},
    "SEL-001": {"title": "SELinux enforcing", "severity": "high", "references": {},
                "rationale": "r", "remediation": None, "tags": []},
    "PKG-002": {"title": "gpgcheck on", "severity": "info", "references": {},
                "rationale": "r", "remediation": None, "tags": []},
}


def sample_report() -> Report:
    """Two hosts with every status, a waiver, and a third host that was unreachable."""
    def res(host, rid, status, **ev):
        meta = RULES[rid]
        return Result(host, rid, meta["title"], meta["severity"], status, Evidence(**ev),
                      references=meta["references"])
    h1 = HostAudit("h1", duration_s=1.25, results=[
        res("h1", "SSH-003", FAIL, source="sshd -T", expected="prohibit-password",
            actual="yes", file="/etc/ssh/sshd_config", line=42),
        res("h1", "LVT-002", FAIL, source="/etc/libvirt/libvirtd.conf", expected="0",
            actual=None, file="/etc/libvirt/libvirtd.conf"),
        res("h1", "KRN-011", WAIVED, source="sysctl -a", expected="0", actual="1",
            file="/proc/sys/net/ipv4/ip_forward"),
        res("h1", "LVT-010", ERROR, detail="ss failed"),
        res("h1", "SEL-001", NOTAPPLICABLE, detail="debian"),
        res("h1", "PKG-002", NOTCHECKED, detail="no declared repositories"),
    ])
    h1.results[2].waiver = {"rule": "KRN-011", "reason": "OVS hosts forward tenant traffic",
                            "expires": "2099-01-01", "by": "net team"}
    h1.results[2].original_status = FAIL
    h2 = HostAudit("h2", duration_s=0.5, results=[
        res("h2", rid, PASS) for rid in RULES])
    h3 = HostAudit("h3", error="host h3: connection refused")
    return Report("scan-7", "2026-12-06T01:02:03+00:00", 2.0, [h1, h2, h3], RULES)


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_is_valid_for_jenkins_xunit_and_ant():
    validate_junit(formats.junit(sample_report()))


def test_jenkins_xunit_schema_rejects_skipped_on_testsuites():
    # the schema is the real one: it refuses what the issue saw Jenkins refuse
    bad = ('<testsuites skipped="1"><testsuite name="a" tests="0" failures="0" errors="0"/>'
           "</testsuites>")
    errors = list(xmlschema.XMLSchema(str(SCHEMAS / "jenkins-xunit-junit-10.xsd"))
                  .iter_errors(bad))
    assert errors
    assert "skipped" in str(errors[0])


def test_junit_counts_per_suite():
    root = ET.fromstring(formats.junit(sample_report()))
    assert root.attrib == {}
    h1 = root.find("testsuite[@name='h1']")
    assert (h1.get("tests"), h1.get("failures"), h1.get("errors"), h1.get("skipped")) == \
        ("6", "2", "1", "3")
    assert h1.get("timestamp") == "2026-12-06T01:02:03"
    assert root.find("testsuite[@name='h3']/testcase/error").get("type") == "unreachable"


# --- SARIF ---------------------------------------------------------------------------------


def test_sarif_passes_github_rules_of_sarif_multitool(tmp_path):
    log = tmp_path / "audit.sarif"
    log.write_text(formats.sarif(sample_report()))
    findings = sarif_github_findings(log)
    assert [f for f in findings if f["rule"].startswith("GH") or f["level"] == "error"] == []


def test_sarif_multitool_flags_what_github_does_not_display(tmp_path):
    # the negative control: the same run with the old ssh:// locations and no region
    doc = json.loads(formats.sarif(sample_report()))
    for result in doc["runs"][0]["results"]:
        result["locations"] = [{"physicalLocation": {"artifactLocation": {
            "uri": f"ssh://{result['properties']['host']}/etc/x"}}}]
    log = tmp_path / "old.sarif"
    log.write_text(json.dumps(doc))
    rules = {f["rule"] for f in sarif_github_findings(log)}
    assert {"GH1003", "GH1005"} <= rules


def test_sarif_locations_are_relative_with_the_known_line():
    doc = json.loads(formats.sarif(sample_report()))
    run = doc["runs"][0]
    assert "HOSTS" in run["originalUriBaseIds"]
    where = {r["ruleId"]: r["locations"][0]["physicalLocation"] for r in run["results"]}
    assert where["SSH-003"] == {"artifactLocation": {"uri": "h1/etc/ssh/sshd_config",
                                                     "uriBaseId": "HOSTS"},
                                "region": {"startLine": 42}}
    assert where["LVT-002"]["region"] == {"startLine": 1}  # key absent: the whole file
    assert where["KRN-011"]["artifactLocation"]["uri"] == "h1/proc/sys/net/ipv4/ip_forward"
    assert run["results"][[r["ruleId"] for r in run["results"]].index("KRN-011")][
        "suppressions"][0]["status"] == "accepted"


def test_locate_finds_the_line_that_sets_the_key():
    facts = HostFacts(files={
        "/etc/ssh/sshd_config": FileFact(True, content="# PermitRootLogin no\n"
                                         "Port 22\npermitrootlogin yes\n"),
        "/etc/libvirt/libvirtd.conf": FileFact(True, content="#listen_tcp = 1\n\n"
                                               "listen_tcp=1\n")})
    assert locate("sshd", {"key": "PermitRootLogin"}, facts, {}) == \
        ("/etc/ssh/sshd_config", 3)
    assert locate("libvirt_kv", {"file": "{conf}", "key": "listen_tcp"}, facts,
                  {"conf": "/etc/libvirt/libvirtd.conf"}) == ("/etc/libvirt/libvirtd.conf", 3)
    assert locate("libvirt_kv", {"file": "{unknown}", "key": "x"}, facts, {}) == (None, None)
    assert rule_path("sysctl", {"key": "net.ipv4.ip_forward"}, {}) == \
        "/proc/sys/net/ipv4/ip_forward"
    assert key_line("listen_tls_x = 1\nlisten_tls = 1\n", "listen_tls") == 2


# --- XCCDF 1.2 (OpenSCAP) --------------------------------------------------------------------


def test_xccdf_passes_oscap_validate_and_renders(tmp_path):
    path = tmp_path / "audit.xccdf.xml"
    path.write_text(xccdf.xccdf(sample_report()))
    oscap = tool("oscap")
    check = run([oscap, "xccdf", "validate", str(path)])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Error" not in check.stdout + check.stderr
    page = tmp_path / "report.html"
    shown = run([oscap, "xccdf", "generate", "report", "--output", str(page), str(path)])
    assert shown.returncode == 0, shown.stderr
    assert "W: oscap" not in shown.stderr  # every element was understood
    html = page.read_text()
    # the most recent TestResult is rendered: the host that could not be reached
    assert "host h3: connection refused" in html
    assert "xccdf_io.metalctl_rule_SSH-003" in html


def test_xccdf_statuses_idents_and_waiver_as_oscap_renders_them(tmp_path):
    one = sample_report()
    one.hosts = one.hosts[:1]
    path = tmp_path / "h1.xml"
    path.write_text(xccdf.xccdf(one))
    page = tmp_path / "h1.html"
    shown = run([tool("oscap"), "xccdf", "generate", "report", "--output", str(page),
                 str(path)])
    assert shown.returncode == 0, shown.stderr
    text = " ".join(re.sub(r"<[^>]+>", " ", page.read_text()).split())
    assert "RHEL-09-255045" in text  # STIG id as an ident
    assert "waived (evaluated: fail) by net team until 2099-01-01" in text
    root = ET.fromstring(path.read_text())
    ns = {"x": xccdf.NS}
    got = {rr.get("idref").rsplit("_", 1)[1]: rr.find("x:result", ns).text
           for rr in root.iterfind(".//x:TestResult/x:rule-result", ns)}
    assert got == {"SSH-003": "fail", "LVT-002": "fail", "KRN-011": "informational",
                   "LVT-010": "error", "SEL-001": "notapplicable", "PKG-002": "notchecked"}
    score = root.find(".//x:TestResult/x:score", ns)
    assert (score.text, score.get("maximum")) == ("0", "2")
    idents = {i.get("system"): i.text for i in root.iterfind("x:Rule/x:ident", ns)}
    assert idents["https://www.cisecurity.org/cis-benchmarks/"] in ("5.1.20", "3.3.1")
