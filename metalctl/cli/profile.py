"""``metalctl profile``: list/show profiles, collect facts, derive, apply BIOS, diff, verify."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from metalctl import cpulist
from metalctl.budget import ENROLLMENT
from metalctl.cli import common, options
from metalctl.credentials import CredentialSet
from metalctl.exitcodes import ExitCode
from metalctl.output.document import dump
from metalctl.output.plan import print_plan
from metalctl.output.render import render, summary_line
from metalctl.profile import bios, stage
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.ssh import SshTarget


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``profile`` and its actions (list, show, facts, derive, apply, diff, verify)."""
    p = sub.add_parser("profile", help="performance profiles: derive per node, apply BIOS",
                       description="Turn a profile's intent into exact per-node settings "
                                   "from the node's real topology; apply its BIOS part "
                                   "through the BMC.")
    verbs = p.add_subparsers(dest="profile_verb", required=True, metavar="ACTION")

    ls = verbs.add_parser("list", help="profiles available")
    _profile_dirs(ls)
    options.add_output(ls)
    ls.set_defaults(func=run_list)

    show = verbs.add_parser("show", help="a profile with its extends chain resolved")
    show.add_argument("name")
    _profile_dirs(show)
    options.add_output(show)
    show.set_defaults(func=run_show)

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

    d = verbs.add_parser("derive", help="print the exact plan for a node and a profile")
    d.add_argument("node")
    d.add_argument("--profile", "-p", required=True)
    d.add_argument("--facts", type=Path, help="use these facts instead of the stored ones")
    _profile_dirs(d)
    options.add_store(d)
    options.add_output(d)
    d.set_defaults(func=run_derive)

    a = verbs.add_parser("apply", help="write the profile's BIOS settings through the BMC")
    a.add_argument("nodes", nargs="+")
    a.add_argument("--profile", "-p", required=True)
    a.add_argument("--reboot", action="store_true",
                   help="reset the system so pending settings apply, then verify them")
    a.add_argument("--via", choices=["redfish", "ironic"], default="redfish",
                   help="ironic: a manual clean step bios.apply_configuration "
                        "(disable_ramdisk), for enrolled nodes in manageable")
    a.add_argument("--timeout", type=float, default=900.0,
                   help="seconds to wait for the settings to become current")
    _bmc_options(a)
    options.add_ironic(a)
    a.set_defaults(func=run_apply)

    df = verbs.add_parser("diff", help="BIOS drift of nodes against the profile")
    df.add_argument("nodes", nargs="+")
    df.add_argument("--profile", "-p", required=True)
    _bmc_options(df)
    df.set_defaults(func=run_diff)

    v = verbs.add_parser("verify", help="re-derive on the live host and compare with the plan")
    v.add_argument("node")
    v.add_argument("--profile", "-p", help="default: the profile of the stored plan")
    vs = v.add_mutually_exclusive_group(required=True)
    vs.add_argument("--local", action="store_true")
    vs.add_argument("--ssh", metavar="[USER@]HOST[:PORT]")
    vs.add_argument("--file", type=Path)
    options.add_ssh(v)
    _profile_dirs(v)
    options.add_store(v)
    options.add_output(v)
    v.set_defaults(func=run_verify)


    fl = verbs.add_parser("flavors", help="the flavors teams can request (published to "
                                          "Nova at hand-off) and on how many hosts")
    fl.add_argument("--site", type=Path, required=True, help="the hand-off site file")
    options.add_output(fl)
    fl.set_defaults(func=run_flavors)


def run_flavors(args: argparse.Namespace) -> ExitCode:
    """List the published profile flavors with their hosts (read from Nova)."""
    from metalctl import handoff  # noqa: PLC0415 - only this action needs Nova

    offers = handoff.offered(handoff.load_site(args.site))
    render([{**o.to_dict(), "hosts": len(o.hosts), "names": ", ".join(o.hosts)}
            for o in offers], args.output, title="flavors teams can request",
           columns=[("flavor", "flavor"), ("profile", "profile"), ("vcpus", "vcpus"),
                    ("ram_mb", "ram_mb"), ("hosts", "hosts"), ("names", "names")])
    return ExitCode.OK


def _profile_dirs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile-dir", type=Path, action="append", default=[],
                   help="extra directory of profiles (searched before the shipped ones); "
                        "its bios/ subfolder may hold vendor maps")


def _bmc_options(p: argparse.ArgumentParser) -> None:
    _profile_dirs(p)
    options.add_credentials(p, required=False)
    options.add_tls(p)
    options.add_store(p)
    options.add_output(p)
    p.add_argument("--concurrency", type=int, default=8)


def _library(args: argparse.Namespace) -> ProfileLibrary:
    return ProfileLibrary(list(args.profile_dir))


def _bios_library(args: argparse.Namespace) -> bios.BiosLibrary:
    return bios.BiosLibrary([d / "bios" for d in args.profile_dir])


def _ssh_target(args: argparse.Namespace) -> SshTarget | None:
    if not args.ssh:
        return None
    return SshTarget.parse(args.ssh, key_file=args.ssh_key, known_hosts=args.known_hosts,
                           sudo=args.sudo)


