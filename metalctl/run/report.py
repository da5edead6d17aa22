"""The run's report: JSON (the contract ``-o json`` prints) and one self-contained HTML
file (no scripts, no external links), with every node's stage timings, failures with
their reasons, and the audit and Placement evidence the stages returned."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl.run.rackfile import STAGES
from metalctl.run.scheduler import NodeRun

SCHEMA = "metalctl-run/1"


@dataclass
class RunReport:
    """One ``metalctl run``: its nodes and where the time went."""

    rack: str
    started_at: str
    duration_s: float
    until: str
    budget: str
    nodes: list[NodeRun]
    stopped: str | None = None
    scheduler_overhead_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Nodes per final status (ok, failed, stopped, alias)."""
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.status] = out.get(n.status, 0) + 1
        return out

    @property
    def failed(self) -> list[NodeRun]:
        return [n for n in self.nodes if n.status == "failed"]

    def node_rows(self) -> list[dict[str, Any]]:
        """One row per node: status, last stage, reason, per-stage step and seconds."""
        return [{"node": n.label, "key": n.key, "status": n.status, "stage": n.stage,
                 "reason": n.reason, "steps": dict(n.steps), "timings_s": dict(n.timings),
                 "total_s": round(sum(n.timings.values()), 3), "evidence": n.evidence}
                for n in self.nodes]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "rack": self.rack, "started_at": self.started_at,
                "duration_s": self.duration_s, "until": self.until, "budget": self.budget,
                "stopped": self.stopped, "counts": self.counts(),
                "scheduler_overhead_s": round(self.scheduler_overhead_s, 4),
                "nodes": self.node_rows(), "files": self.files}

    def write(self, directory: Path) -> dict[str, str]:
        """Write ``run-<time>.json`` and ``.html`` (and ``latest`` copies) in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        stem = "run-" + self.started_at.replace(":", "").replace("+0000", "Z")
        paths = {"json": directory / f"{stem}.json", "html": directory / f"{stem}.html"}
        self.files = {k: str(v) for k, v in paths.items()}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        paths["html"].write_text(to_html(self))
        return self.files


_CSS = ("body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
        ".ok{background:#e6f4ea}.failed{background:#fce8e6}.skipped{color:#888}"
        ".running,.stopped{background:#fff4e5}.alias{color:#888}pre{margin:0;"
        "white-space:pre-wrap}")


def _cell(n: NodeRun, stage: str) -> str:
    step = n.steps.get(stage)
    if step is None:
        return "<td></td>"
    t = n.timings.get(stage)
    text = step + (f"<br>{t:.1f} s" if t is not None else "")
    return f'<td class="{html.escape(step)}">{text}</td>'


def to_html(report: RunReport) -> str:
    """The report as one HTML page (every value escaped)."""
    e = html.escape
    head = "".join(f"<th>{s}</th>" for s in STAGES)
    rows = "".join(
        f'<tr><td>{e(n.label)}</td><td class="{e(n.status)}">{e(n.status)}</td>'
        + "".join(_cell(n, s) for s in STAGES)
        + f"<td>{sum(n.timings.values()):.1f} s</td><td>{e(n.reason or '')}</td></tr>"
        for n in report.nodes)
    failures = "".join(f"<li><b>{e(n.label)}</b>: {e(n.reason or '')}</li>"
                       for n in report.failed) or "<li>none</li>"
    evidence = "".join(
        f"<tr><td>{e(n.label)}</td><td>{e(stage)}</td><td><pre>"
        f"{e(json.dumps(ev, indent=1, default=str))}</pre></td></tr>"
        for n in report.nodes for stage, ev in n.evidence.items()
        if stage in ("audit", "handoff", "provision", "profile"))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts().items()))
    stopped = f"<p><b>stopped:</b> {e(report.stopped)}</p>" if report.stopped else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>metalctl run "
            f"{e(report.rack)}</title><style>{_CSS}</style></head><body>"
            f"<h1>metalctl run: {e(report.rack)}</h1><p>started {e(report.started_at)}, "
            f"{report.duration_s:.1f} s, until {e(report.until)}, failure budget "
            f"{e(report.budget)}; nodes: {e(counts)}</p>{stopped}"
            f"<h2>Nodes and stage timings</h2><table><tr><th>node</th><th>status</th>{head}"
            f"<th>total</th><th>reason</th></tr>{rows}</table>"
            f"<h2>Failures</h2><ul>{failures}</ul>"
            f"<h2>Evidence (profile, install, audit, Placement)</h2><table><tr><th>node</th>"
            f"<th>stage</th><th>evidence</th></tr>{evidence}</table></body></html>\n")
