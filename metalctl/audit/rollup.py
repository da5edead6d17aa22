"""Fleet view: per rule, how many hosts are in each status, the consensus, and the hosts
that differ from it (Compliance Operator's model: a status held by >= 60 % of the hosts
is the consensus; otherwise the rule is "inconsistent")."""

from __future__ import annotations

from collections import Counter
from typing import Any

from metalctl.audit.model import SEVERITY_RANK, Report

CONSENSUS = 0.6


def fleet(report: Report) -> list[dict[str, Any]]:
    """Roll results up per rule across hosts: counts, consensus status, differing hosts."""
    by_rule: dict[str, dict[str, str]] = {}
    for r in report.results():
        by_rule.setdefault(r.rule, {})[r.host] = r.status
    rows = []
    for rule, statuses in by_rule.items():
        counts = Counter(statuses.values())
        top, n = counts.most_common(1)[0]
        consistent = n / len(statuses) >= CONSENSUS
        meta = report.rules.get(rule, {})
        rows.append({
            "rule": rule, "title": meta.get("title"), "severity": meta.get("severity"),
            "counts": dict(counts), "consensus": top if consistent else "inconsistent",
            "differing_hosts": sorted(h for h, s in statuses.items() if s != top)
            if len(counts) > 1 else [],
        })
    rows.sort(key=lambda r: (-SEVERITY_RANK.get(r["severity"] or "", 0), r["rule"]))
    return rows
