"""Audit report renderers: table, JSON, JUnit XML, SARIF 2.1.0 and one HTML page.

JSON is the full, schema-versioned record (``metalctl-audit/1``). JUnit has one test
case per host x rule (fail -> <failure>, error -> <error>, notapplicable/notchecked/
waived -> <skipped>), so CI shows compliance like tests. SARIF carries every rule in
``tool.driver.rules`` and one result per failure (waived ones with a suppression), with
counts in ``run.properties``. The HTML is self-contained (no external assets).
"""

from __future__ import annotations

import hashlib
import html
import json
import urllib.parse
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timezone
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from metalctl import __version__
from metalctl.audit.model import (
    ERROR,
    FAIL,
    NOTAPPLICABLE,
    NOTCHECKED,
    PASS,
    SEVERITY_RANK,
    STATUSES,
    WAIVED,
    Report,
    Result,
)
from metalctl.output.render import markup_safe, plain

SARIF_LEVEL = {"high": "error", "medium": "warning", "low": "note", "info": "note"}
SECURITY_SEVERITY = {"high": "8.0", "medium": "5.0", "low": "2.0", "info": "0.0"}
STYLE = {FAIL: "bold red", ERROR: "red", WAIVED: "magenta", NOTCHECKED: "yellow",
         NOTAPPLICABLE: "dim", PASS: "green"}


def _sorted(results: list[Result]) -> list[Result]:
    order = {s: i for i, s in enumerate(STATUSES)}
    return sorted(results, key=lambda r: (order[r.status], -SEVERITY_RANK.get(r.severity, 0),
                                          r.rule))


def _message(r: Result) -> str:
    e = r.evidence
    parts = [r.title]
    if e.actual is not None or e.expected is not None:
        parts.append(f"found {e.actual!s} (expected {e.expected!s})")
    if e.detail:
        parts.append(e.detail)
    return "; ".join(parts)


# --- table -------------------------------------------------------------------------------


def table(report: Report, out: TextIO, all_results: bool = False) -> None:
    """Write one table per host to ``out``: its failures, or every result with ``all_results``."""
    # host text (evidence read from the host, errors) is plain text: no markup, no emoji
    console = Console(file=out, emoji=False, width=None if out.isatty() else 200)
    for h in report.hosts:
        counts = h.counts()
        title = f"{markup_safe(h.host)}: " + (
            f"[red]error: {markup_safe(h.error)}[/]" if h.error else ", ".join(
            f"{n} {s}" for s, n in counts.items() if n))
        t = Table(title=title, title_justify="left", header_style="bold")
        for col in ("status", "severity", "rule", "title", "evidence", "remediation"):
            t.add_column(col, overflow="fold")
        for r in _sorted(h.results):
            if r.status in (PASS, NOTAPPLICABLE) and not all_results:
                continue
            evidence = f"{r.evidence.source or ''} {r.evidence.actual or ''}".strip()
            fix = r.remediation or ""
            if r.waiver:
                fix = f"waived until {r.waiver['expires']}: {r.waiver['reason']}"
            t.add_row(f"[{STYLE[r.status]}]{r.status}[/]", plain(r.severity), plain(r.rule),
                      plain(r.title), plain(evidence[:160]), plain(fix))
        console.print(t)
    if len(report.hosts) > 1 and any(r["differing_hosts"] for r in report.fleet):
        ft = Table(title="fleet: rules where hosts differ", title_justify="left",
                   header_style="bold")
        for col in ("rule", "severity", "consensus", "counts", "differing hosts"):
            ft.add_column(col, overflow="fold")
        for row in report.fleet:
            if row["differing_hosts"]:
                ft.add_row(plain(row["rule"]), plain(row["severity"] or ""),
                           plain(row["consensus"]),
                           plain(", ".join(f"{k} {v}" for k, v in row["counts"].items())),
                           plain(", ".join(row["differing_hosts"])))
        console.print(ft)
    if report.changes:
        c = report.changes
        console.print(f"since scan {markup_safe(c['since_scan'])} ({markup_safe(c['since'])}): "
                      f"{len(c['new_failures'])} new failure(s), {len(c['fixed'])} fixed, "
                      f"{c['still_failing']} still failing")
        for item in c["new_failures"]:
            console.print(f"  [red]new[/]   {markup_safe(item)}")
        for item in c["fixed"]:
            console.print(f"  [green]fixed[/] {markup_safe(item)}")


