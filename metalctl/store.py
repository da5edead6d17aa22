"""The local store: one SQLite file holding node records and their lifecycle events.

Default path ``~/.local/state/metalctl/metalctl.db``; set ``--store`` or
``$METALCTL_STORE``. Writes are serialised through one connection and a lock
(fleet work is I/O-bound on peers, not on this file), and every read-modify-write is
one ``BEGIN IMMEDIATE`` transaction, so several metalctl processes can share a store
(each waits up to ``BUSY_TIMEOUT_S`` for the others' write lock). The store never holds
credentials: records carry only the *name* of the credential set that worked.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metalctl.errors import StoreError
from metalctl.logredact import scrub_values
from metalctl.model.node import DiscoveryRecord, Event, Lifecycle

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    name TEXT,
    ironic_uuid TEXT,
    record TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_key TEXT NOT NULL,
    stage TEXT NOT NULL,
    action TEXT NOT NULL,
    at TEXT NOT NULL,
    changes TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS events_node ON events(node_key, id);
CREATE TABLE IF NOT EXISTS node_data (
    node_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (node_key, kind)
);
CREATE TABLE IF NOT EXISTS audit_scans (
    scan_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_results (
    scan_id TEXT NOT NULL,
    host TEXT NOT NULL,
    rule TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (scan_id, host, rule)
);
CREATE TABLE IF NOT EXISTS scans (
    address TEXT NOT NULL,
    port INTEGER NOT NULL DEFAULT 0,  -- 0: no port (nothing answered on any protocol)
    status TEXT NOT NULL,
    error TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (address, port)
);
"""

#: Stores made before scans' port was NOT NULL kept one row per re-run for addresses
#: without a port (NULLs are distinct in a primary key): fold them into one.
MIGRATIONS = """
DELETE FROM scans WHERE port IS NULL AND rowid NOT IN
    (SELECT MAX(rowid) FROM scans WHERE port IS NULL GROUP BY address);
DELETE FROM scans WHERE port IS NULL AND address IN (SELECT address FROM scans WHERE port = 0);
UPDATE scans SET port = 0 WHERE port IS NULL;
"""
BUSY_TIMEOUT_S = 30.0


