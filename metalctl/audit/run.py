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
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metalctl import fleet, ssh
from metalctl.audit import bmc as bmc_audit
from metalctl.audit import history, locate, rollup, waivers
from metalctl.audit.model import (
    ERROR,
    FAIL,
    NOTCHECKED,
    PASS,
    Evidence,
    HostAudit,
    Report,
    Result,
)
from metalctl.audit.waivers import Waiver
from metalctl.budget import DISCOVERY, Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import describe
from metalctl.exitcodes import ExitCode
from metalctl.hosts import HostSpec, allowed_dns, gather_facts, pki_material, ssh_target
from metalctl.model.compliance import CheckStatus
from metalctl.model.node import Event, Lifecycle
from metalctl.pki import SitePKI
from metalctl.rules import engine
from metalctl.rules.catalogue import Rule
from metalctl.rules.severity import blocks
from metalctl.store import Store, now

STAGE = "audit"



@dataclass
class AuditOptions:
    """What an audit scans and how.

    Attributes:
        site: the site policy (``hardening/site.yaml`` with the site file over it).
        pki: the site PKI to compare installed certificates with (never issues).
        key_file, known_hosts, sudo, connect_timeout_s: the SSH policy, as for harden.
        concurrency: hosts scanned at once.
        bmc: also audit the BMC of every node in the store.
        bmc_credentials: the credential set for a node's recorded set name (None when
            there is none); BMC checks that need a login are ``notchecked`` without one.
        verify: Redfish TLS verification (True, a CA bundle path, or False).
        bmc_budget: timeouts for the BMC checks.
        waivers: accepted exceptions (see :mod:`metalctl.audit.waivers`).
        since: compare with an earlier scan (scan id or ISO date) from the store.
        record: keep the scan in the store's audit history.
    """

    site: dict[str, Any] = field(default_factory=dict)
    pki: SitePKI | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    sudo: bool = False
    concurrency: int = 32
    peers: tuple[str, ...] = ()  # as harden's: the DN list the hosts must allow
    connect_timeout_s: float = 10.0
    bmc: bool = False
    bmc_credentials: Callable[[str | None], CredentialSet | None] | None = None
    verify: bool | str = True
    bmc_budget: Budget = field(default_factory=lambda: replace(DISCOVERY, read_timeout_s=20))
    waivers: list[Waiver] = field(default_factory=list)
    since: str | None = None
    record: bool = True
    #: a host whose unwaived failures reach this severity is not ``ok`` (``none``: a
    #: completed scan is); the gate a run puts before hand-off
    gate: str = "none"


def remediation(rule: Rule, status: str, fix: str | None = None) -> str | None:
    """Return what to do about ``status``: what the check found would fix it on this host
    (``fix``), else the harden command, a reboot, or the rule's text."""
    if fix:
        return fix
    if status == engine.CHANGE:
        return f"metalctl harden --rule {rule.id}"
    if status == engine.DEFERRED:  # (the kinds give a host-specific ``fix``; this is a floor)
        return f"metalctl harden --rule {rule.id} sets what it can; the rest takes effect " \
            "only once the running kernel has it (see the evidence)"
    return rule.remediation


def to_result(host: str, rule: Rule, o: engine.CheckOutcome,
              where: tuple[str | None, int | None] = (None, None)) -> Result:
    """Turn a rule engine outcome into an audit result with its status and evidence.

    ``where`` is the file and line the finding is about (:func:`locate.locate`), when known.
    """
    status = CheckStatus(o.status).audit
    if o.status == engine.REPORT:
        status = _report_status(o.detail)
    if o.status == engine.ERROR and o.missing == "pki":
        status = NOTCHECKED  # auditing without the site PKI: nothing to compare against
    source = rule.check.get("file") or rule.check.get("path") or rule.check.get("glob") or \
        {"sshd": "sshd -T", "sysctl": "sysctl -a", "cmdline": "/proc/cmdline",
         "listening": "ss -ltn", "service": "systemctl show, /run/NAME.pid",
         "process_labels": "ps -eZ", "apparmor_runtime": "/sys/kernel/security/lsm",
         "file_modes": "stat"}.get(rule.kind)
    if isinstance(source, str) and "{" in source:
        source = where[0]
    return Result.of(rule, host, status,
                     Evidence(source=source if isinstance(source, str) else None,
                              expected=o.expected, actual=o.actual, detail=o.detail or None,
                              file=where[0], line=where[1]),
                     remediation(rule, o.status, o.fix))


def _report_status(detail: str) -> str:
    counts = [int(p.split(":")[1].split()[0]) for p in detail.split(";")
              if ":" in p and p.split(":")[1].strip().split(" ")[0].isdigit()]
    if not counts:
        return NOTCHECKED
    return FAIL if any(counts) else PASS


def audit_host(host: HostSpec, rules: list[Rule], opts: AuditOptions,
               dns: list[str]) -> HostAudit:
    """Audit one host: gather its facts in one SSH session and evaluate ``rules`` locally.

    Nothing on the host is changed; connection errors propagate to the caller.
    """
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
    variables = ctx.variables(facts)
    results = [to_result(host.name, by_id[o.rule], o,
                         locate.locate(by_id[o.rule].kind, by_id[o.rule].check, facts, variables))
               for o in plan.outcomes]
    return HostAudit(host.name, results=results,
                     duration_s=round(time.monotonic() - started, 3),
                     ssh_sessions=ssh.STATS.connections.get(target.label, 0) - before)


