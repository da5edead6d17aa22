"""The boot service's state: active installs and their events, in one SQLite file.

The file (``<state_dir>/bootservice.db``, mode 0600) is what makes the service
resumable: a restarted ``metalctl serve`` finds every active install, and the provision
stage may register installs and read events from another process while the service
runs (WAL mode, a busy timeout). It holds token *digests* only, never a token.

An install moves ``active`` → ``installed`` (``end`` callback), ``failed`` (``error``
callback, or a conflict the service detected) or ``timeout`` (its deadline passed); only
an ``active`` install's ticket and token are accepted, so both expire with the install.

Two secrets per install, each stored as a digest (docs/bootservice.md, "Token flow"):
the kickstart *ticket* (``ticket_sha256``, single use, short-lived, cleared when the
kickstart is served) and the callback *token* (``token_sha256``, minted when the
kickstart is served, so it exists only inside that one response). ``bound_peer`` is the
one address callbacks are accepted from; ``step`` is how far the callbacks got.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl.errors import InputError, InstallConflict, StoreError
from metalctl.provision.hostkeys import HostKey

ACTIVE, INSTALLED, FAILED, TIMEOUT = "active", "installed", "failed", "timeout"
STATE_FILE = "bootservice.db"
NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")
# characters allowed in an installer kernel argument: no whitespace, quotes, '$' (iPXE
# expands settings), '&', '|' or ';' (iPXE/shell operators)
_ARG_RE = re.compile(r"[A-Za-z0-9._,:=/+@%-]+")
_URL_RE = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!%+,=-]+")
_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")

SCHEMA = """
CREATE TABLE IF NOT EXISTS installs (
    node TEXT PRIMARY KEY,
    mac TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    kickstart TEXT NOT NULL,
    boot_files TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    deadline_at REAL NOT NULL,
    script_served_at REAL,
    kickstart_fetched_at REAL,
    ended_at REAL,
    hostkeys TEXT,
    error TEXT,
    ticket_sha256 TEXT,
    ticket_expires_at REAL,
    fetcher TEXT NOT NULL DEFAULT 'machine',
    bound_peer TEXT,
    step INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS installs_mac ON installs(mac, state);
CREATE INDEX IF NOT EXISTS installs_due ON installs(state, deadline_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    stage TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_node ON events(node, id);
"""
# columns added after the first release: a state file written before gets them on open
_ADDED_COLUMNS = (("ticket_sha256", "TEXT"), ("ticket_expires_at", "REAL"),
                  ("fetcher", "TEXT NOT NULL DEFAULT 'machine'"), ("bound_peer", "TEXT"),
                  ("step", "INTEGER NOT NULL DEFAULT 0"))
#: who fetches the kickstart: the machine itself (PXE), or Ironic's conductor
FETCHERS = ("machine", "ironic")
_FETCHED_BY = {"machine": "the machine", "ironic": "Ironic's conductor"}
#: refusals recorded per install; more are only logged, so they cannot flood the state
MAX_REFUSALS_RECORDED = 32


def normalise_mac(value: str) -> str:
    """``52-54-00-AB-CD-EF`` or ``52:54:00:ab:cd:ef`` → ``52:54:00:ab:cd:ef``.

    Raises:
        InputError: anything else (one separator style, six octets, hex only).
    """
    text = value.strip().lower()
    if not _MAC_RE.fullmatch(text):
        raise InputError("mac", "mac", f"{value[:40]!r} is not a MAC address")
    return text.replace("-", ":")


def check_node(node: str) -> str:
    """Return ``node`` when it is a safe name for URLs and scripts, else raise InputError."""
    if not NODE_RE.fullmatch(node):
        raise InputError("node", "node", f"{node[:70]!r} is not a node name "
                                         "(letters, digits, '.', '_', '-'; at most 63)")
    return node


@dataclass(frozen=True)
class BootFiles:
    """What the iPXE script chains: installer kernel, initrd, stage2 and extra arguments.

    Each of ``kernel``, ``initrd`` and ``stage2`` is an ``http(s)://`` URL, or a path
    relative to the service's files directory (served under ``/files/``).

    Attributes:
        kernel: the installer kernel (``vmlinuz``).
        initrd: the installer initramfs.
        stage2: anaconda's ``inst.stage2`` (the stand-in installer fetches it too), or None.
        kernel_args: extra installer arguments (``console=ttyS0``, ``inst.text``).
    """

    kernel: str
    initrd: str
    stage2: str | None = None
    kernel_args: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> BootFiles:
        """Return self after checking every value is safe in an iPXE script.

        Raises:
            InputError: a value with whitespace, quotes or iPXE/shell metacharacters.
        """
        for name in ("kernel", "initrd", "stage2"):
            value = getattr(self, name)
            if value is None and name == "stage2":
                continue
            if not (_URL_RE.fullmatch(value) or _FILE_RE.fullmatch(value)) or ".." in value:
                raise InputError("boot_files", name, f"{value[:80]!r} is neither an http(s) "
                                 "URL nor a plain relative path")
        for arg in self.kernel_args:
            if not _ARG_RE.fullmatch(arg):
                raise InputError("boot_files", "kernel_args",
                                 f"{arg[:80]!r} has characters unsafe in an iPXE script")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the boot files as a plain dict for the state database."""
        return {"kernel": self.kernel, "initrd": self.initrd, "stage2": self.stage2,
                "kernel_args": list(self.kernel_args)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BootFiles:
        """Rebuild boot files from what ``to_dict`` returned."""
        return cls(data["kernel"], data["initrd"], data.get("stage2"),
                   tuple(data.get("kernel_args", ())))


@dataclass(frozen=True)
class BootEvent:
    """One step of an install: ``added``, ``boot-script``, ``kickstart-fetched``, a
    callback stage (``started``, ``pre``, ``post``, ``hostkeys``, ``end``, ``error``), or
    what the service refused (``*-refused``) or decided (``timeout``, ``token-reissued``).

    Attributes:
        node: the node name.
        stage: the step.
        at: Unix time, seconds.
        detail: the installer's message or the service's note; never a token.
    """

    node: str
    stage: str
    at: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a plain dict."""
        return {"node": self.node, "stage": self.stage, "at": self.at, "detail": self.detail}


@dataclass(frozen=True)
class InstallRecord:
    """An install as the state file holds it (without the kickstart text)."""

    node: str
    mac: str
    state: str
    boot_files: BootFiles
    created_at: float
    deadline_at: float
    script_served_at: float | None
    kickstart_fetched_at: float | None
    ended_at: float | None
    hostkeys: tuple[HostKey, ...]
    error: str | None
    fetcher: str = "machine"
    bound_address: str | None = None
    step: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the install record, boot files and host keys included, as a plain dict."""
        return {"node": self.node, "mac": self.mac, "state": self.state,
                "boot_files": self.boot_files.to_dict(), "created_at": self.created_at,
                "deadline_at": self.deadline_at, "script_served_at": self.script_served_at,
                "kickstart_fetched_at": self.kickstart_fetched_at, "ended_at": self.ended_at,
                "hostkeys": [k.to_dict() for k in self.hostkeys], "error": self.error,
                "fetcher": self.fetcher, "bound_address": self.bound_address,
                "step": self.step}


@dataclass(frozen=True)
class InstallAuth:
    """What a request to an install is checked against (digests only, never a secret).

    ``state`` reads ``timeout`` once the deadline passed, before the tick records it.
    """

    node: str
    mac: str
    state: str
    deadline_at: float
    ticket_digest: str | None
    ticket_expires_at: float | None
    token_digest: str | None
    fetched_at: float | None
    fetcher: str
    bound_peer: str | None
    step: int
    has_hostkeys: bool


# column list of InstallRecord; a constant, so the f-strings below take no input
_COLUMNS = ("node, mac, state, boot_files, created_at, deadline_at, script_served_at, "
            "kickstart_fetched_at, ended_at, hostkeys, error, fetcher, bound_peer, step")


def _record(row: tuple[Any, ...]) -> InstallRecord:
    keys = tuple(HostKey(k["type"], k["key"]) for k in json.loads(row[9] or "[]"))
    return InstallRecord(row[0], row[1], row[2], BootFiles.from_dict(json.loads(row[3])),
                         row[4], row[5], row[6], row[7], row[8], keys, row[10], row[11],
                         row[12], row[13])


class BootState:
    """The state file, safe to share between threads and between processes.

    Args:
        state_dir: directory of the state file (created 0700 when missing).
        clock: seconds since the epoch; tests pass their own to reach a deadline.
    """

    def __init__(self, state_dir: Path, clock: Any = time.time) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._clock = clock
        self._lock = threading.Lock()
        try:
            Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt;
            # an install lost that way is re-added by the stage's re-run
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(installs)")}
            for name, decl in _ADDED_COLUMNS:
                if name not in have:
                    self._db.execute(f"ALTER TABLE installs ADD COLUMN {name} {decl}")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(path=str(self.path), reason=str(exc)) from None

    def close(self) -> None:
        """Close the state database."""
        with self._lock:
            self._db.close()

    def now(self) -> float:
        """Return the current time of the state's clock, in seconds since the epoch."""
        return float(self._clock())

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(path=str(self.path), reason=str(exc)) from None

    def _txn(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        """Run statements in one transaction; return each one's rowcount."""
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    counts = [self._db.execute(sql, args).rowcount for sql, args in statements]
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return counts
        except sqlite3.Error as exc:
            raise StoreError(path=str(self.path), reason=str(exc)) from None

    # --- installs ------------------------------------------------------------------------

    def add(self, node: str, mac: str, ticket_digest: str, kickstart: str,
            boot_files: BootFiles, deadline_s: float, *, replace: bool = False,
            ticket_ttl_s: float | None = None, fetcher: str = "machine") -> None:
        """Register an install (a reinstall replaces the node's previous record), with
        its first kickstart ticket (valid ``ticket_ttl_s``, default: until the deadline).

        Raises:
            InstallConflict: the node has an active install (and not ``replace``), or the
                MAC belongs to another node's active install.
        """
        self.expire()
        now = self.now()
        # host names (and known_hosts) ignore case: R650 and r650 are one host
        for other, state in self._run("SELECT node, state FROM installs WHERE mac = ? "
                                      "OR lower(node) = lower(?)", (mac, node)):
            if state != ACTIVE:
                continue
            if other != node and other.lower() == node.lower():
                raise InstallConflict(node=node, reason=f"the active install of {other} "
                                                        "has the same name but for case")
            if other != node:
                raise InstallConflict(node=node, reason=f"MAC {mac} belongs to the active "
                                                        f"install of {other}")
            if not replace:
                raise InstallConflict(node=node, reason="an install is already active; "
                                                        "follow it, or replace it")
        self._txn([
            ("DELETE FROM installs WHERE node = ?", (node,)),
            ("INSERT INTO installs (node, mac, token_sha256, kickstart, boot_files, state, "
             "created_at, deadline_at, ticket_sha256, ticket_expires_at, fetcher) "
             "VALUES (?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)",
             (node, mac, kickstart, json.dumps(boot_files.to_dict()), ACTIVE, now,
              now + deadline_s, ticket_digest,
              now + min(ticket_ttl_s or deadline_s, deadline_s), fetcher)),
            ("INSERT INTO events (node, stage, at, detail) VALUES (?, ?, ?, ?)",
             (node, "added", now, f"mac {mac}, deadline {deadline_s:.0f} s, kickstart "
                                  f"fetched by {_FETCHED_BY[fetcher]}")),
        ])

    def get(self, node: str) -> InstallRecord | None:
        """The node's latest install, with its deadline applied."""
        self.expire()
        rows = self._run(f"SELECT {_COLUMNS} FROM installs WHERE node = ?",  # noqa: S608
                         (node,))
        return _record(rows[0]) if rows else None

    def active_by_mac(self, mac: str) -> InstallRecord | None:
        """The active install for ``mac`` (deadline not passed)."""
        rows = self._run(f"SELECT {_COLUMNS} FROM installs "  # noqa: S608
                         "WHERE mac = ? AND state = ? AND deadline_at > ?",
                         (mac, ACTIVE, self.now()))
        return _record(rows[0]) if rows else None

    def auth(self, node: str) -> InstallAuth | None:
        """What a request to the node's install is checked against, or None.

        An active install past its deadline reads as ``timeout`` here at once (the
        service's periodic :meth:`expire` records it), so a request never costs a write.
        """
        rows = self._run("SELECT node, mac, state, deadline_at, ticket_sha256, "
                         "ticket_expires_at, token_sha256, kickstart_fetched_at, fetcher, "
                         "bound_peer, step, hostkeys IS NOT NULL FROM installs WHERE node = ?",
                         (node,))
        if not rows:
            return None
        row = list(rows[0])
        if row[2] == ACTIVE and row[3] <= self.now():
            row[2] = TIMEOUT
        row[6] = row[6] or None  # '' until the kickstart is served
        return InstallAuth(*row[:11], bool(row[11]))

    def ticket_digest(self, node: str) -> str | None:
        """The digest of the node's current kickstart ticket, if it has one."""
        rows = self._run("SELECT ticket_sha256 FROM installs WHERE node = ?", (node,))
        return rows[0][0] if rows else None

    def set_ticket(self, node: str, ticket_digest: str, expires_at: float) -> None:
        """Replace an active, not yet fetched install's ticket (a re-minted boot script)."""
        self._txn([("UPDATE installs SET ticket_sha256 = ?, ticket_expires_at = ? "
                    "WHERE node = ? AND state = ? AND kickstart_fetched_at IS NULL",
                    (ticket_digest, expires_at, node, ACTIVE))])

    def mark_script_served(self, node: str) -> bool:
        """Record the first boot-script fetch; True the first time only."""
        now = self.now()
        counts = self._txn([
            ("UPDATE installs SET script_served_at = ? WHERE node = ? "
             "AND script_served_at IS NULL", (now, node)),
            ("INSERT INTO events (node, stage, at, detail) SELECT ?, ?, ?, ? "
             "WHERE changes() > 0", (node, "boot-script", now, "")),
        ])
        return bool(counts[0])

    def take_kickstart(self, node: str, ticket_digest: str, token_digest: str, peer: str,
                       *, bind: bool) -> str | None:
        """Use the ticket up, set the callback token, and return the kickstart, once.

        ``bind``: callbacks are accepted from ``peer`` only from now on (the machine
        fetched it); otherwise the first callback binds (Ironic's conductor fetched it).
        The update is conditional, so two concurrent fetches with the right ticket get
        the kickstart once between them.
        """
        now = self.now()
        detail = (f"by {peer}; callbacks bound to {peer}" if bind else
                  f"by {peer} (Ironic's conductor); callbacks bind to the machine's address")
        counts = self._txn([
            ("UPDATE installs SET kickstart_fetched_at = ?, ticket_sha256 = NULL, "
             "token_sha256 = ?, bound_peer = ? WHERE node = ? AND state = ? "
             "AND ticket_sha256 = ? AND kickstart_fetched_at IS NULL AND deadline_at > ? "
             "AND ticket_expires_at > ?",
             (now, token_digest, peer if bind else None, node, ACTIVE, ticket_digest, now,
              now)),
            ("INSERT INTO events (node, stage, at, detail) SELECT ?, ?, ?, ? "
             "WHERE changes() > 0", (node, "kickstart-fetched", now, detail)),
        ])
        if not counts[0]:
            return None
        rows = self._run("SELECT kickstart FROM installs WHERE node = ?", (node,))
        return rows[0][0]

    def peek_kickstart(self, node: str) -> str | None:
        """The node's kickstart without marking it fetched (HEAD requests)."""
        rows = self._run("SELECT kickstart FROM installs WHERE node = ?", (node,))
        return rows[0][0] if rows else None

    def bind(self, node: str, peer: str) -> bool:
        """Bind the install's callbacks to ``peer`` unless already bound; True if it did."""
        now = self.now()
        counts = self._txn([
            ("UPDATE installs SET bound_peer = ? WHERE node = ? AND state = ? "
             "AND bound_peer IS NULL", (peer, node, ACTIVE)),
            ("INSERT INTO events (node, stage, at, detail) SELECT ?, ?, ?, ? "
             "WHERE changes() > 0", (node, "bound", now, f"callbacks bound to {peer}")),
        ])
        return bool(counts[0])

    def advance(self, node: str, step: int, stage: str, detail: str = "") -> bool:
        """Move the callbacks to ``step`` and record ``stage``, if not already past it."""
        now = self.now()
        counts = self._txn([
            ("UPDATE installs SET step = ? WHERE node = ? AND state = ? AND step < ?",
             (step, node, ACTIVE, step)),
            ("INSERT INTO events (node, stage, at, detail) SELECT ?, ?, ?, ? "
             "WHERE changes() > 0", (node, stage, now, detail)),
        ])
        return bool(counts[0])

    def refused(self, node: str, stage: str, detail: str) -> bool:
        """Record a refused request on the node's install (the first
        :data:`MAX_REFUSALS_RECORDED` only); True when it was recorded."""
        since = self._run("SELECT COALESCE(MAX(id), 0) FROM events WHERE node = ? "
                          "AND stage = 'added'", (node,))[0][0]
        now = self.now()
        counts = self._txn([
            ("INSERT INTO events (node, stage, at, detail) SELECT ?, ?, ?, ? WHERE "
             "(SELECT COUNT(*) FROM events WHERE node = ? AND id > ? "
             "AND stage LIKE '%-refused') < ?",
             (node, stage, now, detail[:500], node, since, MAX_REFUSALS_RECORDED)),
        ])
        return bool(counts[0])

    def set_hostkeys(self, node: str, keys: tuple[HostKey, ...]) -> None:
        """Record the SSH host keys ``node`` delivered during its install."""
        payload = json.dumps([k.to_dict() for k in keys])
        self._txn([("UPDATE installs SET hostkeys = ? WHERE node = ?", (payload, node))])

    def finish(self, node: str, state: str, error: str | None = None) -> bool:
        """Move an active install to ``installed`` or ``failed``; True when it moved."""
        now = self.now()
        counts = self._txn([("UPDATE installs SET state = ?, ended_at = ?, error = ? "
                             "WHERE node = ? AND state = ? AND deadline_at > ?",
                             (state, now, error, node, ACTIVE, now))])
        return bool(counts[0])

    def expire(self) -> list[str]:
        """Move active installs past their deadline to ``timeout``; return their nodes."""
        now = self.now()
        due = [r[0] for r in self._run("SELECT node FROM installs WHERE state = ? "
                                       "AND deadline_at <= ?", (ACTIVE, now))]
        for node in due:
            moved = self._txn([("UPDATE installs SET state = ?, ended_at = ? WHERE node = ? "
                                "AND state = ?", (TIMEOUT, now, node, ACTIVE))])
            if moved[0]:
                self.event(node, "timeout", "deadline passed without an end callback")
        return due

    def active(self) -> list[InstallRecord]:
        """Return the installs still active, after expiring those past their deadline."""
        self.expire()
        return [_record(r) for r in self._run(f"SELECT {_COLUMNS} FROM installs "  # noqa: S608
                                              "WHERE state = ? ORDER BY node", (ACTIVE,))]

    # --- events --------------------------------------------------------------------------

    def event(self, node: str, stage: str, detail: str = "", at: float | None = None) -> None:
        """Record that ``node`` reached ``stage`` of its install, now (or ``at``, for a
        step recorded after it happened, such as a power request that took a while)."""
        self._txn([("INSERT INTO events (node, stage, at, detail) VALUES (?, ?, ?, ?)",
                    (node, stage, self.now() if at is None else at, detail))])

    def events(self, node: str, *, all_installs: bool = False) -> list[BootEvent]:
        """The node's events, oldest first: of its latest install, or of every install."""
        since = 0
        if not all_installs:
            rows = self._run("SELECT MAX(id) FROM events WHERE node = ? AND stage = 'added'",
                             (node,))
            since = rows[0][0] or 0
        return [BootEvent(*r) for r in self._run(
            "SELECT node, stage, at, detail FROM events WHERE node = ? AND id >= ? "
            "ORDER BY id", (node, since))]
