"""The lab's process waits, on metalctl's one wait, against real child processes."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from metalctl.errors import LabError
from metalctl_lab.procs import alive, spawn, wait_gone, wait_ready, wait_up


def test_wait_ready_returns_when_ready_and_names_the_log_when_the_process_dies(tmp_path):
    log = tmp_path / "peer.log"
    pid = spawn(["sh", "-c", "echo listening on nothing; exit 3"], log)
    with pytest.raises(LabError, match=r"(?s)peer exited during start-up; log .*listening on"):
        wait_ready("peer", lambda: False, pid, log, 10)
    marker = tmp_path / "ready"
    proc = subprocess.Popen(["sh", "-c", f"sleep 0.2; touch {marker}; sleep 30"])
    try:
        wait_up("toucher", marker.exists, lambda: proc.poll() is None, log, 10, 0.05)
        assert marker.exists()
        with pytest.raises(LabError, match=r"never not ready within 0.1s; see "):
            wait_up("never", lambda: False, lambda: True, log, 0.1, 0.05)
    finally:
        proc.kill()
        proc.wait()


def test_wait_gone_says_whether_the_processes_exited(tmp_path):
    pid = spawn(["sleep", "30"], tmp_path / "sleep.log")
    assert not wait_gone([pid], 0.1)  # still there: the caller escalates
    os.killpg(pid, signal.SIGTERM)
    assert wait_gone([pid], 10)
    assert not alive(pid)
