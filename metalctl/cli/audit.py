"""``metalctl audit``: compliance of hosts (SSH, read-only) and BMCs (Redfish)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from metalctl.audit import bmc as bmc_audit
from metalctl.audit import formats, history, rollup, waivers
from metalctl.audit import run as stage
from metalctl.audit.model import ERROR, FAIL, SEVERITY_RANK, Report
from metalctl.budget import DISCOVERY
from metalctl.cli import common
from metalctl.cli import harden as harden_cli
from metalctl.cli import pki as pki_cli
from metalctl.errors import InputError
from metalctl.exitcodes import ExitCode
from metalctl.harden import rules as rules_mod
from metalctl.hosts import load_site
from metalctl.profile.library import ProfileLibrary

FORMATS = ("table", "json", "junit", "sarif", "html")


def register(sub: argparse._SubParsersAction) -> None:
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
    for fmt in ("json", "junit", "sarif", "html"):
        p.add_argument(f"--{fmt}", type=Path, metavar="FILE", dest=f"{fmt}_file",
                       help=f"also write the {fmt} report to FILE")
    common.add_ssh(p)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--no-store", action="store_true", help="do not record the scan")
    pki_cli.add_pki_dir(p)
    common.add_credentials(p, required=False)
    common.add_tls(p)
    common.add_store(p)
    p.set_defaults(func=run)


def render(report: Report, fmt: str) -> str:
    return {"json": formats.to_json, "junit": formats.junit, "sarif": formats.sarif,
            "html": formats.html_report}[fmt](report)


def run(args: argparse.Namespace) -> ExitCode:
    all_rules = rules_mod.select(rules_mod.load(args.rules_dir), args.rule, args.tag,
                                 args.severity)
    host_rules = [r for r in all_rules if "bmc" not in r.platforms]
    bmc_rules = [r for r in all_rules if "bmc" in r.platforms]
    hosts = harden_cli.hosts_of(args) if (args.hosts or args.inventory) else []
    if not hosts and not args.bmc:
        raise InputError("hosts", "-", "give hosts, --inventory and/or --bmc")
    site = load_site(args.site)
    pki = pki_cli.site_pki(args)
    opts = stage.Options(site=site, pki=pki if pki.exists() else None, key_file=args.ssh_key,
                         known_hosts=args.known_hosts, sudo=args.sudo,
                         concurrency=args.concurrency)
    store = common.open_store(args)
    try:
        with common.progress("audit", len(hosts) or None) as prog:
            report = stage.audit(hosts, host_rules, opts, on_done=lambda h: prog.update(
                0, advance=1, last=f"{h.host}: {'error' if h.error else 'done'}"))
        if args.bmc:
            _audit_bmcs(args, store, report, bmc_rules, site)
        profiles = {}
        for h in report.hosts:
            node = store.find(h.host)
            plan = store.get_data(node["key"], "plan") if node else None
            if plan:
                profiles[h.host] = plan["profile"]
        if args.waivers:
            expired = waivers.apply(report, waivers.load(args.waivers, {r.id for r in all_rules}),
                                    profiles)
            for e in expired:
                common.STDERR.print(f"waiver for {e['rule']} on {e['host']} expired "
                                    f"{e['expired']}: not applied")
        report.fleet = rollup.fleet(report)
        if args.since:
            report.changes = history.compare(store, report, args.since)
        if not args.no_store:
            history.save(store, report)
    finally:
        store.close()
    for fmt in ("json", "junit", "sarif", "html"):
        path = getattr(args, f"{fmt}_file")
        if path:
            path.write_text(render(report, fmt))
    if args.output == "table":
        formats.table(report, sys.stdout, all_results=args.all)
    else:
        sys.stdout.write(render(report, args.output))
    return exit_code(report, args.fail_on)


def exit_code(report: Report, fail_on: str) -> ExitCode:
    if any(h.error for h in report.hosts) or any(r.status == ERROR for r in report.results()):
        return ExitCode.FAILED
    if fail_on != "none":
        floor = SEVERITY_RANK[fail_on]
        if any(r.status == FAIL and SEVERITY_RANK.get(r.severity, 0) >= floor
               for r in report.results()):
            return ExitCode.FINDINGS
    return ExitCode.OK


def _audit_bmcs(args: argparse.Namespace, store, report: Report, rules, site) -> None:
    budget = replace(DISCOVERY, read_timeout_s=20)
    profiles = ProfileLibrary()
    verify = common.verify_of(args)
    for node in store.nodes():
        name = node["record"].get("credentials")
        creds = None
        if args.credentials:
            creds = common.merged_credentials(args, "+".join(args.credentials))
        elif name:
            creds = common.merged_credentials(args, name)
        report.hosts.append(bmc_audit.check_node(store, node, rules, creds, verify, site,
                                                 budget, profiles))
    for r in rules:
        report.rules.setdefault(r.id, stage.rule_meta(r))
