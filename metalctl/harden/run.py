"""``metalctl harden`` as a library: hosts in parallel, one SSH session each.

Per host: gather facts (one round trip) -> evaluate the rules -> in check mode return
the diff; otherwise run the apply script (one round trip), then the guarded sshd step
(``sshd -t``, reload, a second login while this session stays open, else restore),
gather again and evaluate again: the host is ``hardened`` only when that second plan is
empty (idempotency is verified, not assumed). A host that drops mid-run is
``dropped``; re-running converges because every step is atomic and the plan is
recomputed from what is there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from metalctl import fleet, poll, ssh
from metalctl.errors import (
    HostAuthFailed,
    HostDropped,
    HostError,
    HostUnreachable,
    InputError,
    SshHostKeyMismatch,
    SshHostKeyUnknown,
    WaitTimeout,
    describe,
)
from metalctl.hosts import HostSpec, allowed_dns, gather_facts, pki_material, ssh_target
from metalctl.model.compliance import HardenStatus
from metalctl.model.node import Event, Lifecycle
from metalctl.model.result import HostResultMixin
from metalctl.pki import SitePKI
from metalctl.rules import apply, engine
from metalctl.rules.catalogue import Rule
from metalctl.store import Store, now

LOG = logging.getLogger(__name__)
STAGE = "harden"


@dataclass
class HardenOptions:
    """How to harden.

    Attributes:
        check: only plan: return each host's diff and change nothing.
        site: the site policy (``hardening/site.yaml`` with the site file over it).
        pki: the site PKI; host certificates are issued from it when missing.
        key_file, known_hosts, sudo, connect_timeout_s: the SSH policy (host keys must
            already be in ``known_hosts``; nothing is ever added).
        concurrency: hosts worked on at once.
        pace_s: pause between file steps (lets tests interrupt a run mid-apply).
    """

    check: bool = False
    site: dict[str, Any] = field(default_factory=dict)
    pki: SitePKI | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    sudo: bool = False
    concurrency: int = 16
    #: the site's other compute hosts: their client certificates may connect to libvirt
    #: (live migration); a run passes every named node of its store
    peers: tuple[str, ...] = ()
    pace_s: float = 0.0  # pause between file steps (lets tests interrupt a run)
    connect_timeout_s: float = 10.0


@dataclass
class HostResult(HostResultMixin):
    """What harden did to one host (``outcomes``: one per rule, from the last plan)."""

    host: str
    status: HardenStatus
    outcomes: list[engine.CheckOutcome] = field(default_factory=list)
    diff: str = ""
    changed: list[str] = field(default_factory=list)
    reboot_required: list[str] = field(default_factory=list)
    error: str | None = None
    key: str = ""  # the node's key (the stage contract)

    @property
    def evidence(self) -> dict[str, Any]:
        return {"status": self.status.value, "changed": len(self.changed)}

    def to_dict(self) -> dict[str, Any]:
        """Return the host's result, rule outcomes and diff, as a plain dict."""
        return {"host": self.host, "status": self.status.value, "changed": self.changed,
                "reboot_required": self.reboot_required, "error": self.error,
                "rules": [o.__dict__ for o in self.outcomes], "diff": self.diff}


def harden_host(host: HostSpec, rules: list[Rule], opts: HardenOptions, dns: list[str],
                material: dict[str, str],
                on_plan: Callable[[engine.RulePlan], None] | None = None) -> HostResult:
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
            status = HardenStatus.WOULD_CHANGE if pending else HardenStatus.COMPLIANT
            return HostResult(host.name, status, plan.outcomes, plan.diff(), sorted(plan.files),
                              plan.reboot_required)
        if not pending:
            return HostResult(host.name, HardenStatus.COMPLIANT, plan.outcomes,
                              reboot_required=plan.reboot_required)
        daemon = ctx.variables(facts)["libvirt_daemon"]
        when = apply.stamp()
        guarded = [c for p, c in plan.files.items() if p in plan.guarded]
        done: list[str] = []
        if len(guarded) < len(plan.files) or plan.commands or plan.handlers:
            out = _run_apply(conn, target, apply.script(plan, facts.init, daemon, opts.pace_s,
                                                        when, skip=plan.guarded), host.name)
            done += apply.completed(out)
        failed: SshdFailure | None = None
        if guarded:  # last, while this session stays open to put things back
            failed = _apply_sshd(conn, target, guarded, when, host.name)
            if failed is None:
                done += [f"file {c.path}" for c in guarded]
        after = engine.evaluate(rules, gather_facts(conn, target, spec, host.name), ctx)
        left = [o for o in after.outcomes if o.status == engine.CHANGE]
        changed = [d for d in done if d.startswith(("file ", "command "))]
        if failed is not None:
            sshd_rules = {r for p in guarded for r in plan.guarded[p.path]}
            outcomes = [replace(o, status=engine.ERROR, detail=failed.reason)
                        if o.rule in failed.rules(sshd_rules, plan) else o
                        for o in after.outcomes]
            return HostResult(host.name, HardenStatus.FAILED, outcomes, after.diff(), changed,
                              after.reboot_required, error=failed.reason)
        if left:
            return HostResult(host.name, HardenStatus.FAILED, after.outcomes, after.diff(), changed,
                              after.reboot_required,
                              error="not converged after apply: "
                                    + ", ".join(f"{o.rule} ({o.actual})" for o in left))
        return HostResult(host.name, HardenStatus.HARDENED, after.outcomes, plan.diff(), changed,
                          after.reboot_required)
    finally:
        conn.close()


