"""Run-time faults seen from the CLI: one Ctrl-C ends a run stuck on silent BMCs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from metalctl.store import Store

from .faults import SilentTcp


def test_one_sigint_stops_a_scan_of_silent_bmcs_within_seconds(tmp_path):
    creds = tmp_path / "creds.yaml"
    creds.write_text("site: [{username: admin, password: not-used-Pw9}]\n")
    creds.chmod(0o600)
    store = tmp_path / "store.db"
    env = {**os.environ, "METALCTL_CREDENTIALS_FILE": str(creds), "METALCTL_STORE": str(store)}
    silent = [SilentTcp(f"127.24.0.{i}", 80) for i in range(1, 5)]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "metalctl", "discover", "http://127.24.0.1-4",
             "--credentials", "site", "--read-timeout", "60"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(len(s.conns) for s in silent) < 4:
            time.sleep(0.1)  # every worker is now blocked reading a silent BMC
        assert sum(len(s.conns) for s in silent) == 4
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - sent
    finally:
        for s in silent:
            s.close()
    assert proc.returncode == 130, err
    assert stopped_after < 5, f"took {stopped_after:.1f}s after one SIGINT"
    assert "interrupted" in err
    assert "Traceback" not in err
    with Store(store) as s:  # the store opens and reads: nothing half-written
        assert s.nodes() == []


def test_an_ironic_that_echoes_the_request_leaks_no_credential(lab, ironic, tmp_path):
    import yaml

    from .faults import EchoingIronic

    password, kg_key = "echo-Marker-Pw-77", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump({"nodes": [{
        "name": "echoed", "driver": "ipmi",
        "driver_info": {"ipmi_address": "127.20.2.1", "ipmi_username": "admin",
                        "ipmi_password": password, "ipmi_kg_key": kg_key}}]}))
    log = tmp_path / "debug.log"
    store = tmp_path / "store.db"
    peer = EchoingIronic("127.24.0.10", 6385, lab.ironic_url)
    try:
        env = {**os.environ, "METALCTL_IRONIC_URL": peer.url, "METALCTL_STORE": str(store)}
        proc = subprocess.run([sys.executable, "-m", "metalctl", "--debug", "--log-file",
                               str(log), "enroll", "--from-file", str(nodes), "-o", "json"],
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        peer.close()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Invalid input for node" in proc.stdout  # the peer's message is reported...
    haystacks = {"stdout": proc.stdout, "stderr": proc.stderr, "log": log.read_text()}
    for db in tmp_path.glob("store.db*"):
        haystacks[db.name] = db.read_bytes().decode("latin-1")
    for where, text in haystacks.items():  # ...with no credential in it, anywhere
        for name, marker in (("password", password), ("kg key", kg_key)):
            if marker in text:
                at = text.index(marker)
                context = text[max(0, at - 300):at].replace(marker, "<M>")
                pytest.fail(f"{name} leaked into {where} after: {context!r}")
