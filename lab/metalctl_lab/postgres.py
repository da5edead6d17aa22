"""A private PostgreSQL for the lab: Ironic's (opt-in: ``RackSpec(db="postgresql")``) and
the lab Nova's (:mod:`metalctl_lab.nova_db`, always).

Ironic with sqlite must run as one combined process and serialises every write
(its own start-up warning); under a batch of 100+ nodes its API calls queue for
tens of seconds. Nova on sqlite met "database is locked" under a guest boot and a live
migration (docs/decisions.md). Production Ironic and Nova run on MySQL/PostgreSQL.

Each cluster is a throw-away one with trust authentication, reached either on one
loopback address of the lab's own (Ironic: nothing else can reach 127.N.4.2) or, with no
address, on a Unix socket alone (Nova: its services all run on this machine, and no TCP
port can clash with another lab's). The server runs as the ``postgres`` user, which
cannot enter a lab directory under a 0700 parent (pytest's ``/tmp/pytest-of-root``), so
the cluster, its socket and its log live in :func:`runtime_dir`, a 0700 directory of
``postgres`` under /tmp named after the lab directory (a short path, as a socket address
must be); the lab directory links to it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from metalctl.errors import LabError

PORT = 5432


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise LabError(reason="PostgreSQL server not installed (apt-get install postgresql)")
    return found[-1]


def version() -> str:
    """The major version of the newest PostgreSQL server installed (``15``)."""
    return Path(_bin("postgres")).parent.parent.name


def _as_postgres(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False, input=stdin)


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def runtime_dir(directory: Path) -> Path:
    """The ``postgres`` user's directory for the cluster of lab directory ``directory``."""
    key = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"metalctl-pg-{key}"


def data_dir(directory: Path) -> Path:
    """The cluster of lab directory ``directory`` (``<directory>/pgdata`` links to it)."""
    return runtime_dir(directory) / "data"


def prepare(directory: Path) -> Path:
    """An empty :func:`runtime_dir` for ``directory`` (the old one removed), linked from
    ``<directory>/pgdata``; returns the data directory (not created)."""
    run = runtime_dir(directory)
    remove(directory)
    run.mkdir(mode=0o700)
    _own(run)
    link = Path(directory) / "pgdata"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(run)
    return run / "data"


def remove(directory: Path) -> None:
    """Delete the cluster of ``directory`` (stop it first) and its link."""
    shutil.rmtree(runtime_dir(directory), ignore_errors=True)
    (Path(directory) / "pgdata").unlink(missing_ok=True)


def socket_dir(data: Path) -> Path:
    """Where the server's Unix socket lives: beside its data directory."""
    return data.parent


def log_file(data: Path) -> Path:
    return data.parent / "postgres.log"


def server_options(data: Path, address: str | None, port: int) -> str:
    """``pg_ctl -o``: one loopback address or none (the Unix socket alone), the socket not
    in ``/var/run/postgresql``, no huge pages (``try`` would take the hugepages a guest
    of the lab's Nova is meant to get), durability off (a throw-away cluster)."""
    listen = address or "''"
    return (f"-c listen_addresses={listen} -p {port} -k {socket_dir(data)} "
            "-c unix_socket_permissions=0700 -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c huge_pages=off")


def initdb(data: Path) -> None:
    """A new, empty cluster in ``data`` (in a :func:`prepare` d directory).

    Raises:
        LabError: initdb failed.
    """
    proc = _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                         "--no-sync"])
    if proc.returncode:
        raise LabError(reason=f"initdb failed: {proc.stderr[-500:]}")


def start_cluster(data: Path, address: str | None = None, port: int = PORT) -> int:
    """Start the cluster in ``data`` and wait until it accepts connections.

    Returns:
        The postmaster's pid (the leader of its own session: ``pg_ctl`` calls setsid).

    Raises:
        LabError: it did not start; quotes the tail of its log.
    """
    log = log_file(data)
    proc = _as_postgres([_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o",
                         server_options(data, address, port), "-w", "start"])
    if proc.returncode:
        raise LabError(reason=f"PostgreSQL did not start: {log.read_text()[-500:]}")
    return int((data / "postmaster.pid").read_text().split()[0])


def _host(data: Path, address: str | None) -> str:
    return address or str(socket_dir(data))


def createdb(data: Path, name: str, address: str | None = None, port: int = PORT,
             timeout_s: float = 30) -> None:
    """Create database ``name`` (retried: a cluster that just started may refuse at first).

    Raises:
        LabError: still refused after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while _as_postgres([_bin("createdb"), "-h", _host(data, address), "-p", str(port),
                        "-U", "postgres", name]).returncode:
        if time.monotonic() > deadline:
            raise LabError(reason=f"createdb {name} failed")
        time.sleep(0.3)


def psql(data: Path, database: str, sql: str, port: int = PORT) -> str:
    """Run ``sql`` (given on stdin: no value shows in the process list) against
    ``database`` of a socket-only cluster; returns psql's output.

    Raises:
        LabError: psql failed (its error in the message).
    """
    proc = _as_postgres([_bin("psql"), "-h", str(socket_dir(data)), "-p", str(port), "-U",
                         "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-f", "-"],
                        stdin=sql)
    if proc.returncode:
        raise LabError(reason=f"psql on {database} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def url(data: Path, database: str, address: str | None = None, port: int = PORT) -> str:
    """The SQLAlchemy URL of ``database`` (over the Unix socket when no ``address``)."""
    if address:
        return f"postgresql+psycopg2://postgres@{address}:{port}/{database}"
    return f"postgresql+psycopg2://postgres@/{database}?host={socket_dir(data)}&port={port}"


def start(directory: Path, address: str, port: int = PORT) -> tuple[str, Path]:
    """initdb + start + ``createdb ironic``; returns (SQLAlchemy URL for Ironic, data
    directory)."""
    data = prepare(directory)
    initdb(data)
    start_cluster(data, address, port)
    createdb(data, "ironic", address, port)
    return url(data, "ironic", address, port), data


def shutdown(data: Path) -> None:
    """Fast shutdown (clients are disconnected) of the cluster in ``data``, if running."""
    if (data / "postmaster.pid").exists():
        _as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


def stop(data: Path, keep_log: Path | None = None) -> None:
    """:func:`shutdown`, then the cluster's :func:`runtime_dir` deleted (its log copied
    to ``keep_log`` first)."""
    shutdown(data)
    log = log_file(data)
    if keep_log and log.exists():
        shutil.copyfile(log, keep_log)
    if data.parent.name.startswith("metalctl-pg-"):
        shutil.rmtree(data.parent, ignore_errors=True)
