"""metalctl's known_hosts: the host keys an install delivered, and nothing else.

Trust on first boot: the installer's ``%post`` sends the new host's public keys over the
boot service's token-authenticated callback, and this module writes them, so every later
SSH connection (harden, audit, hand-off) checks them strictly and never trusts a key on
first use. A reinstall is the only thing that replaces a host's keys: :func:`trust`
drops the old lines of that host in the same atomic write, and records which lines it
replaced so the stage can say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from metalctl.errors import InputError
from metalctl.provision.hostkeys import HostKey


def _known_name(host: str, port: int) -> str:
    """The host field OpenSSH and paramiko use: ``host``, or ``[host]:port`` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time across processes (stages of parallel runs share the file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lines_for(path: Path, host: str, port: int = 22) -> list[str]:
    """The known_hosts lines that name ``host`` (on ``port``)."""
    if not path.exists():
        return []
    name = _known_name(host, port)
    return [line for line in path.read_text().splitlines()
            if line and not line.startswith("#") and name in line.split(" ", 1)[0].split(",")]


def trust(path: Path, hosts: Sequence[str], keys: Sequence[HostKey], *,
          port: int = 22) -> list[str]:
    """Make ``keys`` the only keys of ``hosts`` in ``path``; return the lines replaced.

    Args:
        path: metalctl's known_hosts (created 0600).
        hosts: the names and addresses the host is reached by (the first is the SSH
            target); each gets the keys.
        keys: the keys the install delivered (at least one).
        port: the SSH port (``[host]:port`` entries off 22).

    Raises:
        InputError: no key, or a host name with characters known_hosts cannot hold.
    """
    if not keys:
        raise InputError(str(path), "hostkeys", "the install delivered no host key")
    names = []
    for host in hosts:
        if not host or any(c in host for c in " ,\t\n#") :
            raise InputError(str(path), "host", f"{host!r} cannot be a known_hosts name")
        names.append(_known_name(host, port))
    with _locked(path):
        old = path.read_text().splitlines() if path.exists() else []
        kept, replaced = [], []
        for line in old:
            field = line.split(" ", 1)[0].split(",") if line and not line.startswith("#") else []
            (replaced if set(field) & set(names) else kept).append(line)
        new = kept + [k.known_hosts_line(*names) for k in keys]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".known_hosts.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write("\n".join(new) + "\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return [line for line in replaced if line not in new]
