"""The option groups verbs share, each defined once, and the parser (usage errors exit 3)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metalctl import settings
from metalctl.errors import mask_url, one_line
from metalctl.exitcodes import ExitCode
from metalctl.output.render import FORMATS


class Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting 3 (invalid input): 2 is the README's findings."""

    def error(self, message: str) -> None:  # type: ignore[override] - never returns
        self.print_usage(sys.stderr)
        message = mask_url(one_line(message))  # the value as typed: one line, no userinfo
        self.exit(ExitCode.INVALID_INPUT, f"{self.prog}: error: {message}\n")


def env_default(name: str) -> str | None:
    """An option's default from the environment only (:mod:`metalctl.settings`); the
    verb applies the variable's own default where it has one."""
    return settings.get(name) if settings.is_set(name) else None


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


def add_pki_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pki-dir", type=Path, default=None,
                   help="site PKI directory (default $METALCTL_PKI_DIR or "
                        "~/.local/state/metalctl/pki)")
    p.add_argument("--organization", default="metalctl site",
                   help="O of every certificate (and CN of a new CA)")


def add_host_run(p: argparse.ArgumentParser, concurrency: int = 16) -> None:
    """A verb that works on hosts over SSH with the site PKI: harden, hand-off."""
    add_ssh(p)
    p.add_argument("--concurrency", type=int, default=concurrency)
    add_pki_dir(p)
    add_output(p)
    add_store(p)
