"""The local store: one SQLite file holding node records and their lifecycle events.

Default path ``~/.local/state/metalctl/metalctl.db``; set ``--store`` or
``$METALCTL_STORE``. Within a process, writes are serialised through one
connection and a lock (fleet work is I/O-bound on peers, not on this file).
Across processes (two ``discover`` runs on one store), every read-modify-write
is one ``BEGIN IMMEDIATE`` transaction and inserts are upserts, so concurrent
runs wait for each other (busy timeout) instead of failing on a unique key.
The store never holds credentials: records carry only the *name* of the
credential set that worked.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metalctl import settings
from metalctl.errors import InputError, StoreError, one_line
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
    address TEXT PRIMARY KEY,
    port INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    at TEXT NOT NULL
);
"""

#: ``PRAGMA user_version`` of the schema above; :meth:`Store.open` migrates older files.
#: 1: ``scans`` keyed by address alone (version 0 keyed it by (address, port) with a NULL
#: port for addresses without a BMC, and NULLs never collide: one more row per re-run).
SCHEMA_VERSION = 1

#: How long a writer waits for another process's transaction before StoreError.
BUSY_TIMEOUT_S = 30.0


def default_path() -> Path:
    """Return the store path: ``$METALCTL_STORE``, else ``~/.local/state/metalctl/metalctl.db``."""
    store = settings.path("METALCTL_STORE")
    assert store is not None  # it has a default
    return store


