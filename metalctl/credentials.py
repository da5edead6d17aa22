"""BMC credentials, referenced by name, never printable.

A credential set is a named list of (username, password) pairs to try, in order,
on each BMC (TripleO's ``node discover --credentials`` model). Sources, first match wins:

1. the credentials file: ``--credentials-file``, ``$METALCTL_CREDENTIALS_FILE``,
   ``~/.config/metalctl/credentials.yaml``, ``/etc/metalctl/credentials.yaml``;
   it must not be readable by group or others (mode 0600 or stricter);
2. the environment: ``METALCTL_CRED_<NAME>_USERNAME`` / ``..._PASSWORD``
   (``NAME`` upper-cased, ``-`` and ``.`` become ``_``);
3. a ``prompt`` callback given by the caller (the CLI asks on a terminal); the library
   itself never reads from stdin.

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

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalctl import data, settings
from metalctl.errors import CredentialsError, InputError

MASK = "***"
#: shorter values would blank ordinary words when scrubbed from text
MIN_SCRUB_LEN = 3
_REVEALED: set[str] = set()


def revealed_values() -> frozenset[str]:
    """Every secret value handed to a peer so far (see :meth:`Secret.reveal`)."""
    return frozenset(_REVEALED)

#: a credentials file holds a few sets; anything larger is refused unread
MAX_BYTES = 256 * 1024


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
    given = settings.path("METALCTL_CREDENTIALS_FILE")
    if given:
        paths.append(given)
    paths.append(Path.home() / ".config" / "metalctl" / "credentials.yaml")
    paths.append(Path("/etc/metalctl/credentials.yaml"))
    return paths


def _env_key(name: str) -> str:
    return "METALCTL_CRED_" + name.upper().replace("-", "_").replace(".", "_")


def _check_mode(path: Path) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise CredentialsError(str(path), "(file)", exc.strerror or "cannot stat") from None
    if stat.S_ISDIR(st.st_mode):
        raise CredentialsError(str(path), "(file)", "is a directory; a file is expected")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            str(path), "mode",
            f"is {stat.filemode(st.st_mode)}; run `chmod 600 {path}` (holds passwords)")


def _masked(value: Any) -> Any:
    """A copy with every ``password`` value replaced by a stand-in of the same JSON type,
    so no schema error message can quote a password."""
    if isinstance(value, dict):
        return {k: _stand_in(v) if k == "password" else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _stand_in(value: Any) -> Any:
    for kind, stand_in in ((bool, False), (str, MASK), (int, 0), (float, 0.0), (list, [MASK]),
                           (dict, {MASK: MASK})):
        if isinstance(value, kind):
            return stand_in
    return value


def read_file(path: Path) -> dict[str, tuple[dict[str, Any], ...]]:
    """Read and validate a whole credentials file (schema ``credentials``).

    Returns:
        set name -> its raw entries (passwords still plain; wrap them before use).

    Raises:
        CredentialsError: unsafe mode, unreadable, too large, malformed (file, field, line).
    """
    _check_mode(path)
    try:
        raw, lines = data.load_with_lines(path, max_bytes=MAX_BYTES)
        data.validate(_masked(raw), "credentials", str(path), lines)
    except CredentialsError:
        raise
    except InputError as exc:
        raise CredentialsError(exc.path, exc.field, exc.reason, exc.line) from None
    raw = raw or {}
    return {name: tuple(entries) if isinstance(entries, list) else (entries,)
            for name, entries in raw.items()}


def _entry(path: Path, name: str, index: int, raw: dict[str, Any]) -> Credential:
    if "password_env" in raw:
        var = raw["password_env"]
        if var not in os.environ:
            raise CredentialsError(str(path), f"{name}[{index}].password_env",
                                   f"${var} is not set")
        return Credential(raw["username"], Secret(os.environ[var]))
    return Credential(raw["username"], Secret(raw["password"]))


def load_file(path: Path, name: str) -> CredentialSet | None:
    """Read credential set ``name`` from ``path``; None when the file lacks it.

    Raises:
        CredentialsError: the file is unsafe (group/other readable) or malformed.
    """
    sets = read_file(path)
    if name not in sets:
        return None
    return CredentialSet(name, tuple(_entry(path, name, i, e)
                                     for i, e in enumerate(sets[name])))


#: asked for a set nothing else provides: ``prompt(name)`` returns one credential
Prompt = Callable[[str], Credential]


def resolve(name: str, file: Path | None = None, *, prompt: Prompt | None = None,
            interactive: bool | None = None) -> CredentialSet:
    """Find credential set ``name`` in the file, the environment, or through ``prompt``.

    Args:
        name: the set's name.
        file: this file only, instead of the default search path.
        prompt: asked when neither a file nor the environment has the set (the CLI
            passes one that reads the terminal); the library never prompts itself.
        interactive: ``False`` forbids calling ``prompt`` even when one is given.

    Raises:
        CredentialsError: nothing provides ``name`` or its source is malformed.
    """
    paths = [file] if file else default_paths()
    for path in paths:
        if path.exists() or path.is_symlink():
            found = load_file(path, name)
            if found:
                return found
        elif file:
            raise CredentialsError(str(path), "(file)", "does not exist")
    key = _env_key(name)
    if os.environ.get(key + "_USERNAME") and key + "_PASSWORD" in os.environ:
        cred = Credential(os.environ[key + "_USERNAME"], Secret(os.environ[key + "_PASSWORD"]))
        return CredentialSet(name, (cred,))
    if prompt is not None and interactive is not False:
        return CredentialSet(name, (prompt(name),))
    searched = ", ".join(str(p) for p in paths)
    raise CredentialsError(
        searched, name, f"no such credential set (nor ${key}_USERNAME/_PASSWORD in the environment)"
    )
