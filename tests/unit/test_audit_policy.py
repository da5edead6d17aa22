"""Waivers, fleet roll-up, exit-code policy and renderers on a constructed report."""

import datetime as dt
import json

import pytest

from metalctl.audit import formats, rollup, waivers
from metalctl.audit.model import FAIL, PASS, WAIVED, Evidence, HostAudit, Report, Result
from metalctl.audit.run import exit_code
from metalctl.errors import InputError
from metalctl.exitcodes import ExitCode

RULES = {"KRN-011": {"title": "IPv4 forwarding off", "severity": "medium", "references": {},
                     "rationale": "r", "remediation": "x", "tags": []},
         "LVT-002": {"title": "TCP off", "severity": "high", "references": {},
                     "rationale": "r", "remediation": None, "tags": []}}


def report(statuses: dict[str, dict[str, str]]) -> Report:
    hosts = []
    for host, rules in statuses.items():
        hosts.append(HostAudit(host, results=[
            Result(host, rid, RULES[rid]["title"], RULES[rid]["severity"], st,
                   Evidence("/etc/x", "0", "1")) for rid, st in rules.items()]))
    return Report("s1", "2026-11-23T00:00:00+00:00", 1.0, hosts, RULES)


def test_profile_waiver_applies_only_to_hosts_of_that_profile(tmp_path):
    w = tmp_path / "w.yaml"
    w.write_text("waivers:\n  - rule: KRN-011\n    profile: nfv-dpdk\n    reason: OVS-DPDK "
                 "hosts forward tenant traffic by design\n    expires: 2099-01-01\n")
    rep = report({"c1": {"KRN-011": FAIL}, "c2": {"KRN-011": FAIL}})
    waivers.apply(rep, waivers.load(w, set(RULES)), {"c1": "nfv-dpdk"})
    by = {r.host: r for r in rep.results()}
    assert by["c1"].status == WAIVED
    assert by["c1"].waiver["profile"] == "nfv-dpdk"
    assert by["c2"].status == FAIL


def test_waiver_file_errors_name_the_field(tmp_path):
    w = tmp_path / "w.yaml"
    w.write_text("waivers:\n  - rule: KRN-011\n    reason: short\n    expires: 2099-01-01\n")
    with pytest.raises(InputError, match=r"waivers\[0\].reason: give a real justification"):
        waivers.load(w, set(RULES))
    w.write_text("waivers:\n  - rule: KRN-011\n    reason: long enough reason\n"
                 "    expires: soon\n")
    with pytest.raises(InputError, match=r"waivers\[0\].expires: not a date"):
        waivers.load(w, set(RULES))


def test_expiry_is_checked_against_today(tmp_path):
    w = tmp_path / "w.yaml"
    w.write_text("waivers:\n  - rule: KRN-011\n    reason: until the new fabric\n"
                 "    expires: 2026-06-30\n")
    rep = report({"c1": {"KRN-011": FAIL}})
    assert waivers.apply(rep, waivers.load(w, set(RULES)), today=dt.date(2026, 6, 30)) == []
    rep2 = report({"c1": {"KRN-011": FAIL}})
    assert waivers.apply(rep2, waivers.load(w, set(RULES)), today=dt.date(2026, 7, 1))
    assert rep2.results()[0].status == FAIL


def test_fleet_names_the_hosts_that_differ_and_inconsistency():
    rep = report({f"c{i}": {"LVT-002": PASS if i < 4 else FAIL} for i in range(5)})
    row = rollup.fleet(rep)[0]
    assert row["consensus"] == PASS
    assert row["differing_hosts"] == ["c4"]
    split = report({"a": {"LVT-002": PASS}, "b": {"LVT-002": FAIL}})
    assert rollup.fleet(split)[0]["consensus"] == "inconsistent"


def test_exit_code_policy():
    medium = report({"c1": {"KRN-011": FAIL}})
    assert exit_code(medium, "high") == ExitCode.OK
    assert exit_code(medium, "medium") == ExitCode.FINDINGS
    assert exit_code(report({"c1": {"KRN-011": WAIVED}}), "low") == ExitCode.OK
    unreachable = report({"c1": {"LVT-002": PASS}})
    unreachable.hosts.append(HostAudit("c2", error="host c2: connection refused"))
    assert exit_code(unreachable, "none") == ExitCode.FAILED


def test_sarif_marks_waived_results_as_suppressed():
    rep = report({"c1": {"KRN-011": WAIVED, "LVT-002": FAIL}})
    rep.results()[0].waiver = {"reason": "needed by OVS", "expires": "2099-01-01"}
    doc = json.loads(formats.sarif(rep))
    res = {r["ruleId"]: r for r in doc["runs"][0]["results"]}
    assert res["KRN-011"]["suppressions"][0]["justification"].startswith("needed by OVS")
    assert "suppressions" not in res["LVT-002"]
    assert res["LVT-002"]["level"] == "error"
    assert res["LVT-002"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "c1/etc/x"  # relative under HOSTS: GitHub code scanning shows it (GH1005)
