"""``metalctl handoff``: audited KVM hosts to Nova computes, verified in Placement."""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from metalctl import handoff as stage
from metalctl.cli import common, options
from metalctl.cli import pki as pki_cli
from metalctl.errors import InputError
from metalctl.exitcodes import ExitCode
from metalctl.output.render import render, summary_line

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``2d`` as seconds (argparse type)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (90s, 30m, 24h, 2d)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``handoff`` and its options."""
    p = sub.add_parser("handoff", help="hand audited KVM hosts to Nova; verify Placement",
                       description="Gate each host on its latest audit, write nova-compute's "
                                   "configuration from its profile plan (validated against "
                                   "Nova's own options first), start and register it, and "
                                   "verify Placement's inventories against the plan. "
                                   "--disable takes hosts out of scheduling.")
    p.add_argument("hosts", nargs="*", metavar="[USER@]HOST[:PORT]",
                   help="hosts (names as the audit and the store know them: use --inventory)")
    p.add_argument("--inventory", type=Path, help="hosts YAML (name, ssh, mgmt_address)")
    p.add_argument("--site", type=Path, required=True,
                   help="site file with the nova: and handoff: sections")
    p.add_argument("--check", action="store_true",
                   help="print the nova.conf diff (secrets masked); change nothing "
                        "(exit 2 when anything would change)")
    p.add_argument("--gate-severity", default="high", choices=["info", "low", "medium", "high"],
                   help="refuse hosts with unwaived audit failures at or above this "
                        "(default high)")
    p.add_argument("--audit-max-age", type=duration_s, default=24 * 3600, metavar="AGE",
                   help="refuse hosts whose latest audit is older (default 24h)")
    p.add_argument("--no-canary", dest="canary", action="store_false",
                   help="do not boot the canary guest before declaring a host handed off "
                        "(the result says it was skipped)")
    p.add_argument("--disable", action="store_true",
                   help="disable the hosts' compute services (out of scheduling)")
    p.add_argument("--reason", help="why the hosts are disabled (with --disable)")
    options.add_host_run(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitCode:
    """Hand hosts off (or ``--check``, or ``--disable``); Nova down is exit 4 (main)."""
    if args.disable and not args.reason:
        raise InputError("--reason", "reason", "--disable needs --reason")
    hosts = common.hosts_of(args)
    site = stage.load_site(args.site)
    pki = pki_cli.site_pki(args)
    opts = stage.HandoffOptions(check=args.check, gate_severity=args.gate_severity,
                                audit_max_age_s=args.audit_max_age,
                                pki=pki if pki.exists() else None, key_file=args.ssh_key,
                                known_hosts=args.known_hosts, sudo=args.sudo,
                                concurrency=args.concurrency, canary=args.canary)
    verb = stage.disable if args.disable else stage.handoff
    extra = (args.reason,) if args.disable else ()
    with common.open_store(args) as store, common.progress("handoff", len(hosts)) as prog:
        results = verb(hosts, site, *extra, opts, store=store,  # type: ignore[operator]
                       on_result=lambda r: prog.update(0, advance=1,
                                                       last=f"{r.host}: {r.status}"))
    _show(results, args)
    common.STDERR.print(summary_line(Counter(r.status.value for r in results)))
    if any(not r.status.ok for r in results):
        return ExitCode.FAILED
    if args.check and any(r.status is stage.HandoffStatus.WOULD_CHANGE for r in results):
        return ExitCode.FINDINGS
    return ExitCode.OK


def _show(results: list[stage.HandoffResult], args: argparse.Namespace) -> None:
    rows = [r.to_dict() for r in results]
    if args.output != "table":
        render(rows, args.output, columns=[])
        return
    for r in results if args.check else []:
        if r.diff:
            sys.stdout.write(f"# {r.host}\n{r.diff}")

    def inventories(row: dict) -> str | None:
        inv = row["evidence"].get("inventories") or {}
        return " ".join(f"{rc}={inv[rc]['total']}" for rc in ("PCPU", "VCPU") if rc in inv) \
            + (f" MEMORY_MB.reserved={inv['MEMORY_MB']['reserved']}" if "MEMORY_MB" in inv
               else "") or None

    render(rows, "table", title="handoff" + (" --check" if args.check else ""), columns=[
        ("host", "host"), ("status", "status"),
        ("changed", lambda r: ", ".join(r["changed"]) or None),
        ("placement", inventories),
        ("canary", lambda r: _canary(r["evidence"].get("canary"))),
        ("notes", lambda r: "; ".join(r["notes"]) or None),
        ("error", "error"), ("nova-compute log", "log_line")])


def _canary(c: dict | None) -> str | None:
    if not c:
        return None
    if c.get("skipped"):
        return f"skipped ({c['skipped']})"
    return ("ok" if c["ok"] else "FAILED") + " " + " ".join(
        f"{k['name']}={k['status']}" for k in c["checks"])
