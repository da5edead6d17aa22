"""``metalctl harden``: SELinux/sVirt, libvirt TLS and trusted repositories over SSH."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from metalctl import harden as stage
from metalctl.cli import common, options
from metalctl.cli import pki as pki_cli
from metalctl.exitcodes import ExitCode
from metalctl.hosts import load_site
from metalctl.model.compliance import HardenStatus
from metalctl.output.render import render, summary_line
from metalctl.rules import catalogue as rules_mod


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``harden`` and its options."""
    p = sub.add_parser("harden", help="harden KVM hosts over SSH (SELinux/sVirt, libvirt TLS, "
                                      "trusted repositories)",
                       description="Gather each host's state in one SSH round trip, plan the "
                                   "changes its rules need, and apply them atomically (or, "
                                   "with --check, print them as a diff and change nothing).")
    p.add_argument("hosts", nargs="*", metavar="[USER@]HOST[:PORT]",
                   help="hosts to harden (management address = the SSH address)")
    p.add_argument("--inventory", type=Path,
                   help="hosts YAML (name, ssh, mgmt_address, names); see inventory/")
    p.add_argument("--check", action="store_true",
                   help="print the planned changes as a diff; change nothing (exit 2 when "
                        "anything would change)")
    p.add_argument("--site", type=Path, help="site policy YAML over hardening/site.yaml")
    p.add_argument("--rules-dir", type=Path, action="append", default=[],
                   help="extra rule files (ids must not collide)")
    p.add_argument("--rule", action="append", help="only these rule ids")
    p.add_argument("--tag", action="append", help="only rules with these tags")
    p.add_argument("--severity", action="append", choices=rules_mod.SEVERITIES)
    options.add_host_run(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitCode:
    """Harden hosts over SSH (or show the diff with ``--check``) and record the results."""
    hosts = common.hosts_of(args)
    rules = rules_mod.select(rules_mod.load(args.rules_dir), args.rule, args.tag, args.severity)
    pki = pki_cli.site_pki(args)
    if not pki.exists() and args.check:
        common.STDERR.print(f"no site CA in {pki.dir}: certificates are not compared "
                            "(run `metalctl pki init`)")
    opts = stage.HardenOptions(check=args.check, site=load_site(args.site),
                               pki=pki if pki.exists() else None, key_file=args.ssh_key,
                               known_hosts=args.known_hosts, sudo=args.sudo,
                               concurrency=args.concurrency)
    with common.open_store(args) as store, common.progress("harden", len(hosts)) as prog:
        results = stage.harden(hosts, rules, opts, store=store, on_result=lambda r: prog.update(
            0, advance=1, last=f"{r.host}: {r.status.value}"))
    rows = [r.to_dict() for r in results]
    if args.output == "table":
        for r in results if args.check else []:
            if r.diff:
                sys.stdout.write(f"# {r.host}\n{r.diff}")
        render(rows, "table", title="harden" + (" --check" if args.check else ""), columns=[
            ("host", "host"), ("status", "status"),
            ("changed", lambda r: len(r["changed"]) or None),
            ("deferred / reboot", lambda r: "; ".join(r["reboot_required"]) or None),
            ("error", "error")])
    else:
        render(rows, args.output, columns=[])
    common.STDERR.print(summary_line(Counter(r.status.value for r in results)))
    if any(not r.status.ok for r in results):
        return ExitCode.FAILED
    if args.check and any(r.status is HardenStatus.WOULD_CHANGE for r in results):
        return ExitCode.FINDINGS
    return ExitCode.OK
