"""Run-time faults seen from the CLI: one Ctrl-C ends a run stuck on silent BMCs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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
