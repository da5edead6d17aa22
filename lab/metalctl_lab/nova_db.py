"""The lab Nova's databases (API, cell0, cell1) and Placement's, on a private PostgreSQL.

sqlite, the lab's first choice, met "database is locked" in the conductor under a guest
boot (a canary not deleted in 120 s) and in every second live migration, and forced the
hand-offs of a rack one at a time (docs/decisions.md). This cluster
(:mod:`metalctl_lab.postgres`) is linked from ``<lab>/pgdata``, listens on a Unix socket
only (the Nova services all run on this machine) and has ``huge_pages = off``; its log
is copied to ``<lab>/logs/postgres.log`` when the lab stops.

The schema only depends on the installed releases, and ``nova-manage``/
``placement-manage`` take 13 s on an idle machine (over 60 s on a busy one): a cluster
with the four databases synced is cached, stopped, in :func:`cache_dir`, and a lab
starts from a copy of it. The copy's cell mappings are then pointed at the lab's own
socket and message bus (:func:`map_cells`); the cache holds placeholders, never a lab's
password.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from metalctl.errors import LabError
from metalctl_lab import nova_venv, postgres

DATABASES = ("nova_api", "nova_cell0", "nova_cell1", "placement")


class Lab(Protocol):
    """What this module needs of a :class:`metalctl_lab.nova.NovaLab`."""

    pids: dict[str, int]

    @property
    def dir(self) -> Path: ...

    def log(self, name: str) -> Path: ...

    def transport_url(self) -> str: ...


def data_dir(lab: Lab) -> Path:
    return postgres.data_dir(lab.dir)


def url(lab: Lab, database: str) -> str:
    """The SQLAlchemy URL of ``database`` for the lab's services (its Unix socket)."""
    return postgres.url(data_dir(lab), database)


def cache_dir() -> Path:
    """Synced, empty databases of this Nova venv and PostgreSQL release (a stopped
    cluster), keyed by both."""
    key = hashlib.sha256("\n".join([*nova_venv.NOVA_REQUIREMENTS, postgres.version()])
                         .encode()).hexdigest()[:12]
    return nova_venv.venv_dir().parent / "nova-pg" / key


def start(lab: Lab, sync: Callable[[], None]) -> None:
    """Start the lab's cluster with its four databases synced: a copy of the cache when
    it has one, else created and synced by ``sync`` (the ``*-manage`` commands), and then
    cached. The postmaster is recorded as ``pids["postgres"]``.

    Raises:
        LabError: PostgreSQL or a sync failed; names the log.
    """
    data, cache = postgres.prepare(lab.dir), cache_dir() / "data"
    if cache.is_dir():
        _copy(cache, data)
        lab.pids["postgres"] = postgres.start_cluster(data)
        map_cells(lab)
        return
    postgres.initdb(data)
    lab.pids["postgres"] = postgres.start_cluster(data)
    for name in DATABASES:
        postgres.createdb(data, name)
    sync()
    _store(lab, cache.parent)
    lab.pids["postgres"] = postgres.start_cluster(data)
    map_cells(lab)


def _copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    # cp -a keeps the postgres user's ownership and the 0700 modes initdb set
    proc = subprocess.run(["cp", "-a", str(src), str(dst)], capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        raise LabError(reason=f"copying the cached Nova databases failed: {proc.stderr[-300:]}")


def _store(lab: Lab, cache: Path) -> None:
    """Placeholders into the cell mappings, stop, copy the cluster into the cache."""
    map_cells(lab, placeholders=True)
    postgres.shutdown(data_dir(lab))
    staging = cache.with_name(cache.name + f".tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    _copy(data_dir(lab), staging / "data")
    try:
        staging.rename(cache)
    except OSError:  # another run cached it first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def map_cells(lab: Lab, *, placeholders: bool = False) -> None:
    """Point the API database's cell mappings at the lab's cell databases and message bus
    (or, for the cache, at nothing)."""
    cell0 = "sqlite:///" if placeholders else url(lab, "nova_cell0")
    cell1 = "sqlite:///" if placeholders else url(lab, "nova_cell1")
    transport = "none:///" if placeholders else lab.transport_url()
    # values quoted by _literal (standard_conforming_strings: a quote doubled is all)
    sql = ("UPDATE cell_mappings SET database_connection = {cell1}, transport_url = {bus} "
           "WHERE name = 'cell1';\nUPDATE cell_mappings SET database_connection = {cell0} "
           "WHERE name = 'cell0';\n")
    postgres.psql(data_dir(lab), "nova_api", sql.format(
        cell1=_literal(cell1), bus=_literal(transport), cell0=_literal(cell0)))


def sync_all(lab: Lab, manage: Callable[[str, list[str]], None], nova_conf: Path,
             placement_conf: Path) -> None:
    """Nova's and Placement's schema, at once (each ``*-manage`` is a process of its own)."""
    nova_manage = [str(nova_venv.nova_bin("nova-manage")), "--config-file", str(nova_conf)]

    def nova() -> None:
        manage("nova-manage api_db sync", [*nova_manage, "api_db", "sync"])
        manage("nova-manage cell_v2 map_cell0",
               [*nova_manage, "cell_v2", "map_cell0", "--database_connection",
                url(lab, "nova_cell0")])
        manage("nova-manage cell_v2 create_cell",
               [*nova_manage, "cell_v2", "create_cell", "--name", "cell1"])
        manage("nova-manage db sync", [*nova_manage, "db", "sync"])

    def placement() -> None:
        manage("placement-manage db sync",
               [str(nova_venv.nova_bin("placement-manage")), "--config-file",
                str(placement_conf), "db", "sync"])

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(nova), pool.submit(placement)]:
            future.result()


def remove(lab: Lab) -> None:
    """Stop the lab's cluster (fast: its clients, Nova's services, are gone), keep its
    log in the lab's ``logs/`` and delete it."""
    postgres.stop(data_dir(lab), keep_log=lab.log("postgres"))
    postgres.remove(lab.dir)
