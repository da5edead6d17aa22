"""Options and helpers shared by every verb."""

from __future__ import annotations

import argparse
import getpass
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from metalctl.credentials import Credential, CredentialSet, Secret, resolve
from metalctl.data import fields
from metalctl.errors import InputError, mask_url, one_line
from metalctl.exitcodes import ExitCode
from metalctl.hosts import HostSpec, load_hosts, parse_ssh
from metalctl.ironic import Ironic, IronicConfig
from metalctl.logredact import RedactingFilter
from metalctl.output.render import FORMATS, PeerTextColumn
from metalctl.store import Store

STDERR = Console(stderr=True)
REDACT = RedactingFilter()
# paramiko's transport thread logs an ERROR traceback for every refused handshake (a
# host still booting, sshd re-executing); metalctl's ssh module reports those itself
_NOISY = ("sushy", "urllib3", "ironicclient", "keystoneauth", "stevedore", "openstack",
          "pyghmi", "paramiko")


class Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting 3 (invalid input): 2 is the README's findings."""

    def error(self, message: str) -> None:  # type: ignore[override] - never returns
        self.print_usage(sys.stderr)
        message = mask_url(one_line(message))  # the value as typed: one line, no userinfo
        self.exit(ExitCode.INVALID_INPUT, f"{self.prog}: error: {message}\n")


def _at_least(minimum: int):  # noqa: ANN202 - a checker
    def check(value: object) -> str | None:
        if isinstance(value, int) and value < minimum:
            return f"must be at least {minimum}"
        return None
    return check


def _between(low: int, high: int):  # noqa: ANN202 - a checker
    def check(value: object) -> str | None:
        if isinstance(value, int) and not low <= value <= high:
            return f"must be {low}-{high}"
        return None
    return check


def _seconds(value: object) -> str | None:
    if isinstance(value, (int, float)) and not (math.isfinite(value) and 0 < value <= 1e7):
        return "must be a number of seconds above 0 (at most 10000000)"
    return None


def _port(value: object) -> str | None:
    return fields.port_problem(value) if isinstance(value, int) else None


def _url(value: object) -> str | None:
    return fields.url_problem(value) if isinstance(value, str) else None


def _host_port(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        fields.split_host_port(value)
    except ValueError as exc:
        return str(exc)
    return None


#: options of any verb checked before the verb runs (so before any probe), by dest
OPTION_CHECKS = {
    "concurrency": _between(1, 4096), "max_addresses": _at_least(1),
    "days": _between(1, 36500), "within_days": _between(0, 36500),
    "octet": _between(1, 254), "net": _between(0, 255), "provnet": _between(0, 255),
    "hosts": _between(1, 250),
    "connect_timeout": _seconds, "read_timeout": _seconds, "timeout": _seconds,
    "deadline": _seconds, "ssh_wait": _seconds,
    "redfish_port": _port, "ipmi_port": _port, "port": _port, "boot_port": _port,
    "ironic_url": _url, "boot_url": _url, "public_url": _url, "serve": _host_port,
}

#: path options by dest, and what each must be (a verb whose option is written, not
#: read, says so with ``set_defaults(path_kinds={dest: "output"})``; None: not a local
#: path of this machine)
PATH_OPTIONS: dict[str, fields.PathKind] = {
    "ca_bundle": "file-or-dir", "ssh_key": "file", "known_hosts": "file",
    "inventory": "file", "site": "file", "waivers": "file", "rack": "file",
    "credentials_file": "file", "import_cert": "file", "import_key": "file",
    "dnsmasq_check": "file", "rules_dir": "dir", "profile_dir": "dir",
    "template_dir": "dir", "files_dir": "dir", "from_file": "file", "file": "file",
    "facts": "file",
    "report_dir": "state-dir", "boot_dir": "state-dir", "state_dir": "state-dir",
    "pki_dir": "state-dir", "junit_file": "output", "sarif_file": "output",
    "html_file": "output", "json_file": "output",
}


def check_options(args: argparse.Namespace) -> None:
    """Refuse wrong option values before a verb runs (exit 3, nothing probed): numbers
    and ports out of range, URLs, and every path option (missing file, folder...).

    Raises:
        InputError: naming the option (``--concurrency``), its value and why.
    """
    for dest, check in OPTION_CHECKS.items():
        value = getattr(args, dest, None)
        reason = check(value)
        if reason:
            raise InputError(_option(dest), mask_url(repr(value)), reason)
    kinds: dict[str, fields.PathKind | None] = {
        **PATH_OPTIONS, **(getattr(args, "path_kinds", None) or {})}
    for dest, kind in kinds.items():
        value = getattr(args, dest, None)
        if kind is None or isinstance(value, bool) or not value:
            continue  # None: a verb's option that only names a path (nodes -o ansible)
        for one in value if isinstance(value, list) else [value]:
            fields.check_path(one, _option(dest), None, kind)


def _option(dest: str) -> str:
    """``ca_bundle`` -> ``--ca-bundle``; ``junit_file`` -> ``--junit``."""
    name = dest.removesuffix("_file") if dest.endswith(("junit_file", "sarif_file",
                                                         "html_file", "json_file")) else dest
    return "--" + name.replace("_", "-")


def env_default(name: str, fallback: str | None = None) -> str | None:
    return os.environ.get(name, fallback)


def add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=FORMATS, default="table",
                   help="output format (default: table)")


def add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=env_default("METALCTL_STORE"),
                   help="SQLite store path (default $METALCTL_STORE or "
                        "~/.local/state/metalctl/metalctl.db)")


