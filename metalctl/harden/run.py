"""``metalctl harden`` as a library: hosts in parallel, one SSH session each.

Per host: gather facts (one round trip) -> evaluate the rules -> in check mode return
the diff; otherwise run the apply script (one round trip), gather again and evaluate
again: the host is ``hardened`` only when that second plan is empty (idempotency is
verified, not assumed). A host that drops mid-run is ``dropped``; re-running converges
because every step is atomic and the plan is recomputed from what is there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl import fleet, ssh
from metalctl.errors import HostDropped, HostError, describe
from metalctl.harden import apply, engine
from metalctl.harden.rules import Rule
from metalctl.hosts import HostSpec, allowed_dns, gather_facts, pki_material, ssh_target
from metalctl.pki import SitePKI

LOG = logging.getLogger(__name__)


@dataclass
class Options:
    check: bool = False
    site: dict[str, Any] = field(default_factory=dict)
    pki: SitePKI | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    sudo: bool = False
    concurrency: int = 16
    pace_s: float = 0.0  # pause between file steps (lets tests interrupt a run)
    connect_timeout_s: float = 10.0


@dataclass
class HostResult:
    host: str
    status: str  # compliant | would-change | hardened | failed | dropped | unreachable
    outcomes: list[engine.Outcome] = field(default_factory=list)
    diff: str = ""
    changed: list[str] = field(default_factory=list)
    reboot_required: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "changed": self.changed,
                "reboot_required": self.reboot_required, "error": self.error,
                "rules": [o.__dict__ for o in self.outcomes], "diff": self.diff}


def harden_host(host: HostSpec, rules: list[Rule], opts: Options, dns: list[str],
                material: dict[str, str],
                on_plan: Callable[[engine.Plan], None] | None = None) -> HostResult:
    """``material``: the host's PKI files (:func:`pki_material`), empty when no rule needs
    them."""
    target = ssh_target(host, opts)
    ctx = engine.Context(host=host.name, mgmt_address=host.mgmt_address, allowed_dns=dns,
                         site=opts.site, pki=material)
    spec = engine.gather_spec(rules)
    conn = ssh.connect(target)
    try:
        facts = gather_facts(conn, target, spec, host.name)
        plan = engine.evaluate(rules, facts, ctx)
        if on_plan:
            on_plan(plan)
        pending = plan.changes or plan.handlers
        if opts.check:
            return HostResult(host.name, "would-change" if pending else "compliant",
                              plan.outcomes, plan.diff(), sorted(plan.files),
                              plan.reboot_required)
        if not pending:
            return HostResult(host.name, "compliant", plan.outcomes,
                              reboot_required=plan.reboot_required)
        daemon = ctx.variables(facts)["libvirt_daemon"]
        out = _run_apply(conn, target, apply.script(plan, facts.init, daemon, opts.pace_s),
                         host.name)
        done = apply.completed(out)
        after = engine.evaluate(rules, gather_facts(conn, target, spec, host.name), ctx)
        left = [o for o in after.outcomes if o.status == engine.CHANGE]
        changed = [d for d in done if d.startswith(("file ", "command "))]
        if left:
            return HostResult(host.name, "failed", after.outcomes, after.diff(), changed,
                              after.reboot_required,
                              error="not converged after apply: "
                                    + ", ".join(f"{o.rule} ({o.actual})" for o in left))
        return HostResult(host.name, "hardened", after.outcomes, plan.diff(), changed,
                          after.reboot_required)
    finally:
        conn.close()


def _run_apply(conn: Any, target: ssh.SshTarget, script: str, label: str) -> str:
    result = ssh.exec_script(conn, target, script)
    done = apply.completed(result.stdout)
    if result.exited == -1:
        raise HostDropped(host=label, reason="connection lost during apply after "
                                             f"{len(done)} step(s); re-run to converge")
    if result.exited != 0:
        step = next((ln[len("### step "):] for ln in reversed(result.stdout.splitlines())
                     if ln.startswith("### step ")), "?")
        raise HostError(host=label, reason=f"apply step '{step}' failed (exit {result.exited}):"
                                           f" {result.stderr.strip()[-300:]}")
    return result.stdout


def harden(hosts: list[HostSpec], rules: list[Rule], opts: Options,
           on_done: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """Harden (or check) every host, ``opts.concurrency`` at a time."""
    dns = allowed_dns(hosts, opts.pki, opts.site)
    needs_pki = any("pki:" in str(r.check) for r in rules)
    # read (and issue missing) certificates once, before any host: DN list and files agree
    material = {h.name: pki_material(h, opts.pki) if needs_pki else {} for h in hosts}

    def work(h: HostSpec) -> HostResult:
        return harden_host(h, rules, opts, dns, material[h.name])

    results: list[HostResult] = []

    def done(o: fleet.Outcome) -> None:
        if o.ok:
            res = o.value
        else:
            err = o.error
            status = "dropped" if isinstance(err, HostDropped) else "unreachable" if \
                isinstance(err, HostError) and "connection" in str(err) else "failed"
            res = HostResult(o.item.name, status, error=describe(err))
        results.append(res)
        if on_done:
            on_done(res)

    for _ in fleet.run(hosts, work, concurrency=opts.concurrency, on_done=done):
        pass
    order = {h.name: i for i, h in enumerate(hosts)}
    return sorted(results, key=lambda r: order.get(r.host, 0))
