"""SSH to managed hosts through fabric, with host keys checked.

Host keys come from a known_hosts file (``~/.ssh/known_hosts`` unless given) and
an unknown or changed key is refused: metalctl never auto-adds keys (paramiko's
RejectPolicy). Passwords and key passphrases travel as :class:`Secret` and are
never logged.
"""

from __future__ import annotations

import logging
import select
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection

from metalctl.credentials import Secret
from metalctl.errors import (
    HostAuthFailed,
    HostDropped,
    HostError,
    HostUnreachable,
    SshHostKeyMismatch,
    SshHostKeyUnknown,
)

LOG = logging.getLogger(__name__)


class _Counter:
    """SSH connections and channels opened per host label (benchmarks and audit report)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connections: dict[str, int] = {}
        self.channels: dict[str, int] = {}

    def add(self, table: dict[str, int], label: str) -> None:
        """Count one more of ``label`` in ``table``, thread-safely."""
        with self._lock:
            table[label] = table.get(label, 0) + 1


STATS = _Counter()


class _UnknownHostKey(paramiko.SSHException):
    """Raised by :class:`_RefuseUnknownKey` so the refusal is told apart by type."""


class _RefuseUnknownKey(paramiko.MissingHostKeyPolicy):
    """paramiko's RejectPolicy, raising a type of our own instead of a bare SSHException
    (whose message would be the only way to tell it from other SSH failures)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        """Refuse a host whose key is not in known_hosts (never add it)."""
        raise _UnknownHostKey(f"{hostname}: host key not in known_hosts")


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one host."""

    host: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    password: Secret | None = None
    known_hosts: Path | None = None
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 120.0
    sudo: bool = False  # wrap commands in sudo -n when the user is not root

    @classmethod
    def parse(cls, spec: str, **kwargs: object) -> SshTarget:
        """``[user@]host[:port]`` (IPv6 as ``[addr]:port``)."""
        user = "root"
        if "@" in spec:
            user, spec = spec.rsplit("@", 1)
        host, port = spec, 22
        if spec.startswith("["):
            host, _, rest = spec[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 22
        elif spec.count(":") == 1:
            host, p = spec.split(":")
            port = int(p)
        return cls(host=host, port=port, user=user, **kwargs)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def connect(target: SshTarget) -> Connection:
    """Open a connection; raises a :class:`HostError` subclass on any failure."""
    connect_kwargs: dict[str, object] = {"allow_agent": False, "look_for_keys": False,
                                         "banner_timeout": target.connect_timeout_s,
                                         "auth_timeout": target.connect_timeout_s}
    if target.key_file:
        connect_kwargs["key_filename"] = str(target.key_file)
    if target.password:
        connect_kwargs["password"] = target.password.reveal()
    conn = Connection(target.host, user=target.user, port=target.port,
                      connect_timeout=target.connect_timeout_s, connect_kwargs=connect_kwargs)
    client = conn.client
    client.set_missing_host_key_policy(_RefuseUnknownKey())
    known = target.known_hosts or Path.home() / ".ssh" / "known_hosts"
    if known.exists():
        client.load_host_keys(str(known))
    STATS.add(STATS.connections, target.label)
    try:
        conn.open()
    except paramiko.BadHostKeyException:
        raise SshHostKeyMismatch(host=target.label,
                                 reason=f"host key differs from {known}") from None
    except _UnknownHostKey:
        raise SshHostKeyUnknown(host=target.label,
                                reason=f"host key not in {known}; add it after "
                                       "checking its fingerprint") from None
    except paramiko.SSHException as exc:
        if isinstance(exc, paramiko.AuthenticationException):
            raise HostAuthFailed(host=target.label, reason="authentication failed") from None
        raise HostError(host=target.label, reason=f"SSH: {type(exc).__name__}") from None
    except TimeoutError:
        raise HostUnreachable(host=target.label, reason="connection timed out") from None
    except EOFError:  # accepted, then closed before the handshake (an sshd re-executing)
        raise HostDropped(host=target.label, reason="connection closed during the SSH "
                                                    "handshake") from None
    except OSError as exc:
        raise HostUnreachable(host=target.label,
                              reason=f"connection failed: {exc.strerror}") from None
    return conn


@dataclass(frozen=True)
class ScriptResult:
    """What a remote script returned: exit status and its output."""
    exited: int  # -1: the session ended without an exit status (host dropped)
    stdout: str
    stderr: str


def exec_script(conn: Connection, target: SshTarget, script: str) -> ScriptResult:
    """Run ``sh -s`` with ``script`` on stdin over one channel of the open connection.

    The script travels on stdin, so file contents (private keys included) never show
    on a command line (``ps``) on the host. paramiko directly: invoke feeds a non-tty
    stdin one byte per 10 ms, which makes a 5 kB script take 50 s.
    """
    command = "sh -s"
    if target.sudo and target.user != "root":
        command = "sudo -n sh -s"
    try:
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise HostDropped(host=target.label, reason="connection closed")
        chan = transport.open_session(timeout=target.connect_timeout_s)
        STATS.add(STATS.channels, target.label)
        chan.settimeout(target.command_timeout_s)
        chan.exec_command(command)
        chan.sendall(script.encode())
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        # read to EOF on both streams: the exit status can arrive before the last data
        while True:
            if chan.recv_ready():
                out += chan.recv(65536)
            elif chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            elif chan.eof_received or chan.closed or not transport.is_active():
                break
            else:
                select.select([chan], [], [], 0.1)
        chan.status_event.wait(target.command_timeout_s if transport.is_active() else 0)
        exited = chan.exit_status if chan.exit_status_ready() else -1
        chan.close()
    except HostDropped:
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostDropped(host=target.label, reason=f"connection lost: {type(exc).__name__}") \
            from None
    return ScriptResult(exited, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def run_script(conn: Connection, target: SshTarget, script: str) -> str:
    """Run a read-only script in one round trip; return stdout.

    Raises:
        HostDropped: the session ended without an exit status.
        HostError: the script exited non-zero.
    """
    result = exec_script(conn, target, script)
    if result.exited == -1:
        raise HostDropped(host=target.label, reason="connection lost mid-command")
    if result.exited != 0:
        raise HostError(host=target.label,
                        reason=f"script exited {result.exited}: {result.stderr.strip()[-300:]}")
    return result.stdout
