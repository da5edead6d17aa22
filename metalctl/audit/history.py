"""Audit history in the store and ``--since``: what changed between two scans."""

from __future__ import annotations

import json
from typing import Any

from metalctl.audit.model import FAIL, Report
from metalctl.errors import InputError
from metalctl.store import Store


def save(store: Store, report: Report) -> None:
    """Store the report's results and a summary (hosts, failures, hosts in error)."""
    rows = [(r.host, r.rule, r.status, r.severity,
             json.dumps({"expected": r.evidence.expected, "actual": r.evidence.actual}))
            for r in report.results()]
    summary = {"hosts": len(report.hosts),
               "fail": sum(r.status == FAIL for r in report.results()),
               "errors": [h.host for h in report.hosts if h.error]}
    store.save_audit(report.scan_id, report.started_at, summary, rows)


def baseline(store: Store, since: str) -> dict[str, Any]:
    """The scan named by id, or the latest scan at or before an ISO date/time."""
    scans = store.audit_scans()
    for s in scans:
        if s["scan_id"] == since:
            return s
    earlier = [s for s in scans if s["at"] <= since or s["at"][:len(since)] == since]
    if not earlier:
        raise InputError("--since", since, "no earlier audit scan in the store "
                                           f"({len(scans)} scan(s) recorded)")
    return earlier[-1]


def compare(store: Store, report: Report, since: str) -> dict[str, Any]:
    """Compare the report with the scan ``since`` names: new failures, fixed, still failing.

    Raises:
        InputError: no earlier scan matches ``since``.
    """
    base = baseline(store, since)
    before = store.audit_results(base["scan_id"])
    now = {(r.host, r.rule): r.status for r in report.results()}
    new = sorted(f"{h} {r}" for (h, r), s in now.items()
                 if s == FAIL and before.get((h, r)) != FAIL)
    fixed = sorted(f"{h} {r}" for (h, r), s in before.items()
                   if s == FAIL and now.get((h, r)) not in (None, FAIL))
    still = sorted(f"{h} {r}" for (h, r), s in now.items()
                   if s == FAIL and before.get((h, r)) == FAIL)
    return {"since_scan": base["scan_id"], "since": base["at"], "new_failures": new,
            "fixed": fixed, "still_failing": len(still)}