def add_credentials(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--credentials", "-c", action="append", required=required, metavar="NAME",
                   help="name of a BMC credential set (repeatable); never a password")
    p.add_argument("--credentials-file", type=Path,
                   default=env_default("METALCTL_CREDENTIALS_FILE"),
                   help="credentials YAML (mode 0600); default $METALCTL_CREDENTIALS_FILE, "
                        "~/.config/metalctl/credentials.yaml, /etc/metalctl/credentials.yaml")


def add_ssh(p: argparse.ArgumentParser) -> None:
    """How metalctl reaches hosts over SSH (profile facts/verify, harden, audit)."""
    p.add_argument("--ssh-key", type=Path, help="private key for SSH")
    p.add_argument("--known-hosts", type=Path,
                   help="known_hosts to verify host keys (default ~/.ssh/known_hosts); "
                        "unknown hosts are refused, never added")
    p.add_argument("--sudo", action="store_true", help="use sudo -n when the user is not root")


def add_tls(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ca-bundle", default=env_default("METALCTL_CA_BUNDLE"),
                   help="CA bundle to verify BMC certificates (default $METALCTL_CA_BUNDLE, "
                        "else the system CAs)")
    g.add_argument("--insecure", action="store_true",
                   help="do not verify BMC TLS certificates (logged as a warning)")


def add_ironic(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--os-cloud", default=env_default("OS_CLOUD"),
                   help="clouds.yaml entry (default $OS_CLOUD)")
    g.add_argument("--ironic-url", default=env_default("METALCTL_IRONIC_URL"),
                   help="standalone Ironic endpoint with noauth (default $METALCTL_IRONIC_URL)")


def verify_of(args: argparse.Namespace) -> bool | str:
    if args.insecure:
        logging.getLogger("metalctl").warning(
            "TLS verification of BMCs is OFF (--insecure); credentials can be intercepted")
        return False
    return args.ca_bundle or True


def prompt_credential(name: str) -> Credential:
    """Ask the terminal for one credential of set ``name`` (the password is not echoed)."""
    user = input(f"BMC username for {name!r}: ")
    return Credential(user, Secret(getpass.getpass("password: ")))


def credential_sets(args: argparse.Namespace, names: list[str]) -> dict[str, CredentialSet]:
    """Resolve each named set and register its passwords for log redaction.

    A set found nowhere is asked for on the terminal, only when stdin is one.
    """
    sets = {}
    prompt = prompt_credential if sys.stdin.isatty() else None
    for name in names:
        cset = resolve(name, args.credentials_file, prompt=prompt)
        REDACT.add(c.password for c in cset.entries)
        sets[name] = cset
    return sets


def merged_credentials(args: argparse.Namespace, name: str) -> CredentialSet:
    """Sets named ``a+b`` are tried in order, as TripleO's repeated ``--credentials``.

    The merged name is what discovery records, so enrollment resolves the same sets.
    """
    sets = credential_sets(args, name.split("+"))
    return CredentialSet(name, tuple(e for s in sets.values() for e in s.entries))


def ironic(args: argparse.Namespace) -> Ironic:
    """Connect; an Ironic URL (flag or $METALCTL_IRONIC_URL) wins over a cloud name."""
    if args.ironic_url:
        return Ironic(IronicConfig(url=args.ironic_url)).connect()
    return Ironic(IronicConfig(cloud=args.os_cloud)).connect()


def open_store(args: argparse.Namespace, *, create: bool = True) -> Store:
    """The store; ``create=False`` for verbs that only read it (a missing one is refused)."""
    return Store(args.store).open(create=create)


def setup_logging(verbosity: int, log_file: Path | None) -> None:
    """-v: info, -vv/--debug: debug including peer libraries. Logs go to stderr/file."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    console: logging.Handler
    if sys.stderr.isatty():
        console = RichHandler(console=STDERR, show_path=False, rich_tracebacks=False)
        # RichHandler prints the level in its own column; basicConfig's default format
        # ("%(levelname)s:%(name)s:%(message)s") would print it a second time
        console.setFormatter(logging.Formatter("%(message)s"))
    else:
        # a pipeline or a log collector reads stderr: one line per record, never wrapped
        # or cut to a terminal width it does not have
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file:
        handlers.append(_file_handler(log_file))
    for h in handlers:
        h.addFilter(REDACT)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL
                                         if verbosity == 0 else logging.WARNING)


def _file_handler(path: Path) -> logging.Handler:
    """A log file handler, or an InputError naming ``--log-file`` (missing directory...)."""
    try:
        fh = logging.FileHandler(path)
    except OSError as exc:
        raise InputError("--log-file", str(path), exc.strerror or "cannot open") from None
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return fh


@contextmanager
def progress(description: str, total: int | None, enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar on stderr (silent when stderr is not a terminal)."""
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    PeerTextColumn("last"), TimeElapsedColumn(), console=STDERR,
                    transient=True, disable=not enabled or not sys.stderr.isatty())
    with prog:
        prog.add_task(description, total=total, last="")
        yield prog


def hosts_of(args: argparse.Namespace) -> list[HostSpec]:
    """Hosts from ``--inventory`` and the positional ``[USER@]HOST[:PORT]`` arguments."""
    hosts = load_hosts(args.inventory) if args.inventory else []
    for i, spec in enumerate(args.hosts):
        target = parse_ssh(spec, "hosts", f"hosts[{i}]")
        hosts.append(HostSpec(name=target.host, ssh=spec, mgmt_address=target.host))
    if not hosts:
        raise InputError("hosts", "-", "give hosts or --inventory")
    return hosts
