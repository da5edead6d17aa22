"""Audit hosts: one SSH session per host, all facts in one round trip, evaluated locally.

The same rules and the same evaluation as ``metalctl harden`` (one source of truth),
read-only: nothing is written, no command with side effects runs (the gather script
only reads). Engine outcomes map to audit statuses: compliant -> pass; change, manual,
deferred -> fail (with the hardening rule as remediation); notapplicable; notchecked;
error. A host that cannot be reached or drops mid-scan yields ``error`` for that host
and results for the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from metalctl import fleet, ssh
from metalctl.audit.model import (
    ERROR,
    FAIL,
    NOTAPPLICABLE,
    NOTCHECKED,
    PASS,
    Evidence,
    HostAudit,
    Report,
    Result,
)
from metalctl.errors import describe
from metalctl.harden import engine
from metalctl.harden.rules import Rule
from metalctl.hosts import HostSpec, allowed_dns, gather_facts, pki_material, ssh_target

MAP = {engine.COMPLIANT: PASS, engine.CHANGE: FAIL, engine.MANUAL: FAIL,
       engine.DEFERRED: FAIL, engine.NOTAPPLICABLE: NOTAPPLICABLE,
       engine.NOTCHECKED: NOTCHECKED, engine.ERROR: ERROR}


@dataclass
class Options:
    site: dict[str, Any] = field(default_factory=dict)
    pki: Any = None
    key_file: Any = None
    known_hosts: Any = None
    sudo: bool = False
    concurrency: int = 32
    connect_timeout_s: float = 10.0


def remediation(rule: Rule, status: str) -> str | None:
    if status == engine.CHANGE:
        return f"metalctl harden --rule {rule.id}"
    if status == engine.DEFERRED:
        return "reboot into the configured kernel state, then metalctl harden --rule " + rule.id
    return rule.remediation


def to_result(host: str, rule: Rule, o: engine.Outcome) -> Result:
    status = MAP.get(o.status, ERROR)
    if o.status == engine.REPORT:
        status = _report_status(o.detail)
    if o.status == engine.ERROR and "no PKI material" in o.detail:
        status = NOTCHECKED  # auditing without the site PKI: nothing to compare against
    source = rule.check.get("file") or rule.check.get("path") or rule.check.get("glob") or \
        {"sshd": "sshd -T", "sysctl": "sysctl -a", "cmdline": "/proc/cmdline",
         "listening": "ss -ltn", "service": "ps", "process_labels": "ps -eZ"}.get(rule.kind)
    if isinstance(source, str) and "{" in source:
        source = None
    return Result(host=host, rule=rule.id, title=rule.title, severity=rule.severity,
                  status=status,
                  evidence=Evidence(source=source if isinstance(source, str) else None,
                                    expected=o.expected, actual=o.actual,
                                    detail=o.detail or None),
                  remediation=remediation(rule, o.status) if status == FAIL else None,
                  references=rule.references, tags=list(rule.tags))


def _report_status(detail: str) -> str:
    counts = [int(p.split(":")[1].split()[0]) for p in detail.split(";")
              if ":" in p and p.split(":")[1].strip().split(" ")[0].isdigit()]
    if not counts:
        return NOTCHECKED
    return FAIL if any(counts) else PASS


def audit_host(host: HostSpec, rules: list[Rule], opts: Options,
               dns: list[str]) -> HostAudit:
    started = time.monotonic()
    target = ssh_target(host, opts)  # same SSH policy as harden
    ctx = engine.Context(host=host.name, mgmt_address=host.mgmt_address, allowed_dns=dns,
                         site=opts.site, pki=pki_material(host, opts.pki,
                                                                     issue=False))
    before = ssh.STATS.connections.get(target.label, 0)
    conn = ssh.connect(target)
    try:
        facts = gather_facts(conn, target, engine.gather_spec(rules), host.name)
    finally:
        conn.close()
    plan = engine.evaluate(rules, facts, ctx)
    by_id = {r.id: r for r in rules}
    results = [to_result(host.name, by_id[o.rule], o) for o in plan.outcomes]
    return HostAudit(host.name, results=results,
                     duration_s=round(time.monotonic() - started, 3),
                     ssh_sessions=ssh.STATS.connections.get(target.label, 0) - before)


def audit(hosts: list[HostSpec], rules: list[Rule], opts: Options,
          on_done: Callable[[HostAudit], None] | None = None) -> Report:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    dns = allowed_dns(hosts, opts.pki if opts.pki and opts.pki.exists() else None,
                                opts.site)
    audits: list[HostAudit] = []

    def done(o: fleet.Outcome) -> None:
        res = o.value if o.ok else HostAudit(o.item.name, error=describe(o.error))
        audits.append(res)
        if on_done:
            on_done(res)

    for _ in fleet.run(hosts, lambda h: audit_host(h, rules, opts, dns),
                       concurrency=opts.concurrency, on_done=done):
        pass
    order = {h.name: i for i, h in enumerate(hosts)}
    audits.sort(key=lambda a: order.get(a.host, 0))
    return Report(scan_id=uuid.uuid4().hex[:12], started_at=started_at,
                  duration_s=round(time.monotonic() - t0, 3), hosts=audits,
                  rules={r.id: rule_meta(r) for r in rules})


def rule_meta(rule: Rule) -> dict[str, Any]:
    """What every report format says about a rule (once per rule, not per result)."""
    return {"title": rule.title, "severity": rule.severity, "references": rule.references,
            "rationale": rule.rationale, "remediation": rule.remediation,
            "tags": list(rule.tags)}
