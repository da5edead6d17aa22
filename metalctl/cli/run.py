"""``metalctl run RACK.yaml``: every node of a rack through the pipeline, resumably."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

from metalctl import run as pipeline
from metalctl.cli import common, options
from metalctl.errors import InputError
from metalctl.exitcodes import ExitCode
from metalctl.output.document import dump
from metalctl.output.render import render, summary_line
from metalctl.run import inputs as run_inputs
from metalctl.run import live
from metalctl.run.api import check_ironic
from metalctl.run.rackfile import STAGES, FailureBudget
from metalctl.store import default_path


def _step(row: dict[str, Any], stage: str) -> str | None:
    step = row["steps"].get(stage)
    t = row["timings_s"].get(stage)
    return None if step is None else step if t is None else f"{step} {t:.1f}s"


COLUMNS = [("node", "node"), ("status", "status"), ("stage", "stage"),
           *((s, partial(_step, stage=s)) for s in STAGES),
           ("total s", "total_s"), ("reason", "reason")]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``."""
    p = sub.add_parser("run", help="drive a rack through every stage, per node, resumably",
                       description="Discover, enroll, profile, provision, verify the plan, "
                                   "harden, audit and hand off every node of a rack file. "
                                   "Re-run the same command to resume: each node continues "
                                   "from its stored lifecycle; installed nodes are never "
                                   "reinstalled.")
    p.add_argument("rack", type=Path, help="rack file (docs/run.md)")
    p.add_argument("--until", choices=STAGES, help="last stage (default the rack's, else "
                                                   "handoff)")
    p.add_argument("--from", dest="from_stage", choices=STAGES[1:],
                   help="redo this stage and the later ones on nodes already past them")
    p.add_argument("--only", nargs="+", metavar="NODE", default=[],
                   help="node names or keys; the others are discovered but go no further")
    p.add_argument("--max-failures", metavar="N|N%",
                   help="failure budget: start nothing new once more nodes failed "
                        "(default the rack's failure_budget, else unlimited)")
    p.add_argument("--concurrency", action="append", default=[], metavar="STAGE=N",
                   help="per-stage limit (also bmc_power=N); repeatable")
    p.add_argument("--report-dir", type=Path,
                   help="where the JSON and HTML reports go (default: reports/ next to "
                        "the store)")
    options.add_credentials(p, required=False)
    options.add_tls(p)
    options.add_ironic(p)
    options.add_ssh(p)
    options.add_store(p)
    options.add_output(p)
    p.set_defaults(func=run)


def _concurrency(values: list[str]) -> dict[str, int]:
    out = {}
    for v in values:
        stage, _, n = v.partition("=")
        if stage not in (*STAGES, "bmc_power") or not n.isdigit() or int(n) < 1:
            raise InputError("--concurrency", v, "not STAGE=N (N >= 1; STAGE a stage or "
                                                 "bmc_power)")
        out[stage] = int(n)
    return out


def run(args: argparse.Namespace) -> ExitCode:
    """Load the rack (exit 3 before anything is touched), run it, print the summary."""
    rack = pipeline.load_rack(args.rack)
    opts = pipeline.RunOptions(
        until=args.until, only=args.only, from_stage=args.from_stage,
        max_failures=FailureBudget.parse(args.max_failures) if args.max_failures else None,
        concurrency=_concurrency(args.concurrency),
        report_dir=args.report_dir or (args.store or default_path()).parent / "reports")
    until = args.until or rack.until or STAGES[-1]
    opts.inputs = run_inputs.from_rack(rack, until, run_inputs.Overrides(
        credentials_file=args.credentials_file,
        prompt=common.prompt_credential if sys.stdin.isatty() else None,
        ca_bundle=args.ca_bundle, insecure=args.insecure, known_hosts=args.known_hosts,
        ssh_key=args.ssh_key, sudo=args.sudo, ironic_url=args.ironic_url,
        os_cloud=args.os_cloud))
    if args.insecure:
        common.verify_of(args)  # its warning: TLS verification of BMCs is off
    check_ironic(opts.inputs, until)  # exit 4 before the store or a BMC is touched
    with common.open_store(args) as store, \
            live.live(common.STDERR, sys.stderr, sys.stderr.isatty()) as view:
        # the boot service (rack's provision.serve) runs for the run's duration
        report = pipeline.run(rack, opts, store=store, on_event=view)
    rows = report.node_rows()
    if args.output == "table":
        render(rows, "table", columns=COLUMNS, title=f"run {report.rack}")
    else:
        dump(report.to_dict(), args.output)
    common.STDERR.print(f"{len(rows)} node(s): {summary_line(report.counts())} in "
                        f"{report.duration_s:.1f} s"
                        + (f"; {report.stopped}" if report.stopped else ""))
    for fmt, path in report.files.items():
        common.STDERR.print(f"report ({fmt}): {path}")
    return ExitCode.OK if set(report.counts()) <= {"ok", "alias"} else ExitCode.FAILED
