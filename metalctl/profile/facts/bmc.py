"""Topology as far as a BMC knows it: counts, memory and NIC MACs, never CPU ids.

Redfish Processors give sockets/cores/threads but no logical CPU numbering, thread
siblings or NUMA placement; those stay unknown (listed in ``unknown``) and a
derivation that needs them says so.
"""

from __future__ import annotations

from metalctl.model.node import DiscoveryRecord
from metalctl.model.topology import Nic, Topology


def from_record(record: DiscoveryRecord) -> Topology:
    """Return the partial topology a BMC record gives: NICs, CPU vendor and model."""
    hw = record.hardware
    nics = tuple(Nic(name=n.name or n.mac, mac=n.mac, speed_mbps=n.link_speed_mbps,
                     vendor_id=n.pci_vendor_id, device_id=n.pci_device_id, max_vfs=n.max_vfs)
                 for n in hw.nics)
    vendor = None
    model = (hw.cpu.model or "").lower()
    if "intel" in model:
        vendor = "intel"
    elif "amd" in model:
        vendor = "amd"
    return Topology(nics=nics, cpu_vendor=vendor, cpu_model=hw.cpu.model,
                    source=record.protocol.value if record.protocol else "bmc",
                    host=record.address,
                    unknown=("cpus", "numa", "nics.numa_node", "nics.max_vfs"))
