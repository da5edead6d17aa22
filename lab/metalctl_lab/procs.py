"""Starting and watching the lab's peer processes (daemons in their own sessions)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

from metalctl.errors import LabError


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})
    return proc.pid


def wait_ready(what: str, ready: Callable[[], bool], pid: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive(pid):
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise LabError(reason=f"{what} exited during start-up; log {log}:\n{tail}")
        time.sleep(0.2)
    raise LabError(reason=f"{what} not ready within {timeout_s:g}s; see {log}")


def https_ready(url: str, ca: Path) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, verify=str(ca), timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False
    return check


def http_ready(url: str) -> Callable[[], bool]:
    """Ready once ``url`` answers 200 over plain HTTP (a lab service on loopback)."""
    def check() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False
    return check


def build_in_mount_ns(what: str, script: str, *args: str) -> None:
    """Run ``script`` (``sh -eu``, with ``args`` as ``$1``...) in a private mount
    namespace: the overlays an image build mounts vanish with it, whatever happens.

    Raises:
        LabError: the script failed; ``what`` and the tail of its stderr say how.
    """
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                           "/bin/sh", "-euc", script, "build", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(reason=f"{what} failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-400:]}")

