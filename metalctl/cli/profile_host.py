"""``metalctl profile facts|verify``: a host's topology, and the live host against its
plan (in-band over SSH, this machine, a file, Ironic inspection or the BMC record)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from metalctl import cpulist
from metalctl.cli import common, options, profile_opts
from metalctl.exitcodes import ExitCode
from metalctl.output.document import dump
from metalctl.output.render import render
from metalctl.profile import stage
from metalctl.profile.facts import inband
from metalctl.ssh import SshTarget


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``facts`` and ``verify`` to ``metalctl profile``."""
    facts = verbs.add_parser("facts", help="collect a node's topology and keep it")
    facts.add_argument("node", help="node name, key or Ironic UUID in the store")
    src = facts.add_mutually_exclusive_group(required=True)
    src.add_argument("--local", action="store_true", help="this machine")
    src.add_argument("--ssh", metavar="[USER@]HOST[:PORT]", help="a host over SSH")
    src.add_argument("--file", type=Path, help="collector output, Ironic inspection data or "
                                               "saved facts")
    src.add_argument("--from-ironic", action="store_true",
                     help="the node's Ironic inspection inventory")
    src.add_argument("--from-bmc", action="store_true",
                     help="what discovery read from the BMC (CPU ids stay unknown)")
    options.add_ssh(facts)
    options.add_ironic(facts)
    options.add_store(facts)
    options.add_output(facts)
    facts.set_defaults(func=run_facts)

    v = verbs.add_parser("verify", help="re-derive on the live host and compare with the plan")
    v.add_argument("node")
    v.add_argument("--profile", "-p", help="default: the profile of the stored plan")
    vs = v.add_mutually_exclusive_group(required=True)
    vs.add_argument("--local", action="store_true")
    vs.add_argument("--ssh", metavar="[USER@]HOST[:PORT]")
    vs.add_argument("--file", type=Path)
    options.add_ssh(v)
    profile_opts.add_profile_dirs(v)
    options.add_store(v)
    options.add_output(v)
    v.set_defaults(func=run_verify)


def _ssh_target(args: argparse.Namespace) -> SshTarget | None:
    if not args.ssh:
        return None
    return SshTarget.parse(args.ssh, key_file=args.ssh_key, known_hosts=args.known_hosts,
                           sudo=args.sudo)


def run_facts(args: argparse.Namespace) -> ExitCode:
    """Collect a node's topology facts, store them and show them per NUMA node."""
    with common.open_store(args, create=False) as store:
        node = stage.resolve(store, args.node)
        ironic = common.ironic(args) if args.from_ironic else None
        topo = stage.collect(store, node, local=args.local, ssh=_ssh_target(args),
                             file=args.file, ironic=ironic)
    if args.output == "table":
        render([{"node": n, "cpus": cpus, "memory MiB": topo.node(n).memory_mib,
                 "nics": ", ".join(x.name for x in topo.nics if x.numa_node == n) or None}
                for n in topo.node_ids()
                for cpus in [_cpus_of(topo, n)]] or [{"node": "-"}], "table",
               title=f"{node.label}: {topo.source} facts",
               columns=[("NUMA node", "node"), ("CPUs", "cpus"), ("memory MiB", "memory MiB"),
                        ("NICs", "nics")])
        if topo.unknown:
            common.STDERR.print(f"unknown from this source: {', '.join(topo.unknown)}")
    else:
        dump(topo.to_dict(), args.output)
    return ExitCode.OK


def _cpus_of(topo: Any, n: int) -> str:
    return cpulist.format(c.id for c in topo.online() if c.node == n)


def run_verify(args: argparse.Namespace) -> ExitCode:
    """Check a live host against the plan stored for its node."""
    with common.open_store(args, create=False) as store:
        node = stage.resolve(store, args.node)
        if args.file:
            live = stage.read_facts_file(args.file)
        elif args.local:
            live = inband.collect_local()
        else:
            live = inband.collect_ssh(_ssh_target(args))  # type: ignore[arg-type]
        prof, checks = stage.verify(store, node, live, profile_opts.library(args), args.profile)
    render([{**asdict(c), "status": "ok" if c.ok else "pending" if c.pending else "failed"}
            for c in checks], args.output,
           title=f"{node.label}: live host against plan ({prof.name})",
           columns=[("check", "check"), ("expected", "expected"), ("actual", "actual"),
                    ("status", "status")])
    return ExitCode.OK if all(c.ok or c.pending for c in checks) else ExitCode.FINDINGS
