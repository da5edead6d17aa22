"""``metalctl nodes`` and ``metalctl history``: what the local store knows."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from metalctl.cli import common
from metalctl.exitcodes import ExitCode
from metalctl.output.render import render


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``nodes`` and ``history``."""
    p = sub.add_parser("nodes", help="list nodes in the local store with their lifecycle state")
    common.add_output(p)
    common.add_store(p)
    p.set_defaults(func=run_nodes)
    h = sub.add_parser("history", help="lifecycle events of one node (or all)")
    h.add_argument("node", nargs="?", help="node key or name")
    common.add_output(h)
    common.add_store(h)
    h.set_defaults(func=run_history)


def run_nodes(args: argparse.Namespace) -> ExitCode:
    """List the nodes in the local store with their lifecycle state."""
    with common.open_store(args) as store:
        rows = [{"name": n["name"], "state": n["state"], "ironic_uuid": n["ironic_uuid"],
                 "key": n["key"], "updated_at": n["updated_at"],
                 **({"record": n["record"]} if args.output != "table" else {})}
                for n in store.nodes()]
    render(rows, args.output, title="nodes",
           columns=[("name", "name"), ("state", "state"), ("ironic uuid", "ironic_uuid"),
                    ("key", "key"), ("updated", "updated_at")])
    return ExitCode.OK


def run_history(args: argparse.Namespace) -> ExitCode:
    """List the lifecycle events of one node (by key or name), or of all."""
    with common.open_store(args) as store:
        key = args.node
        if key:
            by_name = {n["name"]: n["key"] for n in store.nodes() if n["name"]}
            key = by_name.get(key, key)
        rows = [asdict(e) for e in store.events(key)]
    render(rows, args.output, title="history",
           columns=[("at", "at"), ("node", "node_key"), ("stage", "stage"),
                    ("action", "action"), ("changes", lambda r: r["changes"] or None),
                    ("error", "error")])
    return ExitCode.OK
