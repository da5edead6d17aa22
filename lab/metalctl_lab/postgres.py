"""A private PostgreSQL for the lab's Ironic (opt-in: ``RackSpec(db="postgresql")``).

Ironic with sqlite must run as one combined process and serialises every write
(its own start-up warning); under a batch of 100+ nodes its API calls queue for
tens of seconds. Production Ironic runs on MySQL/PostgreSQL. This starts a
throw-away cluster in the lab directory, listening on the lab's own loopback
address only, with trust authentication (nothing else can reach 127.N.4.2).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from metalctl.errors import LabError


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise LabError(reason="PostgreSQL server not installed (apt-get install postgresql)")
    return found[-1]


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def server_options(data: Path, address: str, port: int) -> str:
    """``pg_ctl -o``: one loopback address, the socket in the data directory (not
    ``/var/run/postgresql``), no huge pages (``try`` would take the hugepages a guest of
    the lab's Nova is meant to get), durability off (a throw-away cluster)."""
    return (f"-c listen_addresses={address} -p {port} -k {data} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c huge_pages=off")


def start(directory: Path, address: str, port: int = 5432) -> tuple[str, Path]:
    """initdb + start; returns (SQLAlchemy URL for Ironic, data directory)."""
    data = directory / "pgdata"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    proc = _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    if proc.returncode:
        raise LabError(reason=f"initdb failed: {proc.stderr[-500:]}")
    log = directory / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    opts = server_options(data, address, port)
    proc = _as_postgres([_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                         "start"])
    if proc.returncode:
        raise LabError(reason=f"PostgreSQL did not start: {log.read_text()[-500:]}")
    deadline = time.monotonic() + 30
    while _as_postgres([_bin("createdb"), "-h", address, "-p", str(port), "-U", "postgres",
                        "ironic"]).returncode:
        if time.monotonic() > deadline:
            raise LabError(reason="createdb ironic failed")
        time.sleep(0.3)
    return f"postgresql+psycopg2://postgres@{address}:{port}/ironic", data


def stop(data: Path) -> None:
    if data.exists():
        _as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
