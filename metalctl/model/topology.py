"""One model of a node's NUMA topology, whatever source filled it.

Derivation (:mod:`metalctl.profile.derive`) works on logical CPU ids, thread siblings,
memory per NUMA node and NIC placement. A source that does not know one of those
(a Redfish BMC never knows CPU ids) leaves it empty/``None`` and says so in
``unknown``; derivation then refuses with the missing fact named, rather than
guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Cpu:
    """One logical CPU (hardware thread)."""

    id: int
    core: int  # physical core id, unique per socket
    socket: int
    node: int  # NUMA node
    online: bool = True


@dataclass(frozen=True)
class NumaNode:
    """One NUMA node: its memory in MiB and the hugepages already allocated on it."""
    id: int
    memory_mib: int | None = None
    #: hugepages already allocated on this node, page size in KiB -> count
    hugepages: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Nic:
    """A network port with what the profile selectors and SR-IOV need."""

    name: str
    mac: str | None = None
    numa_node: int | None = None  # None: unknown (or a single-node host that reports -1)
    driver: str | None = None
    pci_address: str | None = None
    vendor_id: str | None = None  # 4 hex digits, no 0x
    device_id: str | None = None
    vf_device_id: str | None = None
    speed_mbps: int | None = None
    max_vfs: int | None = None  # sriov_totalvfs; 0 = no SR-IOV, None = unknown
    current_vfs: int | None = None


@dataclass(frozen=True)
class Topology:
    """A node's topology. ``unknown`` lists facts the source could not give."""

    cpus: tuple[Cpu, ...] = ()
    numa: tuple[NumaNode, ...] = ()
    nics: tuple[Nic, ...] = ()
    cpu_vendor: str | None = None  # "intel" | "amd" | other, lower case
    cpu_model: str | None = None
    cpu_flags: frozenset[str] = frozenset()
    source: str = "unknown"  # inband | redfish | ironic | file
    host: str | None = None
    #: live state, from in-band collection only (used to verify an applied plan)
    cmdline: str | None = None
    isolated: str | None = None  # /sys/devices/system/cpu/isolated
    unknown: tuple[str, ...] = ()

    # --- views used by derivation ------------------------------------------------------

    def online(self) -> list[Cpu]:
        """Return the online CPUs, sorted."""
        return sorted(c for c in self.cpus if c.online)

    def node_ids(self) -> list[int]:
        """Return every NUMA node id known from the nodes or the CPUs, sorted."""
        ids = {n.id for n in self.numa} | {c.node for c in self.cpus}
        return sorted(ids)

    def node(self, node_id: int) -> NumaNode:
        """Return the NUMA node ``node_id``, or an empty one when nothing is known of it."""
        for n in self.numa:
            if n.id == node_id:
                return n
        return NumaNode(id=node_id)

    def cores(self, node_id: int | None = None) -> list[tuple[int, ...]]:
        """Physical cores as sorted tuples of their online thread ids, ordered by the
        lowest thread id (the order TripleO and PPC walk cores in)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for c in self.online():
            if node_id is None or c.node == node_id:
                groups.setdefault((c.socket, c.core), []).append(c.id)
        return sorted((tuple(sorted(ids)) for ids in groups.values()), key=lambda t: t[0])

    def threads_per_core(self) -> int:
        """Return the largest number of threads on one core (0 without CPUs)."""
        cores = self.cores()
        return max((len(c) for c in cores), default=0)

    def summary(self) -> dict[str, Any]:
        """Return the counts shown by ``profile facts``: sockets, nodes, cores, threads, NICs."""
        return {
            "source": self.source, "host": self.host, "cpu_vendor": self.cpu_vendor,
            "sockets": len({c.socket for c in self.cpus}), "numa_nodes": len(self.node_ids()),
            "cores": len(self.cores()), "threads": len(self.online()),
            "threads_per_core": self.threads_per_core(),
            "memory_mib": {n.id: n.memory_mib for n in self.numa},
            "nics": len(self.nics), "unknown": list(self.unknown),
        }

    # --- serialisation (store, recorded facts) -----------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the topology as a JSON-ready dict (CPUs as compact rows)."""
        data = asdict(self)
        data["cpu_flags"] = sorted(self.cpu_flags)
        data["cpus"] = [[c.id, c.core, c.socket, c.node, c.online] for c in self.cpus]
        data["numa"] = [{"id": n.id, "memory_mib": n.memory_mib,
                         "hugepages": {str(k): v for k, v in n.hugepages.items()}}
                        for n in self.numa]
        data["unknown"] = list(self.unknown)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        """Rebuild a topology from what ``to_dict`` returned."""
        return cls(
            cpus=tuple(Cpu(*row) for row in data.get("cpus") or ()),
            numa=tuple(NumaNode(id=n["id"], memory_mib=n.get("memory_mib"),
                                hugepages={int(k): v for k, v in
                                           (n.get("hugepages") or {}).items()})
                       for n in data.get("numa") or ()),
            nics=tuple(Nic(**n) for n in data.get("nics") or ()),
            cpu_vendor=data.get("cpu_vendor"), cpu_model=data.get("cpu_model"),
            cpu_flags=frozenset(data.get("cpu_flags") or ()),
            source=data.get("source", "unknown"), host=data.get("host"),
            cmdline=data.get("cmdline"), isolated=data.get("isolated"),
            unknown=tuple(data.get("unknown") or ()),
        )
