"""Hosts installed outside metalctl join the lifecycle as ``installed``.

A site with machines its own installer built (or the lab's SSH test hosts, which have no
BMC) hands them to harden, audit and hand-off through this one documented door, not by
writing the store's tables: the provision stage owns ``installed`` whichever way a host
got there. The host's SSH identity must already be trusted (its known_hosts file given):
adopting never adds a host key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalctl.errors import InputError
from metalctl.model.node import DiscoveryRecord, Lifecycle, Status
from metalctl.store import Store, now

STAGE = "provision"


@dataclass(frozen=True)
class AdoptedHost:
    """An installed host: its name (the node's name from now on), its management
    address, how to reach it over SSH, and an optional profile plan already derived
    (``{"profile": NAME, "plan": {...}}``, as the profile stage stores it)."""

    name: str
    address: str
    known_hosts: Path
    ssh_user: str = "root"
    ssh_port: int = 22
    plan: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """The node's key: a host without a BMC is known by its address."""
        return self.record().key

    def record(self) -> DiscoveryRecord:
        # no BMC: no protocol, no port; the record says only where the host is
        return DiscoveryRecord(address=self.address, port=None, protocol=None,
                               status=Status.OK, name=self.name)


@dataclass
class AdoptResult:
    key: str
    ok: bool
    reason: str | None = None
    evidence: dict[str, Any] | None = None
    name: str | None = None


def adopt(hosts: Sequence[AdoptedHost], *, store: Store) -> list[AdoptResult]:
    """Record each host as an installed node (its install data as provision records
    it: address, SSH user and port, known_hosts); a node already in the store is not
    touched (its lifecycle and data are its own).

    Raises:
        InputError: a host's known_hosts file does not exist (nothing is recorded).
    """
    for host in hosts:
        if not host.known_hosts.is_file():
            raise InputError(str(host.known_hosts), "known_hosts",
                             f"does not exist: {host.name}'s host keys must be trusted "
                             "before it is adopted")
    results = []
    for host in hosts:
        new = store.add_node(host.key, Lifecycle.INSTALLED, host.record().to_dict(),
                             name=host.name, stage=STAGE, action="adopted")
        if not new:
            results.append(AdoptResult(host.key, True, "already in the store: left as it is",
                                       name=host.name))
            continue
        store.put_data(host.key, "install", {
            "address": host.address, "ssh_user": host.ssh_user, "ssh_port": host.ssh_port,
            "known_hosts": str(host.known_hosts), "via": "adopted", "finished_at": now()})
        if host.plan is not None:
            store.put_data(host.key, "plan", host.plan)
        results.append(AdoptResult(host.key, True, None, {"address": host.address},
                                   host.name))
    return results
