"""``metalctl nodes`` and ``metalctl history``: what the local store knows."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from metalctl.cli import common, options
from metalctl.exitcodes import ExitCode
from metalctl.model.node import Event
from metalctl.output import ansible
from metalctl.output.render import FORMATS, render
from metalctl.run.rackfile import STAGES


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``nodes`` and ``history``."""
    p = sub.add_parser("nodes", help="list nodes in the local store with their lifecycle state")
    p.add_argument("-o", "--output", choices=(*FORMATS, "ansible"), default="table",
                   help="output format (default: table); ansible: a YAML inventory")
    p.add_argument("--ssh-key", type=Path, help="-o ansible: the private key path hosts use")
    options.add_store(p)
    p.set_defaults(func=run_nodes, path_kinds={"ssh_key": None})  # a path Ansible uses
    h = sub.add_parser("history", help="lifecycle events of one node (or all)")
    h.add_argument("node", nargs="?", help="node key or name")
    options.add_output(h)
    options.add_store(h)
    h.set_defaults(func=run_history)


def run_nodes(args: argparse.Namespace) -> ExitCode:
    """List the nodes in the local store with their lifecycle state."""
    with common.open_store(args, create=False) as store:
        if args.output == "ansible":
            doc = ansible.inventory(store.nodes(), store.get_data,
                                    ansible.SshDefaults(key_file=args.ssh_key))
            sys.stdout.write(ansible.dump(doc))
            return ExitCode.OK
        timings = stage_timings(store.events())
        rows = [{"name": n["name"], "state": n["state"], "ironic_uuid": n["ironic_uuid"],
                 "key": n["key"], "updated_at": n["updated_at"],
                 "timings_s": timings.get(n["key"], {}),
                 **({"record": n["record"]} if args.output != "table" else {})}
                for n in store.nodes()]
    render(rows, args.output, title="nodes",
           columns=[("name", "name"), ("state", "state"), ("ironic uuid", "ironic_uuid"),
                    ("key", "key"),
                    ("stage timings", lambda r: " ".join(f"{s} {t:.1f}s" for s, t in
                                                         r["timings_s"].items()) or None),
                    ("updated", "updated_at")])
    return ExitCode.OK


def stage_timings(events: Iterable[Event]) -> dict[str, dict[str, float]]:
    """Per node, the seconds of each stage's latest step in ``metalctl run`` (its
    ``run`` events), in pipeline order."""
    out: dict[str, dict[str, float]] = {}
    for e in events:
        if e.stage == "run" and "elapsed_s" in e.changes:
            out.setdefault(e.node_key, {})[e.changes["stage"]] = e.changes["elapsed_s"]
    order = {s: i for i, s in enumerate(STAGES)}
    return {k: dict(sorted(v.items(), key=lambda kv: order.get(kv[0], 99)))
            for k, v in out.items()}


def run_history(args: argparse.Namespace) -> ExitCode:
    """List the lifecycle events of one node (by key or name), or of all."""
    with common.open_store(args, create=False) as store:
        key = args.node
        if key:
            by_name = {n["name"]: n["key"] for n in store.nodes() if n["name"]}
            key = by_name.get(key, key)
        rows = [asdict(e) for e in store.events(key)]
    render(rows, args.output, title="history",
           columns=[("at", "at"), ("node", "node_key"), ("stage", "stage"),
                    ("action", "action"),
                    ("changes", lambda r: (f"{r['changes']['elapsed_s']:.1f}s"
                                           if r["stage"] == "run" else r["changes"]) or None),
                    ("error", "error")])
    return ExitCode.OK
