"""BMC credentials, referenced by name, never printable.

A credential set is a named list of (username, password) pairs to try, in order,
on each BMC (TripleO's ``node discover --credentials`` model). Sources, first match wins:

1. the credentials file: ``--credentials-file``, ``$METALCTL_CREDENTIALS_FILE``,
   ``~/.config/metalctl/credentials.yaml``, ``/etc/metalctl/credentials.yaml``;
   it must not be readable by group or others (mode 0600 or stricter);
2. the environment: ``METALCTL_CRED_<NAME>_USERNAME`` / ``..._PASSWORD``
   (``NAME`` upper-cased, ``-`` and ``.`` become ``_``);
3. an interactive prompt, only when stdin is a terminal.

File format::

    rack-a:
      - username: admin
        password: s3cret
      - username: root
        password_env: RACK_A_ROOT_PASSWORD   # read from the environment instead

Passwords are held in :class:`Secret`, whose ``repr``/``str``/``format`` render
``***``, so a log call, an f-string or an exception message cannot leak them.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metalctl.errors import CredentialsError

MASK = "***"
#: shorter values would blank ordinary words when scrubbed from text
MIN_SCRUB_LEN = 3
_REVEALED: set[str] = set()


def revealed_values() -> frozenset[str]:
    """Every secret value handed to a peer so far (see :meth:`Secret.reveal`)."""
    return frozenset(_REVEALED)


class Secret:
    """A string that refuses to be rendered. Call :meth:`reveal` at the peer boundary."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value, for handing to a peer library only.

        The value is remembered (process-wide) so that anything a peer sends back can be
        scrubbed of it: a peer can only echo what was revealed to it.
        """
        if len(self._value) >= MIN_SCRUB_LEN:
            _REVEALED.add(self._value)
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not serialisable")


@dataclass(frozen=True)
class Credential:
    """One username/password pair of a named set."""

    username: str
    password: Secret


@dataclass(frozen=True)
class CredentialSet:
    """A named, ordered list of credentials to try on a BMC."""

    name: str
    entries: tuple[Credential, ...]


def default_paths() -> list[Path]:
    """Credentials file search path, most specific first."""
    paths = []
    if os.environ.get("METALCTL_CREDENTIALS_FILE"):
        paths.append(Path(os.environ["METALCTL_CREDENTIALS_FILE"]))
    paths.append(Path.home() / ".config" / "metalctl" / "credentials.yaml")
    paths.append(Path("/etc/metalctl/credentials.yaml"))
    return paths


def _env_key(name: str) -> str:
    return "METALCTL_CRED_" + name.upper().replace("-", "_").replace(".", "_")


def _check_mode(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            str(path), "mode", f"is {stat.filemode(mode)}; run `chmod 600 {path}` (holds passwords)"
        )


def _parse_entry(path: Path, name: str, index: int, raw: Any) -> Credential:
    field = f"{name}[{index}]"
    if not isinstance(raw, Mapping):
        raise CredentialsError(str(path), field, "must be a mapping with username and password")
    unknown = set(raw) - {"username", "password", "password_env"}
    if unknown:
        raise CredentialsError(str(path), f"{field}.{sorted(unknown)[0]}", "unknown key")
    username = raw.get("username")
    if not isinstance(username, str) or not username:
        raise CredentialsError(str(path), f"{field}.username", "missing or not a string")
    if "password_env" in raw:
        var = raw["password_env"]
        if var not in os.environ:
            raise CredentialsError(str(path), f"{field}.password_env", f"${var} is not set")
        password = os.environ[var]
    else:
        password = raw.get("password")
        if not isinstance(password, str):
            raise CredentialsError(str(path), f"{field}.password", "missing or not a string")
    return Credential(username, Secret(password))


def load_file(path: Path, name: str) -> CredentialSet | None:
    """Read credential set ``name`` from ``path``; None when the file lacks it.

    Raises:
        CredentialsError: the file is unsafe (group/other readable) or malformed.
    """
    _check_mode(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        raise CredentialsError(str(path), where, "not valid YAML") from None
    if not isinstance(data, Mapping):
        raise CredentialsError(str(path), "(top level)", "must map set names to lists")
    if name not in data:
        return None
    raw = data[name]
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise CredentialsError(str(path), name, "must be a non-empty list of credentials")
    entries = tuple(_parse_entry(path, name, i, item) for i, item in enumerate(raw))
    return CredentialSet(name, entries)


def resolve(
    name: str, file: Path | None = None, *, interactive: bool | None = None
) -> CredentialSet:
    """Find credential set ``name`` in the file, the environment, or a prompt.

    Raises:
        CredentialsError: nothing provides ``name`` or its source is malformed.
    """
    paths = [file] if file else default_paths()
    for path in paths:
        if path.exists():
            found = load_file(path, name)
            if found:
                return found
        elif file:
            raise CredentialsError(str(path), "(file)", "does not exist")
    key = _env_key(name)
    if os.environ.get(key + "_USERNAME") and key + "_PASSWORD" in os.environ:
        cred = Credential(os.environ[key + "_USERNAME"], Secret(os.environ[key + "_PASSWORD"]))
        return CredentialSet(name, (cred,))
    if interactive is None:
        interactive = sys.stdin.isatty()
    if interactive:
        user = input(f"BMC username for {name!r}: ")
        return CredentialSet(name, (Credential(user, Secret(getpass.getpass("password: "))),))
    searched = ", ".join(str(p) for p in paths)
    raise CredentialsError(
        searched, name, f"no such credential set (nor ${key}_USERNAME/_PASSWORD in the environment)"
    )
