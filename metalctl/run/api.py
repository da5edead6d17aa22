"""``metalctl.run.run``: a rack file in, every node driven as far as it can go, a report out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from metalctl.errors import InputError, MetalctlError, PeerUnavailable
from metalctl.run import adapters as stage_adapters
from metalctl.run import inputs as run_inputs
from metalctl.run.adapters import StageInputs
from metalctl.run.rackfile import STAGES, FailureBudget, Rack
from metalctl.run.rackfile import load as load_rack
from metalctl.run.report import RunReport
from metalctl.run.scheduler import Adapter, RunEvent, ScheduleOptions, Scheduler
from metalctl.store import Store, now


@dataclass
class RunOptions:
    """How far and on what a run goes; the rack file gives the rest.

    Attributes:
        inputs: what the stages need beyond the rack (credential sets, TLS, Ironic...);
            None: built from the rack (:func:`metalctl.run.inputs.from_rack`).
        until: last stage (default the rack's ``until``, else hand-off).
        only: node keys or names; the others are discovered but go no further.
        from_stage: redo this stage and the later ones even on nodes past them (the one
            way to repeat a destructive step such as an install).
        max_failures: the failure budget (default the rack's ``failure_budget``).
        concurrency: per-stage (and ``bmc_power``) limits over the rack's.
        report_dir: write the JSON and HTML report there.
        adapters: replace the stage table (tests and the benchmark script stages).
    """

    inputs: StageInputs | None = None
    until: str | None = None
    only: Sequence[str] = ()
    from_stage: str | None = None
    max_failures: FailureBudget | None = None
    concurrency: dict[str, int] = field(default_factory=dict)
    report_dir: Path | None = None
    adapters: Sequence[Adapter] | None = None


def run(rack: Rack | Path | str, opts: RunOptions | None = None, *, store: Store,
        on_event: Callable[[RunEvent], None] | None = None) -> RunReport:
    """Drive every node of ``rack`` (a rack file or its path) through the stages; one
    node's failure stops only it. When the rack's ``provision.serve`` says where, the
    boot service runs in this process for the run's duration.

    Resumes from the store: a node continues after the last stage its lifecycle records
    (see :mod:`metalctl.run.scheduler`). ``on_event`` sees every step start and end (the
    live table). Failures of nodes are in the report, never raised.

    Raises:
        InputError: options that contradict each other (``--from`` after ``--until``).
        IronicUnavailable: Ironic, which every node needs from enrollment on, is down.
    """
    opts = opts or RunOptions()
    if not isinstance(rack, Rack):
        rack = load_rack(rack)
    until = opts.until or rack.until or STAGES[-1]
    if opts.from_stage and STAGES.index(opts.from_stage) > STAGES.index(until):
        raise InputError("--from", opts.from_stage, f"comes after --until {until}")
    redo = STAGES[STAGES.index(opts.from_stage):] if opts.from_stage else ()
    boot = None
    if opts.adapters is not None:
        table = list(opts.adapters)
    else:
        given = opts.inputs or run_inputs.from_rack(rack, until)
        inputs = replace(given, redo=frozenset(redo), report_dir=opts.report_dir)
        check_ironic(inputs, until)
        table = stage_adapters.table(rack, inputs, store)
        boot = run_inputs.serving(inputs, rack)
    budget = opts.max_failures or rack.failure_budget
    sched = Scheduler(table, store, ScheduleOptions(
        until=until, only=tuple(opts.only), redo=redo, budget=budget,
        limits={**rack.concurrency, **opts.concurrency}), on_event)
    started_at, t0 = now(), time.monotonic()

    def report_of(nodes: dict, stopped: str | None) -> RunReport:
        return RunReport(rack=rack.name, started_at=started_at,
                         duration_s=round(time.monotonic() - t0, 3), until=until,
                         budget=str(budget), stopped=stopped,
                         nodes=sorted(nodes.values(), key=lambda n: n.label),
                         scheduler_overhead_s=sched.overhead_s,
                         plans={k: p for k in nodes if (p := store.get_data(k, "plan"))})

    if boot is not None:
        boot.start()  # BootServiceError (address in use): the run has not started
    try:
        nodes = sched.run()
    except KeyboardInterrupt:
        # what was seen so far; the store already holds every completed step
        if opts.report_dir:
            report_of(sched.nodes, "interrupted; re-run to resume").write(opts.report_dir)
        raise
    except PeerUnavailable:
        if opts.report_dir:
            report_of(sched.nodes, sched.stopped).write(opts.report_dir)
        raise
    finally:
        if boot is not None:
            boot.stop()
    report = report_of(nodes, sched.stopped)
    if opts.report_dir:
        report.write(opts.report_dir)
    return report


def check_ironic(inputs: StageInputs, until: str) -> None:
    """Connect to Ironic before anything is probed or written, when the run goes past
    discovery: every node needs it from enrollment on, so an unreachable Ironic ends the
    run here (exit 4) instead of failing each node. The connected client is kept.

    Raises:
        PeerUnavailable: Ironic cannot be reached.
    """
    if STAGES.index(until) < STAGES.index("enroll"):
        return
    try:
        inputs.ironic_client()
    except PeerUnavailable:
        raise
    except MetalctlError:  # not configured: the nodes that need it fail with the reason
        return
