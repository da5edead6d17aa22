"""``metalctl audit``: compliance of hosts (SSH, read-only) and BMCs (Redfish)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from metalctl.audit import formats, waivers, xccdf
from metalctl.audit import run as stage
from metalctl.audit.model import Report
from metalctl.cli import common, options
from metalctl.cli import pki as pki_cli
from metalctl.credentials import CredentialSet
from metalctl.errors import InputError
from metalctl.exitcodes import ExitCode
from metalctl.hosts import load_site
from metalctl.rules import catalogue as rules_mod

FORMATS = ("table", "json", "junit", "sarif", "html", "xccdf")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``audit`` and its options."""
    p = sub.add_parser("audit", help="compliance scan of hosts (SSH) and BMCs (Redfish)",
                       description="Read-only: one SSH session per host gathers every fact in "
                                   "one round trip; results are evaluated locally against the "
                                   "same rules metalctl harden applies.")
    p.add_argument("hosts", nargs="*", metavar="[USER@]HOST[:PORT]")
    p.add_argument("--inventory", type=Path, help="hosts YAML (as for harden)")
    p.add_argument("--bmc", action="store_true",
                   help="also audit the BMCs of the nodes in the local store")
    p.add_argument("--site", type=Path, help="site policy YAML over hardening/site.yaml")
    p.add_argument("--rules-dir", type=Path, action="append", default=[])
    p.add_argument("--rule", action="append", help="only these rule ids")
    p.add_argument("--tag", action="append", help="only rules with these tags")
    p.add_argument("--severity", action="append", choices=rules_mod.SEVERITIES)
    p.add_argument("--waivers", type=Path, help="waivers YAML (rule, reason, expires, hosts, "
                                                "profile)")
    p.add_argument("--fail-on", choices=["high", "medium", "low", "info", "none"],
                   default="high", help="exit 2 when a failure at or above this severity "
                                        "remains (default %(default)s)")
    p.add_argument("--since", help="compare with an earlier scan (scan id or ISO date)")
    p.add_argument("-o", "--output", choices=FORMATS, default="table")
    p.add_argument("--all", action="store_true", help="table: show passing results too")
    for fmt in FORMATS[1:]:
        p.add_argument(f"--{fmt}", type=Path, metavar="FILE", dest=f"{fmt}_file",
                       help=f"also write the {fmt} report to FILE")
    options.add_ssh(p)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--no-store", action="store_true", help="do not record the scan")
    options.add_pki_dir(p)
    options.add_credentials(p, required=False)
    options.add_tls(p)
    options.add_store(p)
    p.set_defaults(func=run)


def render(report: Report, fmt: str) -> str:
    """Return the report in ``fmt``: json, junit, sarif, html or xccdf (1.2 results)."""
    return {"json": formats.to_json, "junit": formats.junit, "sarif": formats.sarif,
            "html": formats.html_report, "xccdf": xccdf.xccdf}[fmt](report)


def run(args: argparse.Namespace) -> ExitCode:
    """Audit hosts and/or BMCs, store the scan, and write the report.

    Raises:
        InputError: neither hosts, ``--inventory`` nor ``--bmc`` given.
    """
    rules = rules_mod.select(rules_mod.load(args.rules_dir), args.rule, args.tag, args.severity)
    hosts = common.hosts_of(args) if (args.hosts or args.inventory) else []
    if not hosts and not args.bmc:
        raise InputError("hosts", "-", "give hosts, --inventory and/or --bmc")
    pki = pki_cli.site_pki(args)
    opts = stage.AuditOptions(
        site=load_site(args.site), pki=pki if pki.exists() else None,
        key_file=args.ssh_key, known_hosts=args.known_hosts, sudo=args.sudo,
        concurrency=args.concurrency, bmc=args.bmc, bmc_credentials=_bmc_credentials(args),
        verify=common.verify_of(args),
        waivers=waivers.load(args.waivers, {r.id for r in rules}) if args.waivers else [],
        since=args.since, record=not args.no_store)
    with common.open_store(args) as store, common.progress("audit", len(hosts) or None) as prog:
        report = stage.audit(hosts, rules, opts, store=store, on_result=lambda h: prog.update(
            0, advance=1, last=f"{h.host}: {'error' if h.error else 'done'}"))
    for e in report.expired_waivers:
        common.STDERR.print(f"waiver for {e['rule']} on {e['host']} expired {e['expired']}: "
                            "not applied")
    for fmt in FORMATS[1:]:
        path = getattr(args, f"{fmt}_file")
        if path:
            path.write_text(render(report, fmt))
    if args.output == "table":
        formats.table(report, sys.stdout, all_results=args.all)
    else:
        sys.stdout.write(render(report, args.output))
    return stage.exit_code(report, args.fail_on)


def _bmc_credentials(args: argparse.Namespace) -> Callable[[str | None], CredentialSet | None]:
    """--credentials for every BMC, else each node's recorded set (resolved once each)."""
    cache: dict[str, CredentialSet] = {}

    def resolve(recorded: str | None) -> CredentialSet | None:
        name = "+".join(args.credentials) if args.credentials else recorded
        if not name:
            return None
        if name not in cache:
            cache[name] = common.merged_credentials(args, name)
        return cache[name]
    return resolve
