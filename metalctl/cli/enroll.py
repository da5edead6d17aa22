"""``metalctl enroll``: create or update Ironic nodes and ports, then manage them."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace
from pathlib import Path

from metalctl import enroll as stage
from metalctl.budget import ENROLLMENT
from metalctl.cli import common, options
from metalctl.enroll import inventory, naming
from metalctl.exitcodes import ExitCode
from metalctl.model.node import Status
from metalctl.output.render import render, summary_line

COLUMNS = [("name", "name"), ("action", "action"), ("state", "provision_state"),
           ("uuid", "uuid"), ("changes", "changes"), ("error", "error")]
PLAN_COLUMNS = [("name", "name"), ("would", "action"), ("uuid", "uuid"),
                ("changes", "changes"), ("error", "error")]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``enroll`` and its options."""
    p = sub.add_parser("enroll", help="enroll discovered (or listed) nodes in Ironic",
                       description="Match each node against Ironic (BMC identity, port MACs, "
                                   "name), create or update it and its ports, then manage it "
                                   "(Ironic verifies the BMC credentials).")
    p.add_argument("--from-file", "-f", type=Path, action="append", default=[],
                   help="baremetal-create YAML/JSON or TripleO instackenv.json (repeatable); "
                        "default: the nodes discovered into the store")
    options.add_credentials(p, required=False)
    options.add_ironic(p)
    options.add_tls(p)
    options.add_output(p)
    options.add_store(p)
    p.add_argument("--inspect", action="store_true", help="run out-of-band inspection")
    p.add_argument("--provide", action="store_true", help="move nodes to 'available'")
    p.add_argument("--no-manage", action="store_true", help="leave new nodes in 'enroll'")
    p.add_argument("--resource-class", default="baremetal")
    p.add_argument("--conductor-group")
    p.add_argument("--name-template", default=naming.DEFAULT_TEMPLATE,
                   help=f"site naming scheme; fields {sorted(naming.FIELDS)} "
                        "(default %(default)s)")
    p.add_argument("--update-credentials", action="store_true",
                   help="re-send BMC passwords of existing nodes")
    p.add_argument("--concurrency", type=int, default=ENROLLMENT.concurrency)
    p.add_argument("--timeout", type=float, default=ENROLLMENT.deadline_s,
                   help="seconds per node for manage/inspect/provide (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.set_defaults(func=run)


def _desired(args: argparse.Namespace, opts: stage.EnrollOptions) -> list:
    if args.from_file:
        nodes = [n for f in args.from_file for n in inventory.load(f)]
        inventory.check_unique(" + ".join(map(str, args.from_file)), nodes)
        for n in nodes:
            if n.password is not None:
                common.REDACT.add([n.password])
        return nodes
    with common.open_store(args) as store:
        records = [r for r in store.discovered_records() if r.status is Status.OK]
        # a system reached through several BMC addresses keeps the one already enrolled
        enrolled = {n["key"] for n in store.nodes() if n["ironic_uuid"]}
    names = set(args.credentials or []) or {r.credentials for r in records if r.credentials}
    sets = {n: common.merged_credentials(args, n) for n in sorted(names)}
    return stage.desired_from_records(records, sets, opts, prefer=enrolled)


def run(args: argparse.Namespace) -> ExitCode:
    """Enroll discovered or listed nodes in Ironic (or show the plan with ``--dry-run``)."""
    budget = replace(ENROLLMENT, concurrency=args.concurrency, deadline_s=args.timeout)
    opts = stage.EnrollOptions(
        manage=not args.no_manage, inspect=args.inspect, provide=args.provide,
        resource_class=args.resource_class, conductor_group=args.conductor_group,
        name_template=args.name_template, update_credentials=args.update_credentials,
        verify_ca=common.verify_of(args), budget=budget)
    desired = _desired(args, opts)
    if not desired:
        common.STDERR.print("nothing to enroll: run `metalctl discover` first or pass "
                            "--from-file")
        return ExitCode.OK
    ironic = common.ironic(args)
    if args.dry_run:
        plans = stage.plan(ironic, desired, opts)
        rows = [{"name": p.desired.name, "action": p.action.value,
                 "uuid": p.match["uuid"] if p.match else None,
                 "changes": list(stage.describe(p)), "error": str(p.error or "") or None}
                for p in plans]
        render(rows, args.output, columns=PLAN_COLUMNS, title="enroll plan (dry run)")
        return ExitCode.FAILED if any(p.error for p in plans) else ExitCode.OK
    with common.open_store(args) as store, common.progress("enroll", len(desired)) as prog:
        results = stage.enroll(desired, ironic, opts, store=store,
                               on_result=lambda r: prog.update(0, advance=1,
                                                               last=f"{r.name}: {r.action.value}"))
    render([r.to_dict() for r in results], args.output, columns=COLUMNS, title="enrolled")
    counts = Counter(r.action.value for r in results)
    common.STDERR.print(f"{len(results)} node(s): {summary_line(dict(counts))}")
    return ExitCode.FAILED if counts.get("failed") else ExitCode.OK