def to_json(report: Report) -> str:
    """Return the report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2, default=str)


# --- JUnit XML ---------------------------------------------------------------------------


def _ant_timestamp(iso: str) -> str:
    """Return ``iso`` as the Ant schema's timestamp: UTC, to the second, no zone suffix."""
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso[:19]
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when.isoformat(timespec="seconds")


def junit(report: Report) -> str:
    """Return the report as JUnit XML: one test suite per host, one test case per rule.

    The document is valid against both schemas its consumers check: Jenkins xUnit's
    ``junit-10.xsd`` and Apache Ant's JUnit schema. Hence ``<testsuites>`` carries no
    attributes (Ant allows none; xUnit refuses ``skipped=``), each suite has Ant's
    ``package`` and ``id``, and ends with the ``system-out``/``system-err`` Ant requires.
    Totals are per suite, where both consumers read them.
    """
    root = ET.Element("testsuites")
    stamp = _ant_timestamp(report.started_at)
    for i, h in enumerate(report.hosts):
        suite = ET.SubElement(root, "testsuite", name=h.host, package=h.host, id=str(i),
                              timestamp=stamp, hostname=h.host)
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="scan_id", value=report.scan_id)
        ET.SubElement(props, "property", name="started_at", value=report.started_at)
        counts: Counter[str] = Counter()
        if h.error:
            case = ET.SubElement(suite, "testcase", classname=h.host, name="connection",
                                 time="0")
            ET.SubElement(case, "error", message=h.error, type="unreachable").text = h.error
            counts["tests"] += 1
            counts["errors"] += 1
        for r in h.results:
            case = ET.SubElement(suite, "testcase", classname=f"{h.host}.{r.severity}",
                                 name=f"{r.rule} {r.title}", time="0")
            counts["tests"] += 1
            body = json.dumps({"evidence": r.evidence.__dict__, "remediation": r.remediation,
                               "references": r.references}, default=str)
            if r.status == FAIL:
                ET.SubElement(case, "failure", message=_message(r), type=r.severity).text = body
                counts["failures"] += 1
            elif r.status == ERROR:
                ET.SubElement(case, "error", message=_message(r), type="error").text = body
                counts["errors"] += 1
            elif r.status in (NOTAPPLICABLE, NOTCHECKED, WAIVED):
                why = (f"waived until {r.waiver['expires']}: {r.waiver['reason']}"
                       if r.waiver else f"{r.status}: {r.evidence.detail or ''}")
                ET.SubElement(case, "skipped", message=why)
                counts["skipped"] += 1
        ET.SubElement(suite, "system-out").text = ""
        ET.SubElement(suite, "system-err").text = ""
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(counts[key]))
        suite.set("time", f"{h.duration_s:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") \
        + "\n"


# --- SARIF 2.1.0 ---------------------------------------------------------------------------

#: the uriBaseId of every SARIF location: paths are "HOST/path/on/host"
HOSTS_BASE = "HOSTS"


def sarif_location(r: Result) -> dict[str, Any]:
    """Return where GitHub code scanning shows ``r``: a relative path under ``HOSTS``.

    The path is the host's name, then the file the rule is about on that host
    (``h1/etc/ssh/sshd_config``), with the line that sets the key when the rule knows
    it, else line 1 (the whole file). A result about no file (a socket, a process, a BMC
    check) points at ``HOST/RULE-ID``. GitHub displays only relative paths with a region
    (GH1005, GH1003); ``ssh://`` URIs are not shown.
    """
    path = r.evidence.file or (r.evidence.source if (r.evidence.source or "").startswith("/")
                               else None)
    uri = urllib.parse.quote(f"{r.host}{path}" if path else f"{r.host}/{r.rule}")
    return {"physicalLocation": {
        "artifactLocation": {"uri": uri, "uriBaseId": HOSTS_BASE},
        "region": {"startLine": r.evidence.line or 1}}}