def now() -> str:
    """Return the current UTC time as an ISO 8601 string to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _journal_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out a process that is creating the same store.

    Changing the journal mode takes a lock SQLite's busy handler does not always wait
    for (seen as an immediate "database is locked" when three runs opened a new store
    at once under load), so it is retried here within the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Store:
    """Node records and lifecycle events. Construct, then :meth:`open`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self, *, create: bool = True) -> Store:
        """Create the file (mode 0600) and schema if needed.

        Args:
            create: False for readers (``metalctl nodes``...): a store that does not
                exist is refused, never created empty.

        Raises:
            InputError: ``create`` is False and there is no store at the path.
            StoreError: the file cannot be created or is not a metalctl store.
        """
        if not create and not self.path.is_file():
            raise InputError("--store", one_line(str(self.path)),
                             "no such store (nothing was discovered or enrolled with it); "
                             "nothing was created")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.touch(mode=0o600)
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _tx)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            _journal_wal(conn)
            self._conn = conn
            with self._tx() as tx:
                _migrate(tx)
                for statement in filter(str.strip, SCHEMA.split(";")):
                    tx.execute(statement)
                tx.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.DatabaseError) as exc:
            self.close()
            raise StoreError(path=str(self.path), reason=str(exc)) from None
        return self

    def close(self) -> None:
        """Close the database connection; closing twice is harmless."""
        if self._conn:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self.open() if self._conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before the first read (``BEGIN IMMEDIATE``).

        Taking the write lock up front is what makes a read-then-write safe across
        processes: a deferred transaction that read first fails with "database is
        locked" on upgrade instead of waiting.
        """
        if self._conn is None:
            raise StoreError(path=str(self.path), reason="store is not open")
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # busy beyond the timeout
                raise StoreError(path=str(self.path), reason=str(exc)) from None
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One write statement in its own transaction."""
        with self._tx() as tx:
            return tx.execute(sql, args).fetchall()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One read; a single SELECT sees a consistent snapshot without a write lock."""
        if self._conn is None:
            raise StoreError(path=str(self.path), reason="store is not open")
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # --- nodes --------------------------------------------------------------------------

    def save_discovered(self, record: DiscoveryRecord) -> str:
        """Insert or refresh a discovered system; keeps a later lifecycle state.

        The read, the upsert and the event are one transaction, so two runs that
        find the same system at once record one ``discovered`` and one
        ``rediscovered``. The address's no-system outcome, if any, is dropped.

        Returns the action recorded: ``discovered`` (new) or ``rediscovered``.
        """
        data = record.to_dict()
        at = now()
        with self._tx() as tx:
            existing = tx.execute("SELECT record FROM nodes WHERE key = ?",
                                  (record.key,)).fetchall()
            tx.execute(
                "INSERT INTO nodes (key, state, record, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET record = excluded.record, "
                "updated_at = excluded.updated_at",
                (record.key, Lifecycle.DISCOVERED.value, json.dumps(data), at))
            tx.execute("DELETE FROM scans WHERE address = ?", (record.address,))
            if existing:
                before = json.loads(existing[0][0])
                changes = {
                    k: {"from": before.get(k), "to": v}
                    for k, v in data.items()
                    if k not in ("duration_s",) and before.get(k) != v
                }
                action = "rediscovered"
            else:
                changes, action = {}, "discovered"
            _insert_event(tx, Event(record.key, "discover", action, at, changes))
        return action

    def add_node(self, key: str, state: Lifecycle, record: dict[str, Any], *,
                 name: str | None = None, stage: str, action: str) -> bool:
        """Insert a node that joins the lifecycle at ``state`` (a host installed outside
        metalctl, adopted by provision); an existing node is left as it is.

        Returns whether the node was new. The event ``stage``/``action`` is recorded.
        """
        at = now()
        with self._tx() as tx:
            cur = tx.execute(
                "INSERT INTO nodes (key, state, name, record, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO NOTHING",
                (key, state.value, name, json.dumps(record), at))
            if cur.rowcount:
                _insert_event(tx, Event(key, stage, action, at, {"state": state.value}))
            return bool(cur.rowcount)

    def save_scan(self, address: str, port: int | None, status: str, error: str | None) -> None:
        """Remember the latest outcome for an address that yielded no system (one row each)."""
        self._exec(
            "INSERT INTO scans (address, port, status, error, at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(address) DO UPDATE SET port = excluded.port, "
            "status = excluded.status, error = excluded.error, at = excluded.at",
            (address, port, status, error, now()),
        )

    def scans(self) -> list[dict[str, Any]]:
        """Addresses whose latest probe yielded no system, with that outcome."""
        return [{"address": a, "port": p, "status": s, "error": e, "at": t} for a, p, s, e, t in
                self._query("SELECT address, port, status, error, at FROM scans "
                           "ORDER BY address")]

    def set_state(
        self, key: str, state: Lifecycle, *, name: str | None = None,
        ironic_uuid: str | None = None,
    ) -> None:
        """Move a node to ``state`` (never backwards) and record its Ironic identity."""
        with self._tx() as tx:
            rows = tx.execute("SELECT state FROM nodes WHERE key = ?", (key,)).fetchall()
            if not rows:
                return
            current = Lifecycle(rows[0][0])
            new = state if state.rank > current.rank else current
            tx.execute(
                "UPDATE nodes SET state = ?, name = COALESCE(?, name), "
                "ironic_uuid = COALESCE(?, ironic_uuid), updated_at = ? WHERE key = ?",
                (new.value, name, ironic_uuid, now(), key),
            )

    def nodes(self, state: Lifecycle | None = None) -> list[dict[str, Any]]:
        """All node rows (``key``, ``state``, ``name``, ``ironic_uuid``, ``record``)."""
        sql = "SELECT key, state, name, ironic_uuid, record, updated_at FROM nodes"
        args: tuple[Any, ...] = ()
        if state:
            sql += " WHERE state = ?"
            args = (state.value,)
        rows = self._query(sql + " ORDER BY key", args)
        return [
            {"key": k, "state": s, "name": n, "ironic_uuid": u, "record": json.loads(r),
             "updated_at": t}
            for k, s, n, u, r, t in rows
        ]

    def discovered_records(self) -> list[DiscoveryRecord]:
        """Return the discovery record of every stored node."""
        return [DiscoveryRecord.from_dict(n["record"]) for n in self.nodes()]

    def node(self, key: str) -> dict[str, Any] | None:
        """The node row keyed ``key`` (one indexed read; :meth:`find` also takes names)."""
        rows = self._query("SELECT key, state, name, ironic_uuid, record, updated_at FROM nodes "
                           "WHERE key = ?", (key,))
        return [{"key": k, "state": s, "name": n, "ironic_uuid": u, "record": json.loads(r),
                 "updated_at": t} for k, s, n, u, r, t in rows][0] if rows else None

    def find(self, ref: str) -> dict[str, Any] | None:
        """A node by key, name or Ironic UUID."""
        for n in self.nodes():
            if ref in (n["key"], n["name"], n["ironic_uuid"]):
                return n
        return None

    # --- per-stage data (topology facts, profile plans, ...) ----------------------------

    def put_data(self, key: str, kind: str, data: dict[str, Any]) -> None:
        """Store ``data`` of ``kind`` (topology, plan, bios...) for node ``key``, replacing any."""
        self._exec("INSERT OR REPLACE INTO node_data (node_key, kind, data, at) "
                   "VALUES (?, ?, ?, ?)", (key, kind, json.dumps(data, default=str), now()))

    def get_data(self, key: str, kind: str) -> dict[str, Any] | None:
        """Return the data of ``kind`` stored for node ``key``, or None."""
        rows = self._query("SELECT data FROM node_data WHERE node_key = ? AND kind = ?",
                          (key, kind))
        return json.loads(rows[0][0]) if rows else None

    # --- audit history ---------------------------------------------------------------

    def save_audit(self, scan_id: str, at: str, summary: dict[str, Any],
                   rows: list[tuple[str, str, str, str, str]]) -> None:
        """``rows``: (host, rule, status, severity, evidence JSON)."""
        with self._tx() as tx:
            tx.execute("INSERT OR REPLACE INTO audit_scans (scan_id, at, summary) "
                       "VALUES (?,?,?)", (scan_id, at, json.dumps(summary)))
            tx.executemany("INSERT OR REPLACE INTO audit_results VALUES (?,?,?,?,?,?)",
                           [(scan_id, *row) for row in rows])

    def audit_scans(self) -> list[dict[str, Any]]:
        """Return every audit scan (id, time, summary), oldest first."""
        return [{"scan_id": s, "at": a, "summary": json.loads(m)} for s, a, m in self._query(
            "SELECT scan_id, at, summary FROM audit_scans ORDER BY at, rowid")]

    def audit_results(self, scan_id: str) -> dict[tuple[str, str], str]:
        """Return the status of each (host, rule) in audit scan ``scan_id``."""
        return {(h, r): st for h, r, st in self._query(
            "SELECT host, rule, status FROM audit_results WHERE scan_id = ?", (scan_id,))}

    def audit_host_results(self, scan_id: str, host: str) -> list[dict[str, str]]:
        """Return ``host``'s results in scan ``scan_id``: rule, status, severity."""
        return [{"rule": r, "status": st, "severity": sev} for r, st, sev in self._query(
            "SELECT rule, status, severity FROM audit_results WHERE scan_id = ? AND host = ? "
            "ORDER BY rule", (scan_id, host))]

    # --- events -------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Record ``event`` in its own transaction."""
        with self._tx() as tx:
            _insert_event(tx, event)

    def events(self, key: str | None = None) -> Iterator[Event]:
        """Yield the events of node ``key`` (of every node when None), oldest first."""
        sql = "SELECT node_key, stage, action, at, changes, error FROM events"
        args: tuple[Any, ...] = ()
        if key:
            sql += " WHERE node_key = ?"
            args = (key,)
        for k, st, a, at, ch, err in self._query(sql + " ORDER BY id", args):
            yield Event(k, st, a, at, json.loads(ch), err)


