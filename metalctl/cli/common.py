"""Helpers verbs share: the stderr console, credentials, Ironic, the store, progress,
hosts from the command line. Option groups: :mod:`.options`; option checks:
:mod:`.optcheck`; logging: :mod:`.logs`."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from metalctl import access
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.errors import InputError
from metalctl.hosts import HostSpec, load_hosts, parse_ssh
from metalctl.ironic import Ironic
from metalctl.logredact import RedactingFilter
from metalctl.output.render import PeerTextColumn
from metalctl.store import Store

STDERR = Console(stderr=True)
REDACT = RedactingFilter()


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
    prompt = prompt_credential if sys.stdin.isatty() else None
    return {name: access.credential_set(name, args.credentials_file, prompt=prompt)
            for name in names}


def merged_credentials(args: argparse.Namespace, name: str) -> CredentialSet:
    """Sets named ``a+b`` are tried in order, as TripleO's repeated ``--credentials``.

    The merged name is what discovery records, so enrollment resolves the same sets.
    """
    sets = credential_sets(args, name.split("+"))
    return CredentialSet(name, tuple(e for s in sets.values() for e in s.entries))


def ironic(args: argparse.Namespace) -> Ironic:
    """Connect; an Ironic URL (flag or $METALCTL_IRONIC_URL) wins over a cloud name."""
    return access.ironic(args.ironic_url, args.os_cloud)


def open_store(args: argparse.Namespace, *, create: bool = True) -> Store:
    """The store; ``create=False`` for verbs that only read it (a missing one is refused)."""
    return Store(args.store).open(create=create)


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
