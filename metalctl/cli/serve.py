"""``metalctl serve``: the boot service of ``provision --via pxe``, in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from metalctl.exitcodes import ExitCode
from metalctl.provision import defaults, dnsmasq
from metalctl.provision.bootservice import BootService


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` verb."""
    p = sub.add_parser("serve", help="boot service: iPXE scripts, one-time kickstarts, "
                                     "install callbacks (foreground; SIGTERM stops it)")
    p.add_argument("--bind", required=True, help="address the provisioning network reaches")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--state-dir", type=Path, default=None,
                   help="installs and events (default $METALCTL_BOOT_STATE or "
                        "~/.local/state/metalctl/boot)")
    p.add_argument("--files-dir", type=Path, help="installer files served under /files/")
    p.add_argument("--public-url", help="URL installers use, when not http://BIND:PORT")
    p.add_argument("--dnsmasq-check", type=Path, metavar="FILE",
                   help="refuse to start unless dnsmasq --test accepts FILE")
    p.add_argument("--dnsmasq-conf", type=Path, metavar="FILE",
                   help="the dnsmasq configuration serving this network: checked like "
                        "--dnsmasq-check; its dhcp-host pins and lease file bind each "
                        "install to the address DHCP gave its MAC (docs/bootservice.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitCode:
    """Serve until SIGTERM or SIGINT."""
    for conf in (args.dnsmasq_check, args.dnsmasq_conf):
        if conf:
            dnsmasq.check(conf)  # InputError -> exit 3
    svc = BootService(args.bind, args.port, args.state_dir or defaults.state_dir(),
                      files_dir=args.files_dir, public_url=args.public_url,
                      dhcp=dnsmasq.DnsmasqLeases(args.dnsmasq_conf) if args.dnsmasq_conf
                      else None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with svc:  # BootServiceError (address in use) -> exit 4
        stop.wait()
    return ExitCode.OK