def _insert_event(conn: sqlite3.Connection, event: Event) -> None:
    conn.execute(
        "INSERT INTO events (node_key, stage, action, at, changes, error) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (event.node_key, event.stage, event.action, event.at,
         json.dumps(event.changes, default=str), event.error),
    )


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store written by an older metalctl to :data:`SCHEMA_VERSION` (in a transaction).

    Raises:
        sqlite3.DatabaseError: the file is newer than this metalctl or not a store.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"store schema version {version} is newer than this "
                                    f"metalctl ({SCHEMA_VERSION}); upgrade metalctl")
    pk = [row[1] for row in conn.execute("PRAGMA table_info(scans)") if row[5]]
    if version < 1 and pk and pk != ["address"]:
        # keep the latest outcome per address; duplicates of NULL ports collapse here
        conn.execute("ALTER TABLE scans RENAME TO scans_v0")
        conn.execute("CREATE TABLE scans (address TEXT PRIMARY KEY, port INTEGER, "
                     "status TEXT NOT NULL, error TEXT, at TEXT NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO scans SELECT address, port, status, error, at "
                     "FROM scans_v0 ORDER BY at, rowid")
        conn.execute("DELETE FROM scans WHERE address IN (SELECT key FROM nodes) OR address "
                     "IN (SELECT json_extract(record, '$.address') FROM nodes)")
        conn.execute("DROP TABLE scans_v0")
