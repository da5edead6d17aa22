"""Option values every verb checks before it runs (exit 3, nothing probed): numbers and
ports in range, URLs and ``ADDR:PORT``, and every path option (a missing file, a file
where a folder belongs...), through :mod:`metalctl.data.fields`."""

from __future__ import annotations

import argparse
import math

from metalctl.data import fields
from metalctl.errors import InputError, mask_url


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


def node_pairs(values: list[str], option: str) -> dict[str, str]:
    """``NODE=VALUE`` options (``--address``, ``--mac``) by node.

    Raises:
        InputError: a value without ``=``, a node or a value, naming ``option``.
    """
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name or not value:
            raise InputError(option, v, "expected NODE=VALUE")
        out[name] = value
    return out
