"""XCCDF 1.2 results of an audit, for compliance tools that import SCAP results.

One ``<Benchmark>`` (NIST IR 7275 rev 4, namespace ``http://checklists.nist.gov/xccdf/1.2``)
holds every rule of the scan (title, rationale, references, STIG and CIS ids as
``<ident>``, the remediation as ``<fixtext>``) and one ``<TestResult>`` per host or BMC.
Statuses map one to one (pass, fail, error, notapplicable, notchecked); a host that could
not be scanned has ``error`` on every rule with the reason as its message. A waived
result is ``informational`` (checked, not counted for or against compliance) with a
warning message that documents the exception: what it evaluated to, the reason, who
waived it and until when. XCCDF's ``<override>`` would be the natural place, but
OpenSCAP 1.3.7's schematron (xccdf_1.2-schematron.xsl, the rule citing section 6.6.4.3)
compares every ``rule-result`` of a TestResult that holds one override with
``../override/new-result``, so every other result of that host fails ``oscap xccdf
validate``. Scores use the flat unweighted model (passes out of pass + fail).

Checked by OpenSCAP itself in the tests: ``oscap xccdf validate`` and
``oscap xccdf generate report``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any

from metalctl import __version__
from metalctl.audit.model import ERROR, FAIL, WAIVED, HostAudit, Report, Result

NS = "http://checklists.nist.gov/xccdf/1.2"
DC = "http://purl.org/dc/elements/1.1/"
#: the reverse-DNS namespace of every XCCDF 1.2 id metalctl writes
ID_NS = "io.metalctl"
_STIG, _CIS = "https://public.cyber.mil/stigs/", "https://www.cisecurity.org/cis-benchmarks/"
#: ident systems for the reference kinds that are identifiers of a control (the benchmark
#: keys of hardening/benchmarks.yaml)
IDENT_SYSTEMS = {"stig_rhel9": _STIG, "cis_rhel9": _CIS, "cis_debian12": _CIS}
#: where each reference kind is published (``<reference href=...>``)
REFERENCE_HREFS = {**IDENT_SYSTEMS,
                   "scap": "https://github.com/ComplianceAsCode/content",
                   "ossg": "https://docs.openstack.org/security-guide/",
                   "upstream": "https://libvirt.org/"}
FLAT_UNWEIGHTED = "urn:xccdf:scoring:flat-unweighted"


def _id(kind: str, name: str) -> str:
    """Return an XCCDF 1.2 id ``xccdf_io.metalctl_<kind>_<name>`` (an NCName)."""
    return f"xccdf_{ID_NS}_{kind}_{re.sub(r'[^A-Za-z0-9._-]', '-', name)}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{NS}}}{tag}", attrib)
    if text is not None:
        el.text = text
    return el


def _rule(bench: ET.Element, rid: str, meta: dict[str, Any]) -> None:
    rule = _sub(bench, "Rule", id=_id("rule", rid), selected="true",
                severity=meta.get("severity") or "unknown")
    _sub(rule, "title", meta["title"])
    _sub(rule, "description", meta.get("rationale") or meta["title"])
    refs = meta.get("references") or {}
    for kind, items in sorted(refs.items()):
        for item in items:
            _sub(rule, "reference", f"{kind}: {item}",
                 href=REFERENCE_HREFS.get(kind, "https://example.invalid/metalctl"))
    if meta.get("rationale"):
        _sub(rule, "rationale", meta["rationale"])
    for kind, system in IDENT_SYSTEMS.items():
        for item in refs.get(kind, []):
            _sub(rule, "ident", str(item), system=system)
    _sub(rule, "fixtext", meta.get("remediation") or f"metalctl harden --rule {rid}")


def _message(r: Result) -> str:
    e = r.evidence
    parts = [p for p in (
        e.source and f"source {e.source}" + (f" line {e.line}" if e.line else ""),
        e.actual is not None and f"found {e.actual}",
        e.expected is not None and f"expected {e.expected}",
        e.detail) if p]
    return "; ".join(parts) or r.title


def _rule_result(tr: ET.Element, r: Result, when: str, refs: dict[str, list[str]]) -> None:
    rr = _sub(tr, "rule-result", idref=_id("rule", r.rule), time=when,
              severity=r.severity or "unknown")
    _sub(rr, "result", "informational" if r.status == WAIVED else str(r.status))
    for kind, system in IDENT_SYSTEMS.items():
        for item in refs.get(kind, []):
            _sub(rr, "ident", str(item), system=system)
    if r.status == WAIVED:
        w = r.waiver or {}
        _sub(rr, "message", f"waived (evaluated: {r.original_status or FAIL}) by "
             f"{w.get('by') or 'the site waiver file'} until {w.get('expires')}: "
             f"{w.get('reason')}", severity="warning")
    severity = {FAIL: "warning", ERROR: "error"}.get(r.status, "info")
    _sub(rr, "message", _message(r), severity=severity)


def _test_result(bench: ET.Element, report: Report, h: HostAudit, end: str) -> None:
    tr = _sub(bench, "TestResult", id=_id("testresult", f"{report.scan_id}_{h.host}"),
              **{"start-time": report.started_at, "end-time": end,
                 "test-system": f"cpe:/a:metalctl:metalctl:{__version__}",
                 "version": __version__})
    _sub(tr, "benchmark", href=f"#{_id('benchmark', 'audit')}")
    # the reason a host was not scanned goes in the title (oscap 1.3.7 skips <remark>)
    _sub(tr, "title", f"metalctl audit {report.scan_id}: {h.host}"
         + (f" (not scanned: {h.error})" if h.error else ""))
    _sub(tr, "target", h.host)
    results = h.results
    if h.error:  # nothing was checked: every rule is an error with the reason
        results = [Result(h.host, rid, m["title"], m.get("severity") or "unknown", ERROR)
                   for rid, m in sorted(report.rules.items())]
        for r in results:
            r.evidence.detail = h.error
    passed = failed = 0
    for r in results:
        _rule_result(tr, r, end, (report.rules.get(r.rule) or {}).get("references") or {})
        passed += r.status == "pass"
        failed += r.status == FAIL
    _sub(tr, "score", str(passed), system=FLAT_UNWEIGHTED, maximum=str(passed + failed))


def xccdf(report: Report) -> str:
    """Return the audit as an XCCDF 1.2 Benchmark with one TestResult per host."""
    ET.register_namespace("xccdf", NS)
    ET.register_namespace("dc", DC)
    start = datetime.fromisoformat(report.started_at.replace("Z", "+00:00"))
    end = (start + timedelta(seconds=report.duration_s)).isoformat(timespec="seconds")
    bench = ET.Element(f"{{{NS}}}Benchmark", {
        "id": _id("benchmark", "audit"), "resolved": "1",
        "{http://www.w3.org/XML/1998/namespace}lang": "en"})
    _sub(bench, "status", "accepted", date=start.date().isoformat())
    _sub(bench, "title", "metalctl audit: KVM compute host and BMC hardening")
    _sub(bench, "description", "The rules metalctl audit evaluated in scan "
         f"{report.scan_id}, and one test result per host or BMC.")
    _sub(bench, "version", __version__)
    meta = _sub(bench, "metadata")
    ET.SubElement(meta, f"{{{DC}}}creator").text = "metalctl"
    ET.SubElement(meta, f"{{{DC}}}source").text = "metalctl audit (hardening/rules)"
    for rid in sorted(report.rules):
        _rule(bench, rid, report.rules[rid])
    for h in report.hosts:
        _test_result(bench, report, h, end)
    ET.indent(bench)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(bench, encoding="unicode") \
        + "\n"