@dataclass(frozen=True)
class SshdFailure:
    """Why the sshd step was undone: ``sshd -t`` refused it, or the second login failed."""

    reason: str
    #: the drop-in line sshd named (``line N``), when it named one
    line: str | None = None

    def rules(self, sshd_rules: set[str], plan: engine.RulePlan) -> set[str]:
        """The rules to fail: the one whose line sshd named, else every sshd rule."""
        if self.line:
            keyword = self.line.split(None, 1)[0].lower() if self.line.split() else ""
            named = {o.rule for o in plan.outcomes if o.rule in sshd_rules
                     and o.detail.lower().startswith(keyword + " ")}
            if named:
                return named
        return sshd_rules


def _apply_sshd(conn: Any, target: ssh.SshTarget, changes: list[engine.FileChange], when: str,
                label: str) -> SshdFailure | None:
    """Write the sshd files, ``sshd -t``, reload, then prove a SECOND login works while
    this session is still open; otherwise put the old files back and reload (None: done).
    """
    out = _run_apply(conn, target, apply.guarded_script(changes, when), label)
    message = apply.rejected(out)
    if message is not None:
        line = None
        m = re.search(r"(/\S+) line (\d+)", message)
        if m:
            line = next((c.new.splitlines()[int(m.group(2)) - 1] for c in changes
                         if c.path == m.group(1) and int(m.group(2)) <= len(c.new.splitlines())),
                        None)
        return SshdFailure(f"sshd -t rejected the new configuration (restored, not reloaded): "
                           f"{message}", line)
    try:
        _second_login(target)
    except HostError as exc:
        _run_apply(conn, target, apply.restore_script(changes, when), label)
        try:
            _second_login(target)
            after = "a new login works again"
        except HostError as again:
            after = f"a new login still fails: {describe(again)}"
        return SshdFailure(f"a second SSH login failed after the sshd reload ({describe(exc)});"
                           f" the previous sshd configuration was restored and reloaded, {after}")
    return None


def _second_login(target: ssh.SshTarget, wait_s: float = 5.0) -> None:
    """A new connection (host key checked) that runs a command. Refused connections are
    retried for ``wait_s`` (sshd re-executes on reload); a refused login or host key is
    final."""
    final: list[HostError] = []

    def login() -> bool:
        try:
            conn = ssh.connect(target)
            try:
                ssh.run_script(conn, target, "true\n")
            finally:
                conn.close()
        except (HostAuthFailed, SshHostKeyMismatch, SshHostKeyUnknown) as exc:
            final.append(exc)  # a refused login or host key is final, not "not yet"
        return True

    try:
        poll.wait_for(login, timeout_s=wait_s, interval_s=0.2, transient=(HostError,),
                      what=f"{target.label}: a second login")
    except WaitTimeout as exc:
        raise exc.kwargs["error"] or HostError(host=target.label,
                                               reason="no second login") from None
    if final:
        raise final[0]


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


def harden(hosts: list[HostSpec], rules: list[Rule], opts: HardenOptions | None = None, *,
           store: Store | None = None,
           on_result: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """The harden stage: harden (or check) every host, ``opts.concurrency`` at a time.

    Hosts that are nodes of ``store`` (by name) get a ``harden`` event with what changed,
    and move to ``hardened`` when they are compliant after the run (not in check mode).

    Raises:
        InputError: the rules need the site PKI and there is none (nothing is touched).
    """
    opts = opts or HardenOptions()
    dns = allowed_dns(hosts, opts.pki, opts.site, opts.peers)
    needs_pki = bool(engine.pki_sources(rules))
    if needs_pki and not opts.check and (opts.pki is None or not opts.pki.exists()):
        # the same rules turn TLS on: without certificates libvirtd would not start again
        raise InputError("pki", "site CA", "the rules install libvirt/QEMU TLS certificates "
                                           "and turn TLS on; without the site PKI libvirtd "
                                           "would not start: run `metalctl pki init` (or "
                                           "select rules that need no certificates)")
    # read (and issue missing) certificates once, before any host: DN list and files agree
    material = {h.name: pki_material(h, opts.pki) if needs_pki else {} for h in hosts}

    def work(h: HostSpec) -> HostResult:
        return harden_host(h, rules, opts, dns, material[h.name])

    results: list[HostResult] = []

    def done(o: fleet.TaskOutcome) -> None:
        res = o.value if o.ok else HostResult(o.item.name, _failure_status(o.error),
                                              error=describe(o.error))
        res.key = o.item.key or o.item.name
        results.append(res)
        if store is not None and not opts.check:
            _record(store, res)
        if on_result:
            on_result(res)

    for _ in fleet.run(hosts, work, concurrency=opts.concurrency, on_done=done):
        pass
    order = {h.name: i for i, h in enumerate(hosts)}
    return sorted(results, key=lambda r: order.get(r.host, 0))


def _failure_status(err: BaseException | None) -> HardenStatus:
    if isinstance(err, HostDropped):
        return HardenStatus.DROPPED
    if isinstance(err, HostUnreachable):
        return HardenStatus.UNREACHABLE
    return HardenStatus.FAILED


def _record(store: Store, res: HostResult) -> None:
    node = store.find(res.host)
    if node is None:
        return
    store.add_event(Event(node["key"], STAGE, res.status.value, now(),
                          {"changed": res.changed, "reboot_required": res.reboot_required},
                          res.error))
    if res.status in (HardenStatus.HARDENED, HardenStatus.COMPLIANT):
        store.set_state(node["key"], Lifecycle.HARDENED)