def default_path() -> Path:
    if os.environ.get("METALCTL_STORE"):
        return Path(os.environ["METALCTL_STORE"])
    return Path.home() / ".local" / "state" / "metalctl" / "metalctl.db"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """Node records and lifecycle events. Construct, then :meth:`open`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> Store:
        """Create the file (mode 0600) and schema if needed.

        Raises:
            StoreError: the file cannot be created or is not a metalctl store.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.touch(mode=0o600)
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _tx)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            conn.executescript(MIGRATIONS)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(path=str(self.path), reason=str(exc)) from None
        self._conn = conn
        return self

    def close(self) -> None:
        if self._conn:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self.open() if self._conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement, atomic on its own."""
        with self._tx() as conn:
            return conn.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: taken before the first read, so a read-modify-write by
        another process cannot slip in between (the cause of duplicate-key crashes when
        two discovers shared a store)."""
        if self._conn is None:
            raise StoreError(path=str(self.path), reason="store is not open")
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(path=str(self.path), reason=f"busy: {exc}") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- nodes --------------------------------------------------------------------------

    def save_discovered(self, record: DiscoveryRecord) -> str:
        """Insert or refresh a discovered system; keeps a later lifecycle state.

        Returns the action recorded: ``discovered`` (new) or ``rediscovered``.
        """
        data = record.to_dict()
        with self._tx() as conn:
            existing = conn.execute("SELECT record FROM nodes WHERE key = ?",
                                    (record.key,)).fetchall()
            if existing:
                before = json.loads(existing[0][0])
                changes = {k: {"from": before.get(k), "to": v} for k, v in data.items()
                           if k not in ("duration_s",) and before.get(k) != v}
                conn.execute("UPDATE nodes SET record = ?, updated_at = ? WHERE key = ?",
                             (json.dumps(data), now(), record.key))
                action = "rediscovered"
            else:
                conn.execute("INSERT INTO nodes (key, state, record, updated_at) "
                             "VALUES (?, ?, ?, ?)",
                             (record.key, Lifecycle.DISCOVERED.value, json.dumps(data), now()))
                changes, action = {}, "discovered"
            self._event(conn, Event(record.key, "discover", action, now(), changes))
        return action

    def save_scan(self, address: str, port: int | None, status: str, error: str | None) -> None:
        """Remember the outcome for an address that yielded no system."""
        self._exec(
            "INSERT OR REPLACE INTO scans (address, port, status, error, at) VALUES (?,?,?,?,?)",
            (address, port or 0, status, error, now()),
        )

    def set_state(
        self, key: str, state: Lifecycle, *, name: str | None = None,
        ironic_uuid: str | None = None,
    ) -> None:
        """Move a node to ``state`` (never backwards) and record its Ironic identity."""
        with self._tx() as conn:
            rows = conn.execute("SELECT state FROM nodes WHERE key = ?", (key,)).fetchall()
            if not rows:
                return
            current = Lifecycle(rows[0][0])
            new = state if state.rank > current.rank else current
            conn.execute(
                "UPDATE nodes SET state = ?, name = COALESCE(?, name), "
                "ironic_uuid = COALESCE(?, ironic_uuid), updated_at = ? WHERE key = ?",
                (new.value, name, ironic_uuid, now(), key))

    def nodes(self, state: Lifecycle | None = None) -> list[dict[str, Any]]:
        """All node rows (``key``, ``state``, ``name``, ``ironic_uuid``, ``record``)."""
        sql = "SELECT key, state, name, ironic_uuid, record, updated_at FROM nodes"
        args: tuple[Any, ...] = ()
        if state:
            sql += " WHERE state = ?"
            args = (state.value,)
        rows = self._exec(sql + " ORDER BY key", args)
        return [
            {"key": k, "state": s, "name": n, "ironic_uuid": u, "record": json.loads(r),
             "updated_at": t}
            for k, s, n, u, r, t in rows
        ]

    def discovered_records(self) -> list[DiscoveryRecord]:
        return [DiscoveryRecord.from_dict(n["record"]) for n in self.nodes()]

    def find(self, ref: str) -> dict[str, Any] | None:
        """A node by key, name or Ironic UUID."""
        for n in self.nodes():
            if ref in (n["key"], n["name"], n["ironic_uuid"]):
                return n
        return None

    # --- per-stage data (topology facts, profile plans, ...) ----------------------------

    def put_data(self, key: str, kind: str, data: dict[str, Any]) -> None:
        self._exec("INSERT OR REPLACE INTO node_data (node_key, kind, data, at) "
                   "VALUES (?, ?, ?, ?)", (key, kind, json.dumps(data, default=str), now()))

    def get_data(self, key: str, kind: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT data FROM node_data WHERE node_key = ? AND kind = ?",
                          (key, kind))
        return json.loads(rows[0][0]) if rows else None

    # --- audit history ---------------------------------------------------------------

    def save_audit(self, scan_id: str, at: str, summary: dict[str, Any],
                   rows: list[tuple[str, str, str, str, str]]) -> None:
        """``rows``: (host, rule, status, severity, evidence JSON)."""
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO audit_scans (scan_id, at, summary) "
                         "VALUES (?,?,?)", (scan_id, at, json.dumps(summary)))
            conn.executemany("INSERT OR REPLACE INTO audit_results VALUES (?,?,?,?,?,?)",
                             [(scan_id, *row) for row in rows])

    def audit_scans(self) -> list[dict[str, Any]]:
        return [{"scan_id": s, "at": a, "summary": json.loads(m)} for s, a, m in self._exec(
            "SELECT scan_id, at, summary FROM audit_scans ORDER BY at, rowid")]

    def audit_results(self, scan_id: str) -> dict[tuple[str, str], str]:
        return {(h, r): st for h, r, st in self._exec(
            "SELECT host, rule, status FROM audit_results WHERE scan_id = ?", (scan_id,))}

    # --- events -------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Append one lifecycle event."""
        with self._tx() as conn:
            self._event(conn, event)

    @staticmethod
    def _event(conn: sqlite3.Connection, event: Event) -> None:
        # last line of defence: no value ever revealed to a peer is stored, whatever a
        # peer echoed into an error or a change
        conn.execute("INSERT INTO events (node_key, stage, action, at, changes, error) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (event.node_key, event.stage, event.action, event.at,
                      scrub_values(json.dumps(event.changes, default=str)),
                      scrub_values(event.error) if event.error else None))

    def events(self, key: str | None = None) -> Iterator[Event]:
        sql = "SELECT node_key, stage, action, at, changes, error FROM events"
        args: tuple[Any, ...] = ()
        if key:
            sql += " WHERE node_key = ?"
            args = (key,)
        for k, st, a, at, ch, err in self._exec(sql + " ORDER BY id", args):
            yield Event(k, st, a, at, json.loads(ch), err)
