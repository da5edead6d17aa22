"""The run report as a page a person reads: what needs them first, then where the time
went, then each node's evidence as tables.

One self-contained HTML page rendered by Jinja2 with autoescape on (every BMC-, host- or
Ironic-supplied string is escaped): no scripts, no external resources. Order:

1. **Needs a person**: every failed or stopped node with the stage, the reason and what
   to do next (:data:`NEXT_STEPS`, then how to resume just that node).
2. **Timeline**: a Gantt chart of every node's stages, an inline SVG drawn from the
   scheduler's stage start times and durations (``NodeRun.started``/``timings``).
3. **Nodes**: the node x stage table, then per node its evidence as key/value tables
   (plan and BIOS outcome, install steps and timings, audit counts with the audit
   report's link, Placement inventories) instead of raw JSON.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2

from metalctl.run.rackfile import STAGES

if TYPE_CHECKING:
    from metalctl.run.report import RunReport
    from metalctl.run.scheduler import NodeRun

#: what a tech does next when a node failed at a stage (then resumes that node)
NEXT_STEPS = {
    "discover": "Check the BMC answers and the credential set: metalctl discover ADDRESS -v",
    "enroll": "Check Ironic is up and the node's driver info: metalctl history NODE, "
              "openstack baremetal node show NODE",
    "profile": "Read the profile's refusal (needs vs. has); adjust the profile or the rack "
               "rules: metalctl profile derive NODE -p PROFILE",
    "provision": "Read the install's log and events: metalctl history NODE; check the boot "
                 "network and the console",
    "harden": "Compare with the host: metalctl harden --check --inventory HOSTS",
    "audit": "Open the audit report; fix (metalctl harden --rule ID) or waive with a reason",
    "handoff": "Check nova-compute and Placement: metalctl handoff NODE --check",
}
#: step status -> bar colour in the timeline
COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "running": "#f9a825", "stopped": "#ef6c00",
           "skipped": "#9e9e9e"}
ROW_PX, LEFT_PX, WIDTH_PX = 24, 170, 820


@dataclass(frozen=True)
class Bar:
    """One stage of one node on the timeline (pixels and the text of its tooltip)."""

    x: float
    y: float
    w: float
    colour: str
    title: str
    label: str


def _origin(nodes: list[NodeRun]) -> float | None:
    starts = [t for n in nodes for t in n.started.values()]
    return min(starts) if starts else None


def timeline(report: RunReport) -> dict[str, Any]:
    """Bars, rows and axis ticks of the Gantt chart, in pixels."""
    origin = _origin(report.nodes)
    ends = [n.started[s] - origin + t for n in report.nodes for s, t in n.timings.items()
            if origin is not None and s in n.started]
    span = max([report.duration_s, *ends, 1.0])
    bars: list[Bar] = []
    for row, n in enumerate(report.nodes):
        for stage in STAGES:
            if stage not in n.timings or stage not in n.started or origin is None:
                continue
            start, dur = n.started[stage] - origin, n.timings[stage]
            step = n.steps.get(stage, "ok")
            bars.append(Bar(x=LEFT_PX + start / span * WIDTH_PX, y=row * ROW_PX + 4,
                            w=max(dur / span * WIDTH_PX, 2.0),
                            colour=COLOURS.get(step, "#607d8b"),
                            title=f"{n.label}: {stage} {step}, {dur:.1f} s "
                                  f"(from {start:.1f} s)",
                            label=stage if dur / span * WIDTH_PX > 48 else ""))
    step = _tick(span)
    ticks = [(LEFT_PX + t / span * WIDTH_PX, f"{t:g} s")
             for t in (i * step for i in range(int(span // step) + 1))]
    return {"bars": bars, "ticks": ticks, "labels": [n.label for n in report.nodes],
            "height": len(report.nodes) * ROW_PX + 30, "width": LEFT_PX + WIDTH_PX + 20,
            "axis_y": len(report.nodes) * ROW_PX + 4}


def _tick(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span / step <= 10:
            return float(step)
    return 7200.0


def needs_a_person(report: RunReport) -> list[dict[str, str]]:
    """Failed and stopped nodes: node, stage, reason, what to do next, how to resume.

    ``RACK_FILE`` stands for the rack file the run was given (the report knows its name,
    not its path).
    """
    out = []
    for index, n in enumerate(report.nodes):
        if n.status not in ("failed", "stopped"):
            continue
        stage = n.stage or next((s for s, v in n.steps.items() if v == "failed"), "")
        hint = NEXT_STEPS.get(stage, "Read the node's events: metalctl history NODE")
        out.append({"index": str(index), "node": n.label, "stage": stage, "status": n.status,
                    "reason": n.reason or "(no reason recorded)",
                    "next": hint.replace("NODE", n.label),
                    # a name is the BMC's or Ironic's: quoted, it is one shell word
                    "resume": f"metalctl run RACK_FILE --from {stage or 'discover'} "
                              f"--only {shlex.quote(n.label)}"})
    return out


def plan_summary(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a tech checks of a node's stored plan (``node_data(plan)``): CPU sets,
    hugepages per NUMA node, kernel arguments and the Nova options derived from them."""
    plan = (stored or {}).get("plan")
    if not isinstance(plan, dict) or "numa" not in plan:
        return None
    nova = plan.get("nova") if isinstance(plan.get("nova"), dict) else {}
    flat = {f"[{section}] {k}" if isinstance(opts, dict) else section: v
            for section, opts in nova.items()
            for k, v in (opts.items() if isinstance(opts, dict) else [(section, opts)])}
    return {
        "profile": plan.get("profile"),
        "cpu sets": {"host": plan.get("host_cpus"), "isolated": plan.get("isolated_cpus"),
                     "pmd": plan.get("pmd_cpus"), "offline": plan.get("offline_cpus")},
        "hugepages": [{"NUMA node": n.get("node"), "pages": n.get("hugepages"),
                       "size": plan.get("hugepage_size"), "memory MiB": n.get("memory_mib"),
                       "guest CPUs": len(n.get("guest_cpus") or [])}
                      for n in plan["numa"] if isinstance(n, dict)],
        "kernel arguments": " ".join(plan.get("kernel_args") or []),
        "nova.conf": flat,
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("metalctl.run", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(report: RunReport) -> str:
    """Return the report as one self-contained HTML page."""
    return _env().get_template("report.html.j2").render(
        report=report, stages=STAGES, counts=sorted(report.counts().items()),
        needs=needs_a_person(report), chart=timeline(report), colours=COLOURS,
        total=lambda n: sum(n.timings.values()),
        plan_of=lambda key: plan_summary(report.plans.get(key)))