def scan_hosts(hosts: list[HostSpec], rules: list[Rule], opts: AuditOptions,
               on_result: Callable[[HostAudit], None] | None = None) -> Report:
    """Scan ``hosts`` with ``rules`` over SSH, ``opts.concurrency`` at a time (no store)."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    dns = allowed_dns(hosts, opts.pki if opts.pki and opts.pki.exists() else None, opts.site,
                      opts.peers)
    audits: list[HostAudit] = []

    def done(o: fleet.TaskOutcome) -> None:
        res = o.value if o.ok else HostAudit(o.item.name, error=describe(o.error))
        audits.append(res)
        if on_result:
            on_result(res)

    for _ in fleet.run(hosts, lambda h: audit_host(h, rules, opts, dns),
                       concurrency=opts.concurrency, on_done=done):
        pass
    order = {h.name: i for i, h in enumerate(hosts)}
    audits.sort(key=lambda a: order.get(a.host, 0))
    return Report(scan_id=uuid.uuid4().hex[:12], started_at=started_at,
                  duration_s=round(time.monotonic() - t0, 3), hosts=audits,
                  rules={r.id: rule_meta(r) for r in rules})


def audit(hosts: list[HostSpec], rules: list[Rule], opts: AuditOptions | None = None, *,
          store: Store | None = None,
          on_result: Callable[[HostAudit], None] | None = None) -> Report:
    """The audit stage: hosts over SSH, optionally the store's BMCs, then waivers, the
    fleet roll-up, the comparison with an earlier scan, and the record in the store.

    Rules for platform ``bmc`` run against the BMC of every node in ``store`` (when
    ``opts.bmc`` is set); the others run against ``hosts`` over SSH.

    Nodes of the store whose host scan completed get an ``audit`` event with their
    counts and move to ``audited`` when they were ``hardened`` (a node that skipped
    hardening is not moved past it). Expired waivers that matched are listed in
    ``report.expired_waivers``.

    Raises:
        InputError: ``opts.since`` names no earlier scan.
    """
    opts = opts or AuditOptions()
    host_rules = [r for r in rules if "bmc" not in r.platforms]
    bmc_rules = [r for r in rules if "bmc" in r.platforms]
    report = scan_hosts(hosts, host_rules, opts, on_result)
    if opts.bmc and store is not None:
        resolve = opts.bmc_credentials or (lambda _name: None)
        for node in store.nodes():
            creds = resolve(node["record"].get("credentials"))
            audit_bmc = bmc_audit.check_node(store, node, bmc_rules, creds, opts.verify,
                                             opts.site, opts.bmc_budget)
            report.hosts.append(audit_bmc)
            if on_result:
                on_result(audit_bmc)
        report.rules.update({r.id: rule_meta(r) for r in bmc_rules})
    if opts.waivers:
        report.expired_waivers = waivers.apply(report, opts.waivers,
                                               _profiles_of(store, report))
    report.fleet = rollup.fleet(report)
    keys = {h.name: h.key or h.name for h in hosts}
    for h in report.hosts:  # the stage contract: node key, the gate, the scan
        h.key = keys.get(h.host, h.key) if h.kind == "host" else h.key
        h.gate, h.scan_id = opts.gate, report.scan_id
    if store is not None:
        if opts.since:
            report.changes = history.compare(store, report, opts.since)
        if opts.record:
            history.save(store, report)
            _record_lifecycle(store, report)
    return report


def _profiles_of(store: Store | None, report: Report) -> dict[str, str]:
    """host -> the profile of its stored plan (waivers may be scoped to a profile)."""
    out: dict[str, str] = {}
    for h in report.hosts if store is not None else []:
        node = store.find(h.host)
        plan = store.get_data(node["key"], "plan") if node else None
        if plan:
            out[h.host] = plan["profile"]
    return out


def _record_lifecycle(store: Store, report: Report) -> None:
    for h in report.hosts:
        node = store.find(h.host) if h.kind == "host" else None
        if node is None:
            continue
        counts = h.counts()
        store.add_event(Event(node["key"], STAGE, "error" if h.error else "scanned", now(),
                              {"scan_id": report.scan_id, **counts}, h.error))
        if not h.error and Lifecycle(node["state"]).rank >= Lifecycle.HARDENED.rank:
            store.set_state(node["key"], Lifecycle.AUDITED)


def exit_code(report: Report, fail_on: str) -> ExitCode:
    """FAILED when a host or check errored, FINDINGS when an unwaived failure at or above
    ``fail_on`` (a severity, or ``none``) remains, OK otherwise."""
    if any(h.error for h in report.hosts) or any(r.status == ERROR for r in report.results()):
        return ExitCode.FAILED
    if any(r.status == FAIL and blocks(r.severity, fail_on) for r in report.results()):
        return ExitCode.FINDINGS
    return ExitCode.OK


def rule_meta(rule: Rule) -> dict[str, Any]:
    """What every report format says about a rule (once per rule, not per result)."""
    return {"title": rule.title, "severity": rule.severity, "references": rule.references,
            "rationale": rule.rationale, "remediation": rule.remediation,
            "tags": list(rule.tags)}
