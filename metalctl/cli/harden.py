"""``metalctl harden``: SELinux/sVirt, libvirt TLS and trusted repositories over SSH."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metalctl import harden as stage
from metalctl.cli import common
from metalctl.cli import pki as pki_cli
from metalctl.errors import InputError
from metalctl.exitcodes import ExitCode
from metalctl.harden import rules as rules_mod
from metalctl.hosts import HostSpec, load_hosts, load_site
from metalctl.model.node import Event, Lifecycle
from metalctl.output.render import render, summary_line
from metalctl.ssh import SshTarget
from metalctl.store import now


def register(sub: argparse._SubParsersAction) -> None:
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
    common.add_ssh(p)
    p.add_argument("--concurrency", type=int, default=16)
    pki_cli.add_pki_dir(p)
    common.add_output(p)
    common.add_store(p)
    p.set_defaults(func=run)


def hosts_of(args: argparse.Namespace) -> list[HostSpec]:
    hosts = load_hosts(args.inventory) if args.inventory else []
    for spec in args.hosts:
        target = SshTarget.parse(spec)
        hosts.append(HostSpec(name=target.host, ssh=spec, mgmt_address=target.host))
    if not hosts:
        raise InputError("hosts", "-", "give hosts or --inventory")
    return hosts


def run(args: argparse.Namespace) -> ExitCode:
    hosts = hosts_of(args)
    rules = rules_mod.select(rules_mod.load(args.rules_dir), args.rule, args.tag, args.severity)
    pki = pki_cli.site_pki(args)
    if not pki.exists():
        common.STDERR.print(f"no site CA in {pki.dir}: certificates are not installed "
                            "(run `metalctl pki init`)")
    opts = stage.Options(check=args.check, site=load_site(args.site),
                         pki=pki if pki.exists() else None, key_file=args.ssh_key,
                         known_hosts=args.known_hosts, sudo=args.sudo,
                         concurrency=args.concurrency)
    with common.progress("harden", len(hosts)) as prog:
        results = stage.harden(hosts, rules, opts, on_done=lambda r: prog.update(
            0, advance=1, last=f"{r.host}: {r.status}"))
    _record(args, results)
    if args.output == "table":
        if args.check:
            for r in results:
                if r.diff:
                    sys.stdout.write(f"# {r.host}\n{r.diff}")
        render([r.to_dict() for r in results], "table", title="harden" + (
            " --check" if args.check else ""), columns=[
            ("host", "host"), ("status", "status"),
            ("changed", lambda r: len(r["changed"]) or None),
            ("deferred / reboot", lambda r: "; ".join(r["reboot_required"]) or None),
            ("error", "error")])
    else:
        render([r.to_dict() for r in results], args.output, columns=[])
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    common.STDERR.print(summary_line(counts))
    if any(r.status in ("failed", "dropped", "unreachable") for r in results):
        return ExitCode.FAILED
    if args.check and any(r.status == "would-change" for r in results):
        return ExitCode.FINDINGS
    return ExitCode.OK


def _record(args: argparse.Namespace, results: list[stage.HostResult]) -> None:
    """Hosts that are nodes of the store get a lifecycle event (and state when hardened)."""
    if args.check:
        return
    with common.open_store(args) as store:
        for r in results:
            node = store.find(r.host)
            if node is None:
                continue
            store.add_event(Event(node["key"], "harden", r.status, now(),
                                  {"changed": r.changed, "reboot_required": r.reboot_required},
                                  r.error))
            if r.status in ("hardened", "compliant"):
                store.set_state(node["key"], Lifecycle.HARDENED)
