"""Recorded Redfish trees served by sushy-tools' ``sushy-static`` (GET only), one tree
per address on 127.23.1.N:8000: vendor fixtures and DMTF's published mockups."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from metalctl_lab import peers


@contextlib.contextmanager
def serve(samples: Path, names: list[str], first: int, log_dir: Path
          ) -> Iterator[dict[str, str]]:
    """Serve ``samples/<name>/redfish/v1`` for each name on 127.23.1.<first + i>:8000;
    yields the address of each name once every tree answers."""
    procs, where = [], {}
    try:
        for i, name in enumerate(names, start=first):
            address = f"127.23.1.{i}"
            log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append((subprocess.Popen(
                [str(peers.peer_bin("sushy-static")), "-i", address, "-p", "8000",
                 "-m", str(samples / name / "redfish" / "v1")],
                stdout=log, stderr=subprocess.STDOUT), log))
            where[name] = address
        for name, address in where.items():
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"http://{address}:8000/redfish/v1/", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, f"sushy-static for {name} not up"
                time.sleep(0.2)
        yield where
    finally:
        for proc, log in procs:
            proc.terminate()
            proc.wait(10)
            log.close()
