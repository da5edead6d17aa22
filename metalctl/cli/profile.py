"""``metalctl profile``: list/show profiles, derive plans, the flavors published to Nova;
BIOS apply/diff (:mod:`.profile_bios`), host facts and verify (:mod:`.profile_host`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from metalctl.cli import common, options, profile_bios, profile_host, profile_opts
from metalctl.exitcodes import ExitCode
from metalctl.output.document import dump
from metalctl.output.plan import print_plan
from metalctl.output.render import render
from metalctl.profile import stage


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``profile`` and its actions (list, show, facts, derive, apply, diff, verify)."""
    p = sub.add_parser("profile", help="performance profiles: derive per node, apply BIOS",
                       description="Turn a profile's intent into exact per-node settings "
                                   "from the node's real topology; apply its BIOS part "
                                   "through the BMC.")
    verbs = p.add_subparsers(dest="profile_verb", required=True, metavar="ACTION")

    ls = verbs.add_parser("list", help="profiles available")
    profile_opts.add_profile_dirs(ls)
    options.add_output(ls)
    ls.set_defaults(func=run_list)

    show = verbs.add_parser("show", help="a profile with its extends chain resolved")
    show.add_argument("name")
    profile_opts.add_profile_dirs(show)
    options.add_output(show)
    show.set_defaults(func=run_show)

    d = verbs.add_parser("derive", help="print the exact plan for a node and a profile")
    d.add_argument("node")
    d.add_argument("--profile", "-p", required=True)
    d.add_argument("--facts", type=Path, help="use these facts instead of the stored ones")
    profile_opts.add_profile_dirs(d)
    options.add_store(d)
    options.add_output(d)
    d.set_defaults(func=run_derive)

    profile_bios.register(verbs)
    profile_host.register(verbs)

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


# --- verbs ---------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> ExitCode:
    """List the profiles found in the profile directories."""
    lib = profile_opts.library(args)
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
    prof = profile_opts.library(args).load(args.name)
    data = {"name": prof.name, "chain": [str(p) for p in prof.chain], **prof.data}
    dump(data, "json" if args.output == "json" else "yaml")
    return ExitCode.OK


def run_derive(args: argparse.Namespace) -> ExitCode:
    """Derive a node's plan from a profile and its facts, store it and show it."""
    prof = profile_opts.library(args).load(args.profile)
    with common.open_store(args) as store:
        if args.facts:
            node = stage.resolve(store, args.node) if store.find(args.node) else \
                stage.NodeRef(label=args.node)
            topo = stage.read_facts_file(args.facts)
        else:
            node = stage.resolve(store, args.node)
            topo = stage.facts_of(store, node)
        plan, bios_section = stage.plan(store, node, prof, topo, profile_opts.bios_library(args))
    data = {**plan.to_dict(), "bios": bios_section}
    if args.output != "table":
        dump(data, args.output)
        return ExitCode.OK
    print_plan(data, common.STDERR)
    return ExitCode.OK
