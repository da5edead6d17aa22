import os

from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.store import Store


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


def test_rescans_of_addresses_without_a_bmc_converge_to_one_row(tmp_path):
    with Store(tmp_path / "s.db") as store:
        for _ in range(3):
            store.save_scan("10.0.0.9", None, "no-bmc", "nothing there")
        store.save_scan("10.0.0.9", 8443, "timeout", "silent")
        rows = store._exec("SELECT address, port FROM scans ORDER BY port")
    assert rows == [("10.0.0.9", 0), ("10.0.0.9", 8443)]


def test_an_old_store_with_duplicate_portless_scans_is_folded_on_open(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE scans (address TEXT NOT NULL, port INTEGER, status TEXT NOT "
                 "NULL, error TEXT, at TEXT NOT NULL, PRIMARY KEY (address, port))")
    conn.executemany("INSERT INTO scans VALUES (?, NULL, 'no-bmc', NULL, ?)",
                     [("10.0.0.1", "t1"), ("10.0.0.1", "t2"), ("10.0.0.2", "t1")])
    conn.commit()
    conn.close()
    with Store(path) as store:
        store.save_scan("10.0.0.1", None, "no-bmc", None)
        rows = store._exec("SELECT address, port FROM scans ORDER BY address")
    assert rows == [("10.0.0.1", 0), ("10.0.0.2", 0)]


WRITER = """
import sys
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.store import Store
with Store(sys.argv[1]) as store:
    for i in range(40):
        rec = DiscoveryRecord(f"10.0.{i // 250}.{i % 250}", 623, Protocol.IPMI, Status.OK,
                              serial=sys.argv[2])
        store.save_discovered(rec)
        store.save_scan(f"10.9.0.{i}", None, "no-bmc", None)
"""


def test_concurrent_processes_share_one_store(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "s.db"
    Store(path).open().close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}"],
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with Store(path) as store:
        assert len(store.nodes()) == 40
        events = list(store.events())
        assert len(events) == 120  # every write recorded, none lost to a race
        assert sum(e.action == "discovered" for e in events) == 40
        assert store._exec("SELECT COUNT(*) FROM scans") == [(40,)]
