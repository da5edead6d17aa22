"""``metalctl discover``: scan address ranges for BMCs and read their hardware."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace

from metalctl import discover as stage
from metalctl.budget import DISCOVERY
from metalctl.cli import common, options
from metalctl.exitcodes import ExitCode
from metalctl.model.node import Protocol, Status
from metalctl.netaddrs import parse_targets
from metalctl.output.render import render, summary_line

COLUMNS = [("address", "address"), ("protocol", "protocol"), ("status", "status"),
           ("system", lambda r: (r["system_id"] or "").rsplit("/", 1)[-1] or None),
           ("vendor", "vendor"), ("model", "model"), ("serial", "serial"),
           ("power", "power_state"),
           ("cpu s/c/t", lambda r: "/".join(str(r["cpu"].get(k) or "?")
                                           for k in ("sockets", "cores", "threads"))
            if r["status"] == "ok" else None),
           ("mem GiB", "memory_gib"), ("NICs", lambda r: len(r["nics"]) or None),
           ("error", "error")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discover", help="find BMCs (Redfish, IPMI) in address ranges",
                       description="Probe every address of the targets concurrently for a "
                                   "Redfish service and an IPMI BMC, log in with the named "
                                   "credential set and record the hardware.")
    p.add_argument("targets", nargs="+",
                   help="CIDR, range (a-b or a-N), address or host, optionally scheme:// "
                        "(https, http, ipmi) and :port")
    options.add_credentials(p, required=True)
    options.add_tls(p)
    options.add_output(p)
    options.add_store(p)
    p.add_argument("--protocol", choices=["redfish", "ipmi"], action="append",
                   help="limit probing to these protocols (default both, Redfish first)")
    p.add_argument("--redfish-scheme", choices=["https", "http"], default="https")
    p.add_argument("--redfish-port", type=int)
    p.add_argument("--ipmi-port", type=int, default=623)
    p.add_argument("--concurrency", type=int, default=DISCOVERY.concurrency)
    p.add_argument("--connect-timeout", type=float, default=DISCOVERY.connect_timeout_s,
                   help="seconds; what a dead address costs (default %(default)s)")
    p.add_argument("--read-timeout", type=float, default=DISCOVERY.read_timeout_s)
    p.add_argument("--deadline", type=float, default=DISCOVERY.deadline_s,
                   help="seconds of wall-clock time per BMC, however it trickles "
                        "(default %(default)s)")
    p.add_argument("--max-addresses", type=int, default=65536)
    p.add_argument("--no-store", action="store_true", help="do not save results")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitCode:
    targets = parse_targets(args.targets, max_addresses=args.max_addresses)
    creds = common.merged_credentials(args, "+".join(args.credentials))
    budget = replace(DISCOVERY, connect_timeout_s=args.connect_timeout,
                     read_timeout_s=args.read_timeout, deadline_s=args.deadline,
                     concurrency=args.concurrency)
    opts = stage.DiscoverOptions(
        protocols=tuple(Protocol(p) for p in (args.protocol or ["redfish", "ipmi"])),
        redfish_scheme=args.redfish_scheme, redfish_port=args.redfish_port,
        ipmi_port=args.ipmi_port, verify=common.verify_of(args), budget=budget)
    store = None if args.no_store else common.open_store(args)
    total = sum(t.size for t in targets)
    with common.progress("discover", total) as prog:
        def advance(probe: stage.Probe, records: list) -> None:
            prog.update(0, advance=1, last=f"{probe.address}: {records[0].status.value}")
        records = stage.discover(targets, creds, opts, store=store, on_result=advance)
    rows = [r.to_dict() for r in records]
    render(rows, args.output, columns=COLUMNS, title="discovered")
    counts = Counter(r.status.value for r in records)
    common.STDERR.print(f"{len(records)} record(s): {summary_line(dict(counts))}")
    if store:
        store.close()
    failed = any(r.status not in (Status.OK, Status.NO_BMC) for r in records)
    return ExitCode.FAILED if failed else ExitCode.OK
