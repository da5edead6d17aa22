"""Hostile peers at run time, with real processes and listeners on 127.22.0.0/16.

Each test starts its own peers (no lab needed): a BMC address that accepts and
never answers, an HTTP peer that echoes what it is sent while posing as Ironic.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from metalctl.store import Store

PASSWORD = "Hunter2-very-secret"


def _creds(tmp_path: Path) -> Path:
    path = tmp_path / "creds.yaml"
    path.write_text(f"rack: [{{username: admin, password: {PASSWORD}}}]\n")
    path.chmod(0o600)
    return path


@contextmanager
def silent_bmcs(addresses: list[str]) -> Iterator[tuple[int, list[socket.socket]]]:
    """Listeners that accept every connection and never send a byte (one port for all)."""
    listeners: list[socket.socket] = []
    accepted: list[socket.socket] = []
    port = 0
    for address in addresses:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        port = s.getsockname()[1]
        s.listen(64)
        s.settimeout(0.2)
        listeners.append(s)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            for s in listeners:
                with suppress(OSError):
                    accepted.append(s.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, accepted
    finally:
        stop.set()
        thread.join(5)
        for s in listeners + accepted:
            s.close()


def test_one_sigint_stops_discover_within_seconds_with_exit_130(tmp_path):
    """Silent BMCs hold every worker in a read; one Ctrl-C must still end the run."""
    store = tmp_path / "store.db"
    silent = [f"127.22.0.{i}" for i in range(1, 5)]
    with silent_bmcs(silent) as (port, accepted):
        proc = subprocess.Popen(
            [sys.executable, "-m", "metalctl", "discover", "127.22.0.9", *silent,
             "--protocol", "redfish", "--redfish-scheme", "http", "--redfish-port", str(port),
             "--read-timeout", "300", "--concurrency", "8", "--credentials", "rack",
             "--credentials-file", str(_creds(tmp_path)), "--store", str(store)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # a shell without job control starts background jobs with SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while len(accepted) < len(silent) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(accepted) >= len(silent), "the probes never reached the silent BMCs"
        time.sleep(0.5)  # every worker is now blocked in a read
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("still running 10 s after one SIGINT") from None
        elapsed = time.monotonic() - sent
    print(f"SIGINT to exit: {elapsed:.2f}s")
    assert proc.returncode == 130, err
    assert elapsed < 5
    assert "interrupted" in err
    assert "Traceback" not in err
    conn = sqlite3.connect(store)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Store(store) as s:  # opens, and holds what finished before the signal
        assert [row["address"] for row in s.scans()] == ["127.22.0.9"]
        assert s.nodes() == []
