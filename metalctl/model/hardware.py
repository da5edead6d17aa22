"""Hardware facts as seen by a BMC (and, later, in-band or by Ironic inspection).

Every optional fact is ``None`` when the source did not say; nothing is guessed.
Each fact group records its ``source`` (``redfish``, ``ipmi``, ``inband``,
``ironic``) so later stages know how far to trust it. Vendor enum values that
metalctl does not map are kept raw rather than dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CpuFacts:
    """CPU package summary. ``cores``/``threads`` are totals over all sockets."""

    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None
    model: str | None = None
    arch: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class NicFacts:
    """A host network port as the BMC reports it."""

    mac: str
    name: str | None = None
    link_speed_mbps: int | None = None
    link_status: str | None = None
    pci_vendor_id: str | None = None
    pci_device_id: str | None = None
    sriov_capable: bool | None = None
    max_vfs: int | None = None
    source: str | None = None


@dataclass(frozen=True)
class DiskFacts:
    """A drive or volume, when the BMC exposes storage."""

    name: str | None = None
    size_gib: float | None = None
    media_type: str | None = None
    model: str | None = None
    serial: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Hardware:
    """Everything known about one system's hardware."""

    cpu: CpuFacts = field(default_factory=CpuFacts)
    memory_gib: float | None = None
    nics: tuple[NicFacts, ...] = ()
    disks: tuple[DiskFacts, ...] = ()
    #: NUMA node count when the BMC says (Redfish rarely does)
    numa_nodes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the hardware facts as a plain dict."""
        return {
            "cpu": asdict(self.cpu),
            "memory_gib": self.memory_gib,
            "nics": [asdict(n) for n in self.nics],
            "disks": [asdict(d) for d in self.disks],
            "numa_nodes": self.numa_nodes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hardware:
        """Rebuild hardware facts from what ``to_dict`` returned."""
        return cls(
            cpu=CpuFacts(**(data.get("cpu") or {})),
            memory_gib=data.get("memory_gib"),
            nics=tuple(NicFacts(**n) for n in data.get("nics") or ()),
            disks=tuple(DiskFacts(**d) for d in data.get("disks") or ()),
            numa_nodes=data.get("numa_nodes"),
        )
