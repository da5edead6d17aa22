"""Hostile peers at run time, with real processes and listeners on 127.22.0.0/16.

Each test starts its own peers (no lab needed): a BMC address that accepts and
never answers, an HTTP peer that echoes what it is sent while posing as Ironic.
"""

from __future__ import annotations

import http.server
import json
import select
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

from metalctl.poll import wait_for
from metalctl.store import Store

from .clirun import ipmi_nodes_file, run
from .hostile import send_json

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
        # every worker blocked in a read: each silent BMC has its request and answers
        # nothing (a fixed sleep bet on how soon the requests are sent)
        wait_for(lambda: len(accepted) >= len(silent) and
                 len(select.select(accepted, [], [], 0)[0]) == len(accepted),
                 timeout_s=60, interval_s=0.1, what="a request at every silent BMC",
                 ready=bool)
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


KG_KEY = "a1b2c3d4e5f60718293a"
_API = {"X-OpenStack-Ironic-API-Minimum-Version": "1.1",
        "X-OpenStack-Ironic-API-Maximum-Version": "1.87"}


@contextmanager
def echoing_ironic(address: str) -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP peer posing as Ironic that lists nothing and answers every write with a
    400 quoting the request body (as a careless API or proxy does)."""
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: dict) -> None:
            send_json(self, code, _API, body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            base = f"http://{address}:{self.server.server_address[1]}"
            v1 = {"id": "v1", "version": "1.87", "min_version": "1.1", "status": "CURRENT",
                  "links": [{"href": base + "/v1/", "rel": "self"}]}
            path = self.path.split("?")[0].rstrip("/")
            body = {"": {"versions": [v1], "default_version": v1}, "/v1": v1,
                    "/v1/drivers": {"drivers": []}, "/v1/nodes": {"nodes": []},
                    "/v1/ports": {"ports": []}}.get(path)
            self._send(200 if body is not None else 404, body or {"error_message": "{}"})

        def _echo(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(body)
            fault = {"faultstring": f"Invalid input: {body.decode()}", "debuginfo": None}
            self._send(400, {"error_message": json.dumps(fault)})

        do_POST = do_PATCH = do_PUT = _echo  # noqa: N815

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_an_ironic_that_echoes_requests_never_gets_credentials_shown_or_stored(tmp_path):
    nodes = ipmi_nodes_file(tmp_path / "nodes.yaml", "echo-1", "10.0.0.1", PASSWORD, KG_KEY,
                            "52:54:00:22:00:01")
    log = tmp_path / "debug.log"
    store = tmp_path / "store.db"
    with echoing_ironic("127.22.0.20") as (url, received):
        started = time.monotonic()
        proc = run(["--debug", "--log-file", str(log), "enroll", "-f", str(nodes),
                    "--ironic-url", url, "--store", str(store), "-o", "json"], timeout=120)
        elapsed = time.monotonic() - started
    print(f"echoing Ironic: exit {proc.returncode} in {elapsed:.1f}s")
    assert any(PASSWORD.encode() in body for body in received)  # it did get the secret...
    [row] = json.loads(proc.stdout)
    assert row["action"] == "failed"
    assert "Invalid input" in row["error"]  # ...and echoed it back, masked
    assert "***" in row["error"]
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, "log": log.read_text()}
    for path in tmp_path.glob("store.db*"):  # the WAL too
        texts[path.name] = path.read_bytes().decode("latin-1")
    assert "REQ: curl" in texts["log"]  # --debug did log the request bodies
    for name, text in texts.items():
        assert PASSWORD not in text, name
        assert KG_KEY not in text, name
    assert proc.returncode == 1
