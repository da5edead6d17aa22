"""Per node, per stage: each node advances as soon as its own previous stage is done.

The scheduler knows stages only through an adapter table (:class:`Adapter`): one
small function per stage that takes the nodes ready for it and reports each node's
result (the stage contract, :class:`metalctl.model.result.StageResult`) as soon as that
node is done. Everything about a stage (its library call, its inputs) lives in the
adapter; everything about order, limits,
failures and resume lives here.

* Bounded: a node in a stage holds one slot of each of the adapter's ``pools``
  (its stage, and ``bmc_power`` for stages that power-cycle machines).
* Failure budget: once failures exceed it, nothing new starts; work in flight ends.
* A peer every node needs is down (:class:`~metalctl.errors.PeerUnavailable` raised by a
  stage call, e.g. Ironic): nothing new starts, work in flight ends, and :meth:`run`
  raises it (exit 4), rather than failing every node one by one with the same reason.
* Resume: where a node starts is read from the store's lifecycle. A stage whose
  lifecycle state the node already has is skipped unless the adapter is a cheap
  ``recheck`` (discover, enroll: idempotent reads/reconciles) or the stage is in
  ``redo`` (``--from``). Destructive stages (provision) are therefore never repeated.

Adapter calls run in daemon threads (as :mod:`metalctl.fleet` workers, so Ctrl-C is
not held up by a peer); the store and the callbacks are only touched from the thread
that called :meth:`Scheduler.run`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metalctl.errors import InputError, PeerUnavailable, describe
from metalctl.model.node import Event, Lifecycle
from metalctl.model.result import StageResult
from metalctl.run.rackfile import STAGES, FailureBudget
from metalctl.store import Store, now

LOG = logging.getLogger(__name__)

#: the lifecycle state a node has once each step is done; ``verify`` writes none (it
#: checks the install, which provision records): an installed node is past it, and its
#: adapter re-checks it until hand-off
STATE_OF = {**dict(zip([s for s in STAGES if s != "verify"], Lifecycle, strict=True)),
            "verify": Lifecycle.INSTALLED}


@dataclass
class StepResult:
    """One node's outcome of one stage, for what an adapter finds itself (a node it
    cannot hand to its stage); stages report their own result types, which satisfy the
    same contract (:class:`metalctl.model.result.StageResult`).

    ``final``: the node is done with the pipeline without failing (an alias of a system
    enrolled under another BMC address). ``name``: unused; the node's name is the one
    its stages recorded in the store.
    """

    key: str
    ok: bool
    reason: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    final: bool = False


Emit = Callable[[StageResult], None]


@dataclass
class Adapter:
    """How the scheduler drives one stage.

    ``call(keys, emit)`` works on ``keys`` (empty for the source stage, discover) and
    calls ``emit`` once per node as soon as it is done; a node it never reports ends
    ``failed``. ``batch``: hand all ready nodes at once (up to the free slots) so the
    stage can share work between them (enroll reads Ironic once per batch).
    """

    stage: str
    call: Callable[[list[str], Emit], None]
    pools: tuple[str, ...] = ()
    batch: bool = False
    recheck: bool = False
    #: re-check only nodes below this state (enroll: not once installed, where Ironic
    #: owns the node's deployment and a patch could be refused)
    recheck_below: Lifecycle | None = None

    def __post_init__(self) -> None:
        if not self.pools:
            self.pools = (self.stage,)


@dataclass
class NodeRun:
    """What the run knows of one node; the row of the live table and of the report."""

    key: str
    name: str | None = None
    state: str = Lifecycle.DISCOVERED.value  # lifecycle when it joined the run
    status: str = "pending"  # pending | running | ok | failed | stopped | alias
    stage: str | None = None  # the stage running, or the last one
    reason: str | None = None
    steps: dict[str, str] = field(default_factory=dict)  # stage -> ok|failed|skipped|running
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # stage -> monotonic start
    todo: deque[str] = field(default_factory=deque)

    @property
    def label(self) -> str:
        return self.name or self.key


@dataclass(frozen=True)
class RunEvent:
    """Something happened: a node joined, a step started or ended, the run stopped."""

    kind: str  # node | start | end | stopped
    key: str | None = None
    stage: str | None = None
    status: str | None = None
    reason: str | None = None
    elapsed_s: float | None = None
    name: str | None = None


@dataclass(frozen=True)
class ScheduleOptions:
    """``until``: last stage; ``only``: node keys or names; ``redo``: stages run again
    even when done (``--from``); ``limits``: pool -> slots."""

    until: str = STAGES[-1]
    only: Collection[str] = ()
    redo: Collection[str] = ()
    limits: Mapping[str, int] = field(default_factory=dict)
    budget: FailureBudget = FailureBudget()


class Scheduler:
    """Drive nodes through ``adapters`` (the first one is the source of nodes)."""

    def __init__(self, adapters: Sequence[Adapter], store: Store, opts: ScheduleOptions,
                 on_event: Callable[[RunEvent], None] | None = None) -> None:
        self.adapters = {a.stage: a for a in adapters}
        self.order = [a.stage for a in adapters]
        self.source = self.order[0]
        self.store = store
        self.opts = opts
        self.on_event = on_event or (lambda e: None)
        self.nodes: dict[str, NodeRun] = {}
        self.ready: dict[str, deque[str]] = {s: deque() for s in self.order}
        self.busy: Counter[str] = Counter()
        self.stopped: str | None = None
        #: the peer error that stopped the run (raised by :meth:`run` once calls returned)
        self.unavailable: PeerUnavailable | None = None
        #: ``--only`` naming no node (raised by :meth:`run`; no node went past discovery)
        self.invalid: InputError | None = None
        self._inbox: queue.SimpleQueue[tuple[str, str, Any]] = queue.SimpleQueue()
        self._calls = 0
        self.stage_calls: Counter[str] = Counter()
        #: CPU seconds of the scheduler's own loop (this thread's, so waits on the store's
        #: lock while a stage writes are not counted; the benchmark reads it)
        self.overhead_s = 0.0

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> dict[str, NodeRun]:
        """Run until every node is done, failed or stopped; returns the nodes by key."""
        self._start(self.source, [])
        while self._calls:
            kind, stage, payload = self._inbox.get()  # Ctrl-C interrupts this wait
            t0 = time.thread_time()
            if kind == "result":
                self._finish(stage, payload)
            elif kind == "unavailable":
                self.unavailable = self.unavailable or payload
                self._stop(f"{stage}: {payload}: nothing new started")
            else:  # a call returned: its slots are free; nodes it never reported failed
                self._calls -= 1
                self.stage_calls[stage] -= 1
                self._release(stage, len(payload))
                for key in payload:
                    node = self.nodes.get(key)
                    if node is not None and node.steps.get(stage) == "running":
                        self._finish(stage, StepResult(key, False, "the stage reported no "
                                                                   "result for this node"))
                if stage == self.source:
                    self._check_only()
                    self._check_budget()
            self._dispatch()
            self.overhead_s += time.thread_time() - t0
        for node in self.nodes.values():
            if node.status == "pending" and node.todo:
                node.status = "stopped"
                node.reason = self.stopped or "not started"
        if self.unavailable is not None:
            raise self.unavailable
        if self.invalid is not None:
            raise self.invalid
        return self.nodes

    def _start(self, stage: str, keys: list[str]) -> None:
        adapter = self.adapters[stage]
        for pool in adapter.pools:
            self.busy[pool] += max(1, len(keys))
        started = time.monotonic()
        for key in keys:
            node = self.nodes[key]
            node.status, node.stage, node.steps[stage] = "running", stage, "running"
            node.started[stage] = started
            self.on_event(RunEvent("start", key, stage, "running", name=node.name))
        self._calls += 1
        self.stage_calls[stage] += 1

        def emit(result: StageResult) -> None:
            self._inbox.put(("result", stage, result))

        def work() -> None:
            try:
                adapter.call(keys, emit)
            except BaseException as exc:  # noqa: BLE001 - every node of the call fails with it
                if isinstance(exc, PeerUnavailable):
                    self._inbox.put(("unavailable", stage, exc))
                for key in keys:
                    emit(StepResult(key, False, describe(exc)))
            finally:
                self._inbox.put(("returned", stage, keys))

        threading.Thread(target=work, name=f"metalctl-run-{stage}", daemon=True).start()

    @property
    def _source_running(self) -> bool:
        return self.stage_calls[self.source] > 0

    def _release(self, stage: str, count: int) -> None:
        for pool in self.adapters[stage].pools:
            self.busy[pool] -= max(1, count)

    def _free(self, stage: str) -> int:
        adapter = self.adapters[stage]
        return min(self.opts.limits.get(p, 1 << 30) - self.busy[p] for p in adapter.pools)

    def _dispatch(self) -> None:
        if self.stopped or (self.opts.only and self._source_running):
            return  # --only: its names are checked against what discovery found first
        # later stages first: finishing nodes beats starting new ones when pools are shared
        for stage in reversed(self.order[1:]):
            waiting = self.ready[stage]
            batch = self.adapters[stage].batch
            while waiting and self._free(stage) > 0:
                # a batch stage takes what waits while its previous call is in flight
                # (Nagle-like): one Ironic snapshot per batch, not one per node
                if batch and self.stage_calls[stage] and len(waiting) < self._free(stage) \
                        and self._source_running:
                    break
                take = self._free(stage) if batch else 1
                keys = [waiting.popleft() for _ in range(min(take, len(waiting)))]
                self._start(stage, keys)

    # --- one result -------------------------------------------------------------------------

    def _finish(self, stage: str, result: StageResult) -> None:
        node = self.nodes.get(result.key)
        if stage == self.source and (node is None or node.steps.get(stage) != "running"):
            node = self._join(result)
        if node is None or node.steps.get(stage) != "running":
            LOG.debug("run: %s reported %s twice or unasked; ignored", stage, result.key)
            return
        elapsed = round(time.monotonic() - node.started.get(stage, time.monotonic()), 3)
        node.timings[stage] = elapsed
        row = self.store.node(node.key)
        node.name = (row["name"] if row else None) or node.name  # as its stages recorded it
        if result.evidence:
            node.evidence[stage] = result.evidence
        status = "ok" if result.ok else "failed"
        node.steps[stage] = status
        self._record(node, stage, status, elapsed, result.reason)
        if not result.ok:
            node.status, node.reason = "failed", f"{stage}: {result.reason or 'failed'}"
            node.todo.clear()
            self.on_event(RunEvent("end", node.key, stage, "failed", result.reason, elapsed,
                                  node.name))
            self._check_budget()
            return
        self.on_event(RunEvent("end", node.key, stage, "ok", result.reason, elapsed, node.name))
        if getattr(result, "final", False):
            node.status, node.reason = "alias", result.reason
            node.todo.clear()
            return
        self._advance(node)

    def _join(self, result: StageResult) -> NodeRun:
        """A node the source found (or failed to find again) enters the run."""
        row = self.store.node(result.key)
        node = NodeRun(result.key, name=row["name"] if row else None,
                       state=row["state"] if row else Lifecycle.DISCOVERED.value)
        node.started[self.source] = time.monotonic()
        node.steps[self.source] = "running"
        self.nodes[result.key] = node
        wanted = not self.opts.only or bool({node.key, node.name} & set(self.opts.only))
        if wanted and result.ok:
            node.todo = deque(self._plan(node))
        self.on_event(RunEvent("node", node.key, self.source, "pending"))
        if result.ok and not wanted:
            node.steps[self.source] = "ok"
            node.status, node.reason = "stopped", "not selected (--only)"
        return node

    def _plan(self, node: NodeRun) -> list[str]:
        """The stages this node still runs, in order (resume from its lifecycle)."""
        rank = Lifecycle(node.state).rank
        last = self.order.index(self.opts.until) if self.opts.until in self.order \
            else len(self.order) - 1
        todo = []
        for stage in self.order[1:last + 1]:
            done = rank >= STATE_OF[stage].rank
            adapter = self.adapters[stage]
            recheck = adapter.recheck and (adapter.recheck_below is None
                                           or rank < adapter.recheck_below.rank)
            if done and stage not in self.opts.redo and not recheck:
                node.steps[stage] = "skipped"
                continue
            todo.append(stage)
        return todo

    def _advance(self, node: NodeRun) -> None:
        if not node.todo:
            node.status = "ok"
            return
        if self.stopped:
            node.status, node.reason = "stopped", self.stopped
            return
        node.status = "pending"
        self.ready[node.todo.popleft()].append(node.key)

    def _check_budget(self) -> None:
        if self.opts.budget.percent is not None and self._source_running:
            return  # a share of the nodes is known once discovery is over (checked then)
        failed = sum(1 for n in self.nodes.values() if n.status == "failed")
        if self.stopped or not self.opts.budget.spent(failed, len(self.nodes)):
            return
        self._stop(f"failure budget spent ({failed} failed, budget {self.opts.budget} of "
                   f"{len(self.nodes)} nodes): nothing new started")

    def _check_only(self) -> None:
        """``--only`` names that are no node of the rack: the run stops before any node
        goes past discovery, and :meth:`run` raises an :class:`InputError` naming them."""
        known = {n.key for n in self.nodes.values()} | {n.name for n in self.nodes.values()}
        unknown = [name for name in self.opts.only if name not in known]
        if unknown and self.invalid is None:
            self.invalid = InputError("--only", ", ".join(unknown),
                                      f"no node of the rack has this name or key "
                                      f"({len(self.nodes)} node(s) discovered; "
                                      "`metalctl nodes` lists them)")
            self._stop("--only names no node of the rack: nothing started")

    def _stop(self, reason: str) -> None:
        """Start nothing new: nodes waiting for a stage are stopped with ``reason``."""
        if self.stopped:
            return
        self.stopped = reason
        LOG.info("run: %s", self.stopped)
        for stage, waiting in self.ready.items():
            for key in waiting:
                node = self.nodes[key]
                node.status, node.reason = "stopped", self.stopped
                node.todo.appendleft(stage)
            waiting.clear()
        self.on_event(RunEvent("stopped", reason=self.stopped))

    def _record(self, node: NodeRun, stage: str, status: str, elapsed: float,
                reason: str | None) -> None:
        """Every step is an event of stage ``run`` with its time (``metalctl history``)."""
        if self.store.node(node.key) is not None:
            self.store.add_event(Event(node.key, "run", f"{stage}-{status}", now(),
                                       {"stage": stage, "elapsed_s": elapsed},
                                       reason if status == "failed" else None))
