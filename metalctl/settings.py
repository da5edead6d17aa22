"""Every environment variable metalctl reads, in one table: its name, what it sets, and
the default when it is unset. Code asks here (:func:`get`, :func:`path`) instead of
reading ``os.environ`` itself, so the list below is complete (``test_settings`` holds it)
and ``metalctl --help``'s epilog and docs name the same variables.

Not here on purpose: credential sets from the environment
(``METALCTL_CRED_<SET>_USERNAME``/``_PASSWORD``, :mod:`metalctl.credentials`: the names are
the sets'), a kickstart site's ``root_password.env`` (the site names the variable), and a
rack file's ``${VAR}`` (the rack file names them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _state(*parts: str) -> Callable[[], str]:
    return lambda: str(Path.home().joinpath(".local", "state", "metalctl", *parts))


@dataclass(frozen=True)
class Var:
    """One environment variable: what it sets and its default (None: no default)."""

    name: str
    help: str
    default: Callable[[], str] | None = None


VARS: dict[str, Var] = {v.name: v for v in (
    Var("METALCTL_STORE", "the SQLite store", _state("metalctl.db")),
    Var("METALCTL_CREDENTIALS_FILE", "the credentials file searched first (then "
        "~/.config/metalctl/credentials.yaml, /etc/metalctl/credentials.yaml)"),
    Var("METALCTL_CA_BUNDLE", "CA bundle that BMC TLS certificates are verified against"),
    Var("METALCTL_IRONIC_URL", "a standalone Ironic's URL (noauth)"),
    Var("OS_CLOUD", "the clouds.yaml entry for Ironic (Keystone)"),
    Var("METALCTL_PKI_DIR", "the site PKI (CA and host certificates)", _state("pki")),
    Var("METALCTL_BOOT_STATE", "the boot service's state directory", _state("boot")),
    Var("METALCTL_KNOWN_HOSTS", "where installs' delivered host keys go (read by harden, "
        "audit and hand-off)", _state("known_hosts")),
    Var("METALCTL_NOVA_PYTHON", "an interpreter with nova, for checking nova.conf against "
        "Nova's own options"),
    Var("METALCTL_NOVA_VENV", "the Nova venv whose interpreter is used otherwise",
        lambda: str(Path.home() / ".cache" / "metalctl" / "nova")),
)}


def get(name: str) -> str | None:
    """The variable's value, else its default (None when it has none).

    Raises:
        KeyError: not a variable this table knows (a typo in code, not in input).
    """
    var = VARS[name]
    value = os.environ.get(name)
    if value:
        return value
    return var.default() if var.default else None


def path(name: str) -> Path | None:
    """:func:`get` as a path."""
    value = get(name)
    return Path(value) if value else None


def is_set(name: str) -> bool:
    """Whether the environment sets ``name`` (not its default)."""
    VARS[name]  # noqa: B018 - a name outside the table is a programming error
    return bool(os.environ.get(name))


def epilog() -> str:
    """The variables as ``--help`` lists them."""
    width = max(len(n) for n in VARS)
    return "environment:\n" + "\n".join(f"  {v.name:<{width}}  {v.help}" for v in VARS.values())