def sarif(report: Report) -> str:
    """Return the report as a SARIF 2.1.0 log, one rule descriptor per rule."""
    rule_ids = sorted(report.rules)
    index = {rid: i for i, rid in enumerate(rule_ids)}
    rules = []
    for rid in rule_ids:
        meta = report.rules[rid]
        refs = meta.get("references") or {}
        rules.append({
            "id": rid, "name": rid.replace("-", ""),
            "shortDescription": {"text": meta["title"]},
            "fullDescription": {"text": meta.get("rationale") or meta["title"]},
            "help": {"text": meta.get("remediation") or f"metalctl harden --rule {rid}"},
            "defaultConfiguration": {"level": SARIF_LEVEL.get(meta["severity"], "warning")},
            "properties": {"tags": ["security", *meta.get("tags", [])],
                           "security-severity": SECURITY_SEVERITY.get(meta["severity"], "5.0"),
                           "references": refs},
        })
    results = []
    for r in report.results():
        if r.status not in (FAIL, WAIVED):
            continue
        entry: dict[str, Any] = {
            "ruleId": r.rule, "ruleIndex": index[r.rule],
            "level": SARIF_LEVEL.get(r.severity, "warning"), "kind": "fail",
            "message": {"text": f"{r.host}: {_message(r)}"},
            "locations": [sarif_location(r)],
            "partialFingerprints": {"metalctlResult/v1": hashlib.sha256(
                f"{r.host}\0{r.rule}".encode()).hexdigest()},
            "properties": {"host": r.host, "expected": r.evidence.expected,
                           "actual": r.evidence.actual, "remediation": r.remediation,
                           "source": r.evidence.source},
        }
        if r.status == WAIVED and r.waiver:
            entry["suppressions"] = [{"kind": "external", "status": "accepted",
                                      "justification": f"{r.waiver['reason']} (until "
                                                       f"{r.waiver['expires']})"}]
        results.append(entry)
    notifications = [{"level": "error", "message": {"text": f"{h.host}: {h.error}"}}
                     for h in report.hosts if h.error]
    counts = Counter(r.status for r in report.results())
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "metalctl", "version": __version__,
                                "informationUri": "https://example.invalid/metalctl",
                                "rules": rules}},
            "automationDetails": {"id": f"metalctl-audit/{report.scan_id}"},
            "originalUriBaseIds": {HOSTS_BASE: {"description": {
                "text": "The audited hosts: each path is the host's name, then the path of "
                        "the file on that host."}}},
            "invocations": [{"executionSuccessful": not notifications,
                             "toolExecutionNotifications": notifications}],
            "results": results,
            "properties": {"counts": dict(counts), "hosts": len(report.hosts),
                           "started_at": report.started_at},
        }],
    }
    return json.dumps(doc, indent=2)


