import os
import sqlite3
import subprocess
import sys

import pytest

from metalctl.errors import StoreError
from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.store import SCHEMA_VERSION, Store


def rec(**kw):
    base = {"address": "127.0.0.1", "port": 623, "protocol": Protocol.IPMI, "status": Status.OK}
    return DiscoveryRecord(**{**base, **kw})


def test_lifecycle_never_moves_backwards_and_events_are_kept(tmp_path):
    with Store(tmp_path / "s.db") as store:
        assert store.save_discovered(rec(serial="A")) == "discovered"
        store.set_state(rec().key, Lifecycle.ENROLLED, name="n1", ironic_uuid="u1")
        assert store.save_discovered(rec(serial="B")) == "rediscovered"
        node = store.nodes()[0]
        assert (node["state"], node["name"], node["record"]["serial"]) == ("enrolled", "n1", "B")
        events = list(store.events(rec().key))
        assert [e.action for e in events] == ["discovered", "rediscovered"]
        assert events[1].changes["serial"] == {"from": "A", "to": "B"}
    assert oct(os.stat(tmp_path / "s.db").st_mode & 0o777) == "0o600"


def test_scans_keep_one_row_per_address_and_a_found_system_replaces_it(tmp_path):
    with Store(tmp_path / "s.db") as store:
        for _ in range(3):  # re-runs: port None for no-bmc used to add a row each time
            store.save_scan("10.0.0.5", None, "no-bmc", "nothing answered")
        store.save_scan("10.0.0.6", 623, "timeout", "slow")
        store.save_scan("10.0.0.6", None, "no-bmc", "nothing answered")
        assert [(s["address"], s["status"]) for s in store.scans()] == [
            ("10.0.0.5", "no-bmc"), ("10.0.0.6", "no-bmc")]
        store.save_discovered(rec(address="10.0.0.6"))
        assert [s["address"] for s in store.scans()] == ["10.0.0.5"]


def test_a_version_0_store_is_migrated_to_one_scan_row_per_address(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE nodes (key TEXT PRIMARY KEY, state TEXT NOT NULL, name TEXT, "
        "ironic_uuid TEXT, record TEXT NOT NULL, updated_at TEXT NOT NULL);"
        "CREATE TABLE scans (address TEXT NOT NULL, port INTEGER, status TEXT NOT NULL, "
        "error TEXT, at TEXT NOT NULL, PRIMARY KEY (address, port));")
    rows = [("10.0.0.5", None, "no-bmc", "a", "2026-01-01T00:00:00"),
            ("10.0.0.5", None, "no-bmc", "b", "2026-01-02T00:00:00"),
            ("10.0.0.5", 623, "timeout", "c", "2026-01-01T12:00:00"),
            ("10.0.0.7", None, "no-bmc", "d", "2026-01-01T00:00:00")]
    conn.executemany("INSERT INTO scans VALUES (?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert [(s["address"], s["error"]) for s in store.scans()] == [
            ("10.0.0.5", "b"), ("10.0.0.7", "d")]  # the latest outcome of each address
        store.save_scan("10.0.0.5", None, "no-bmc", "e")
        assert len(store.scans()) == 2
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_store_from_a_newer_metalctl_is_refused(tmp_path):
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this metalctl"):
        Store(path).open()


_WRITER = """
import sys
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.store import Store
store = Store(sys.argv[1]).open()
for i in range(40):
    store.save_discovered(DiscoveryRecord(f"10.9.0.{i}", 623, Protocol.IPMI, Status.OK,
                                          serial=sys.argv[2]))
    store.save_scan(f"10.9.1.{i}", None, "no-bmc", sys.argv[2])
store.close()
"""


def test_concurrent_processes_on_one_store_neither_fail_nor_duplicate(tmp_path):
    """Three processes saving the same systems at once: the discover-vs-discover race."""
    path = tmp_path / "shared.db"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"run{n}"],
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with Store(path) as store:
        assert len(store.nodes()) == 40
        assert len(store.scans()) == 40
        actions = [e.action for e in store.events()]
        assert actions.count("discovered") == 40  # exactly one first sighting per system
        assert actions.count("rediscovered") == 80
