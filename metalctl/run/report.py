"""The run's report: JSON (the contract ``-o json`` prints) and one self-contained HTML
file (no scripts, no external links): what needs a person first, a timeline of every
node's stages, then each node's evidence as tables (:mod:`metalctl.run.report_html`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl.run import report_html
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
    #: node key -> its stored plan (``node_data(plan)``), shown in the HTML as tables
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)

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


def to_html(report: RunReport) -> str:
    """The report as one HTML page (Jinja2, autoescaped; see :mod:`report_html`)."""
    return report_html.render(report)
