"""``metalctl pki``: the site CA and per-host libvirt TLS certificates."""

from __future__ import annotations

import argparse
from pathlib import Path

from metalctl import settings
from metalctl.cli import common, options
from metalctl.exitcodes import ExitCode
from metalctl.output.render import render
from metalctl.pki import LEAF_DAYS, SitePKI


def default_dir() -> Path:
    return Path(str(settings.get("METALCTL_PKI_DIR")))


def site_pki(args: argparse.Namespace) -> SitePKI:
    return SitePKI(args.pki_dir or default_dir(), organization=args.organization)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pki", help="site CA and per-host libvirt TLS certificates")
    verbs = p.add_subparsers(dest="pki_verb", required=True, metavar="ACTION")
    init = verbs.add_parser("init", help="create the site CA (or --import an existing one)")
    init.add_argument("--import-cert", type=Path, help="existing CA certificate (PEM)")
    init.add_argument("--import-key", type=Path, help="its private key (PEM, unencrypted)")
    options.add_pki_dir(init)
    init.set_defaults(func=run_init)
    issue = verbs.add_parser("issue", help="issue (or reissue) a host's server+client certs")
    issue.add_argument("host")
    issue.add_argument("--name", action="append", default=[], help="extra DNS SAN")
    issue.add_argument("--address", action="append", default=[], help="IP SAN (repeatable)")
    issue.add_argument("--days", type=int, default=LEAF_DAYS)
    options.add_pki_dir(issue)
    issue.set_defaults(func=run_issue)
    proxy = verbs.add_parser("console-proxy", help="issue a VNC console proxy's client cert "
                             "(nova-novncproxy [vnc] vencrypt_*) from the console CA")
    proxy.add_argument("name")
    proxy.add_argument("--days", type=int, default=LEAF_DAYS)
    options.add_pki_dir(proxy)
    proxy.set_defaults(func=run_console_proxy)
    renew = verbs.add_parser("renew", help="reissue every certificate expiring soon")
    renew.add_argument("--within-days", type=int, default=30)
    renew.add_argument("--days", type=int, default=LEAF_DAYS)
    options.add_pki_dir(renew)
    options.add_output(renew)
    renew.set_defaults(func=run_renew)
    ls = verbs.add_parser("list", help="issued host certificates and their expiry")
    options.add_pki_dir(ls)
    options.add_output(ls)
    ls.set_defaults(func=run_list)


def run_init(args: argparse.Namespace) -> ExitCode:
    pki = site_pki(args)
    if args.import_cert or args.import_key:
        if not (args.import_cert and args.import_key):
            common.STDERR.print("--import-cert and --import-key go together")
            return ExitCode.INVALID_INPUT
        path = pki.import_ca(args.import_cert, args.import_key)
    else:
        existed = pki.exists()
        path = pki.init()
        if existed:
            common.STDERR.print("site CA exists; left as it is")
    print(path)
    return ExitCode.OK


def run_issue(args: argparse.Namespace) -> ExitCode:
    certs = site_pki(args).issue(args.host, args.name, args.address, args.days)
    print(f"{certs.server_cert}\n{certs.client_cert}\nclient DN: {certs.client_dn}\n"
          f"not after: {certs.not_after.isoformat()}")
    return ExitCode.OK


def run_console_proxy(args: argparse.Namespace) -> ExitCode:
    pki = site_pki(args)
    cert, key = pki.issue_console_proxy(args.name, args.days)
    print(f"[vnc] vencrypt_client_cert = {cert}\n[vnc] vencrypt_client_key = {key}\n"
          f"[vnc] vencrypt_ca_certs = {pki.console_ca_cert_path}")
    return ExitCode.OK


def _rows(certs: list) -> list[dict]:
    return [{"host": c.host, "client_dn": c.client_dn, "not_after": c.not_after.isoformat(),
             "server_cert": str(c.server_cert)} for c in certs]


def run_renew(args: argparse.Namespace) -> ExitCode:
    renewed = site_pki(args).renew(args.within_days, args.days)
    render(_rows(renewed), args.output, title="renewed (run `metalctl harden` to install)",
           columns=[("host", "host"), ("not after", "not_after")])
    return ExitCode.OK


def run_list(args: argparse.Namespace) -> ExitCode:
    render(_rows(site_pki(args).hosts()), args.output, title="host certificates",
           columns=[("host", "host"), ("client DN", "client_dn"), ("not after", "not_after")])
    return ExitCode.OK