# --- HTML ------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:.2em}.meta{color:#666;margin-bottom:1.5em}
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.card{border-radius:6px;padding:.6em 1em;min-width:7em;background:#f4f4f4}
.card b{display:block;font-size:1.6em}
.fail{color:#b00020}.error{color:#c25400}.waived{color:#7b1fa2}.pass{color:#2e7d32}
.notchecked{color:#8a6d00}.notapplicable{color:#777}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #e2e2e2;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#fafafa}details{margin:.4em 0 1em}summary{cursor:pointer;font-weight:600}
code{background:#f4f4f4;padding:0 .2em;border-radius:3px}
.sev-high{font-weight:700}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def html_report(report: Report) -> str:
    """Return the report as one self-contained HTML page."""
    counts = Counter(r.status for r in report.results())
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           f"<title>metalctl audit {report.scan_id}</title><style>{CSS}</style></head><body>",
           "<h1>metalctl audit</h1>",
           f"<div class='meta'>scan {_e(report.scan_id)} · {_e(report.started_at)} · "
           f"{len(report.hosts)} host(s) · {len(report.rules)} rule(s) · "
           f"{report.duration_s:.1f} s</div><div class='cards'>"]
    for status in STATUSES:
        out.append(f"<div class='card'><b class='{status}'>{counts.get(status, 0)}</b>"
                   f"{status}</div>")
    unreachable = [h for h in report.hosts if h.error]
    out.append(f"<div class='card'><b class='error'>{len(unreachable)}</b>hosts in error"
               "</div></div>")
    if report.changes:
        c = report.changes
        out.append(f"<h2>Since scan {_e(c['since_scan'])} ({_e(c['since'])})</h2><p>"
                   f"<span class='fail'>{len(c['new_failures'])} new failure(s)</span>, "
                   f"<span class='pass'>{len(c['fixed'])} fixed</span>, "
                   f"{c['still_failing']} still failing.</p><ul>")
        out += [f"<li class='fail'>new: {_e(x)}</li>" for x in c["new_failures"]]
        out += [f"<li class='pass'>fixed: {_e(x)}</li>" for x in c["fixed"]]
        out.append("</ul>")
    out.append("<h2>Hosts</h2><table><tr><th>host</th>"
               + "".join(f"<th>{s}</th>" for s in STATUSES)
               # "error" is already a status column (rules that could not be checked)
               + "<th>unreachable</th></tr>")
    for h in report.hosts:
        c = h.counts()
        out.append(f"<tr><td><a href='#host-{_e(h.host)}'>{_e(h.host)}</a></td>"
                   + "".join(f"<td class='{s}'>{c[s] or ''}</td>" for s in STATUSES)
                   + f"<td class='error'>{_e(h.error) or ''}</td></tr>")
    out.append("</table>")
    if len(report.hosts) > 1:
        out.append("<h2>Fleet</h2><table><tr><th>rule</th><th>severity</th><th>title</th>"
                   "<th>consensus</th><th>counts</th><th>hosts that differ</th></tr>")
        for row in report.fleet:
            out.append(f"<tr><td>{_e(row['rule'])}</td><td>{_e(row['severity'])}</td>"
                       f"<td>{_e(row['title'])}</td><td class='{_e(row['consensus'])}'>"
                       f"{_e(row['consensus'])}</td><td>"
                       + _e(", ".join(f"{k} {v}" for k, v in row["counts"].items()))
                       + f"</td><td>{_e(', '.join(row['differing_hosts']))}</td></tr>")
        out.append("</table>")
    for h in report.hosts:
        out.append(f"<h2 id='host-{_e(h.host)}'>{_e(h.host)}</h2>")
        if h.error:
            out.append(f"<p class='error'>{_e(h.error)}</p>")
            continue
        out.append("<table><tr><th>status</th><th>severity</th><th>rule</th><th>title</th>"
                   "<th>evidence</th><th>remediation / waiver</th></tr>")
        for r in _sorted(h.results):
            ev = " ".join(x for x in (r.evidence.source, f"found {r.evidence.actual}"
                                      if r.evidence.actual is not None else None,
                                      f"expected {r.evidence.expected}"
                                      if r.evidence.expected is not None else None) if x)
            fix = (f"waived until {r.waiver['expires']}: {r.waiver['reason']}" if r.waiver
                   else r.remediation)
            out.append(f"<tr><td class='{r.status}'>{r.status}</td>"
                       f"<td class='sev-{_e(r.severity)}'>{_e(r.severity)}</td>"
                       f"<td><code>{_e(r.rule)}</code></td><td>{_e(r.title)}</td>"
                       f"<td>{_e(ev)}</td><td>{_e(fix)}</td></tr>")
        out.append("</table>")
    out.append("</body></html>\n")
    return "".join(out)