# --- verbs ---------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> ExitCode:
    """List the profiles found in the profile directories."""
    lib = _library(args)
    rows = []
    for name in lib.names():
        prof = lib.load(name)
        rows.append({"name": name, "extends": [p.stem for p in prof.chain[1:]],
                     "description": prof.description, "file": str(prof.chain[0])})
    render(rows, args.output, title="profiles",
           columns=[("name", "name"), ("extends", "extends"), ("description", "description")])
    return ExitCode.OK


def run_show(args: argparse.Namespace) -> ExitCode:
    """Show one profile with its extends chain resolved."""
    prof = _library(args).load(args.name)
    data = {"name": prof.name, "chain": [str(p) for p in prof.chain], **prof.data}
    dump(data, "json" if args.output == "json" else "yaml")
    return ExitCode.OK


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


def run_derive(args: argparse.Namespace) -> ExitCode:
    """Derive a node's plan from a profile and its facts, store it and show it."""
    prof = _library(args).load(args.profile)
    with common.open_store(args) as store:
        if args.facts:
            node = stage.resolve(store, args.node) if store.find(args.node) else \
                stage.NodeRef(label=args.node)
            topo = stage.read_facts_file(args.facts)
        else:
            node = stage.resolve(store, args.node)
            topo = stage.facts_of(store, node)
        plan, bios_section = stage.plan(store, node, prof, topo, _bios_library(args))
    data = {**plan.to_dict(), "bios": bios_section}
    if args.output != "table":
        dump(data, args.output)
        return ExitCode.OK
    print_plan(data, common.STDERR)
    return ExitCode.OK


def _bios_options(args: argparse.Namespace, ironic: Any = None) -> stage.BiosOptions:
    given = common.merged_credentials(args, "+".join(args.credentials)) \
        if args.credentials else None

    def creds_for(node: stage.NodeRef) -> CredentialSet | None:
        if given is not None:
            return given
        name = node.record.credentials if node.record else None
        return common.merged_credentials(args, name) if name else None
    return stage.BiosOptions(credentials=creds_for, verify=common.verify_of(args),
                             budget=ENROLLMENT, reboot=getattr(args, "reboot", False),
                             ironic=ironic, bios_lib=_bios_library(args),
                             settle_s=getattr(args, "timeout", 600.0),
                             concurrency=args.concurrency)


def run_apply(args: argparse.Namespace) -> ExitCode:
    """Apply a profile's BIOS attributes to nodes through their BMC or Ironic."""
    prof = _library(args).load(args.profile)
    opts = _bios_options(args, common.ironic(args) if args.via == "ironic" else None)
    with common.open_store(args, create=False) as store:
        nodes = [stage.resolve(store, ref) for ref in args.nodes]
        with common.progress("bios", len(nodes)) as prog:
            results = stage.apply(nodes, prof, opts, store=store, on_result=lambda r: prog.update(
                0, advance=1, last=r.node))
    rows = [{"node": r.node, "outcome": r.outcome.value, "via": r.via,
             "changes": r.changes, "error": r.error,
             "attributes": [asdict(x) for x in r.rows]} for r in results]
    render(rows, args.output, title=f"BIOS: {prof.name}",
           columns=[("node", "node"), ("outcome", "outcome"), ("via", "via"),
                    ("changed", lambda r: [f"{k}={v['to']}" for k, v in r["changes"].items()]
                     or None), ("error", "error")])
    common.STDERR.print(summary_line(Counter(r.outcome.value for r in results)))
    bad = {bios.BiosOutcome.FAILED, bios.BiosOutcome.UNSUPPORTED}
    return ExitCode.FAILED if any(r.outcome in bad for r in results) else ExitCode.OK


def run_diff(args: argparse.Namespace) -> ExitCode:
    """Show BIOS drift between a profile and nodes' current attributes (read only)."""
    prof = _library(args).load(args.profile)
    with common.open_store(args, create=False) as store:
        nodes = [stage.resolve(store, ref) for ref in args.nodes]
    reports = stage.diff(nodes, prof, _bios_options(args))
    rows = [{"node": d.node, **asdict(r)} for d in reports for r in d.rows] + [
        {"node": d.node, "attribute": None, "desired": None, "current": None, "pending": None,
         "status": "error", "error": d.error} for d in reports if d.error]
    render(rows, args.output, title=f"BIOS drift against {prof.name}",
           columns=[("node", "node"), ("attribute", "attribute"), ("desired", "desired"),
                    ("current", "current"), ("pending", "pending"), ("status", "status"),
                    ("error", "error")])
    if any(d.error for d in reports):
        return ExitCode.FAILED
    return ExitCode.FINDINGS if any(d.drifted for d in reports) else ExitCode.OK


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
        prof, checks = stage.verify(store, node, live, _library(args), args.profile)
    render([{**asdict(c), "status": "ok" if c.ok else "failed"} for c in checks], args.output,
           title=f"{node.label}: live host against plan ({prof.name})",
           columns=[("check", "check"), ("expected", "expected"), ("actual", "actual"),
                    ("status", "status")])
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.FINDINGS
