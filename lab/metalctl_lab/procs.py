"""Starting and watching the lab's peer processes (daemons in their own sessions)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import requests

from metalctl.errors import LabError, WaitTimeout
from metalctl.poll import wait_for


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
    """Wait for the peer process ``pid`` to be ready (see :func:`wait_up`)."""
    wait_up(what, ready, lambda: alive(pid), log, timeout_s)


def wait_up(what: str, ready: Callable[[], bool], running: Callable[[], bool], log: Path,
            timeout_s: float, interval_s: float = 0.2) -> None:
    """Wait until ``ready()`` while ``running()`` says the process is still there, on
    metalctl's one wait (:func:`metalctl.poll.wait_for`).

    Raises:
        LabError: the process exited first (with the tail of its ``log``), or it was not
            ready within ``timeout_s``.
    """
    def check() -> bool:
        if ready():
            return True
        if not running():
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise LabError(reason=f"{what} exited during start-up; log {log}:\n{tail}")
        return False

    try:
        wait_for(check, timeout_s=timeout_s, interval_s=interval_s, what=what, ready=bool)
    except WaitTimeout:
        raise LabError(reason=f"{what} not ready within {timeout_s:g}s; see {log}") from None


def wait_gone(pids: Iterable[int], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Wait until none of ``pids`` is alive (children of ours reaped); False when one
    still is at the deadline (the caller escalates)."""
    pids = list(pids)
    try:
        wait_for(lambda: not any(alive(p) for p in pids), timeout_s=timeout_s,
                 interval_s=interval_s, what=f"pids {pids} to exit", ready=bool)
    except WaitTimeout:
        return False
    return True


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

