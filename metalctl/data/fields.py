"""Checks of single input values that name something outside the file: paths, ports,
addresses and URLs. One helper per kind, used by every option and every data file field
(the CLI's option checks, the rack file, the schemas' formats), so a value that cannot be
used is refused where it is read, with the option or the file and its field named, and
never reaches the code that would use it.

Nothing here echoes what a path *contains*, and URLs are shown with their userinfo
masked (:func:`mask_url`): an operator's ``http://user:pw@host`` stays out of errors.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from metalctl.errors import InputError, mask_url, one_line

__all__ = ["PathKind", "check_path", "check_url", "host_port", "mask_url", "path_problem",
           "port_problem", "split_host_port", "url_problem"]

#: ``file``: read (exists, a regular file, readable); ``dir``: read (an existing
#: directory); ``file-or-dir``: exists (a CA bundle may be a c_rehash'd directory);
#: ``output``: written (not a directory; its folder exists); ``state-dir``: a directory
#: metalctl creates (not a file; its nearest existing ancestor is a directory).
PathKind = Literal["file", "dir", "file-or-dir", "output", "state-dir"]


def path_problem(path: Path, kind: PathKind = "file") -> str | None:
    """Why ``path`` cannot serve as ``kind``, or None. Reads metadata, never content."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if kind in ("output", "state-dir"):
            parent = path.parent
            if kind == "state-dir":
                while not parent.exists() and parent != parent.parent:
                    parent = parent.parent
            if not parent.is_dir():
                return f"its folder {parent} does not exist"
            return None
        return {"dir": "no such folder", "file": "no such file"}.get(
            kind, "no such file or folder")
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if kind == "dir" or kind == "state-dir":
        return None if stat.S_ISDIR(mode) else "is not a folder"
    if stat.S_ISDIR(mode):
        return None if kind == "file-or-dir" else "is a folder; a file is expected"
    if kind == "file" and not stat.S_ISREG(mode):
        return "not a regular file"
    if kind in ("file", "file-or-dir") and not os.access(path, os.R_OK):
        return "permission denied"
    return None


def check_path(value: str | os.PathLike[str], source: str, field: str | None,
               kind: PathKind = "file", line: int | None = None) -> Path:
    """``value`` as a :class:`Path`, checked for ``kind``.

    Args:
        source: the file (``rack.yaml``) or the option (``--ca-bundle``).
        field: the field (``bmc.ca_bundle``); None for an option (the path is shown).

    Raises:
        InputError: ``source[:line]: field: PATH: reason``, or ``--option: PATH: reason``.
    """
    path = Path(value)
    reason = path_problem(path, kind)
    if reason and field is None:
        raise InputError(source, one_line(str(path)), reason, line)
    if reason:
        raise InputError(source, field, f"{one_line(str(path))}: {reason}", line)
    return path


def port_problem(text: str | int) -> str | None:
    """Why ``text`` is not a TCP/UDP port 1-65535, or None."""
    s = str(text)
    if not s.isascii() or not s.isdigit() or not 0 < int(s) < 65536:
        return f"port {one_line(s)[:12]!r} is not 1-65535"
    return None


def split_host_port(spec: str, default_port: int | None = None
                    ) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.

    Raises:
        ValueError: the reason (an empty host, a port out of range, a stray ``]``).
    """
    if spec.startswith("["):
        host, close, rest = spec[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPv6] or [IPv6]:port")
        port = rest[1:] if rest else None
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    elif ":" in spec:  # a bare IPv6 address
        host, port = spec, None
    else:
        host, port = spec, None
    if not host:
        raise ValueError("no host")
    if port is None:
        return host, default_port
    reason = port_problem(port)
    if reason:
        raise ValueError(reason)
    return host, int(port)


def host_port(spec: str, source: str, field: str, default_port: int | None = None,
              line: int | None = None) -> tuple[str, int | None]:
    """:func:`split_host_port`, as an :class:`InputError` naming the option or field."""
    try:
        return split_host_port(spec, default_port)
    except ValueError as exc:
        raise InputError(source, field, f"{one_line(spec)[:80]!r}: {exc}", line) from None


def url_problem(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """Why ``url`` is not a usable URL of one of ``schemes`` (with a host, a port
    1-65535 when one is given), or None."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed '[' in the host
        return str(exc)
    if parts.scheme.lower() not in schemes:
        return f"not a {'/'.join(schemes)} URL"
    if any(c.isspace() for c in url):
        return "contains white space"
    netloc = parts.netloc.rpartition("@")[2]
    if parts.scheme.lower() in ("http", "https", "ftp", "rabbit") and not parts.hostname:
        return "no host"
    _, colon, port = netloc.rpartition("]")[2].rpartition(":")
    if colon:
        return port_problem(port)
    return None


def check_url(url: str, source: str, field: str, line: int | None = None,
              schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``url``, checked; errors show it with its userinfo masked.

    Raises:
        InputError: naming ``source`` and ``field``.
    """
    reason = url_problem(url, schemes)
    if reason:
        raise InputError(source, field, f"{one_line(mask_url(url))[:120]!r}: {reason}", line)
    return url
