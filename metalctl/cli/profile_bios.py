"""``metalctl profile apply|diff``: a profile's BIOS part through the BMC or Ironic."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import asdict
from typing import Any

from metalctl.budget import ENROLLMENT
from metalctl.cli import common, options, profile_opts
from metalctl.credentials import CredentialSet
from metalctl.exitcodes import ExitCode
from metalctl.output.render import render, summary_line
from metalctl.profile import bios, stage


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``apply`` and ``diff`` to ``metalctl profile``."""
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


def _bmc_options(p: argparse.ArgumentParser) -> None:
    profile_opts.add_profile_dirs(p)
    options.add_credentials(p, required=False)
    options.add_tls(p)
    options.add_store(p)
    options.add_output(p)
    p.add_argument("--concurrency", type=int, default=8)


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
                             ironic=ironic, bios_lib=profile_opts.bios_library(args),
                             settle_s=getattr(args, "timeout", 600.0),
                             concurrency=args.concurrency)


def run_apply(args: argparse.Namespace) -> ExitCode:
    """Apply a profile's BIOS attributes to nodes through their BMC or Ironic."""
    prof = profile_opts.library(args).load(args.profile)
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
    prof = profile_opts.library(args).load(args.profile)
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
