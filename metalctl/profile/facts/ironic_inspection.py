"""Topology from Ironic inspection data (ironic-python-agent's ``numa_topology``
collector plus the ``inventory``), as ``baremetal node inventory save`` returns it.

Only in-band inspection fills ``numa_topology``; Redfish out-of-band inspection does
not, and then derivation reports the missing CPU facts instead of guessing.
"""

from __future__ import annotations

from typing import Any

from metalctl.errors import InputError
from metalctl.model.topology import Cpu, Nic, NumaNode, Topology

SOURCE = "ironic"


def parse(data: dict[str, Any], path: str = "<inspection data>") -> Topology:
    """Return the topology in Ironic inspection data (IPA's ``numa_topology`` and inventory).

    Raises:
        InputError: an entry of the data is malformed; ``path`` names the source.
    """
    inventory = data.get("inventory") or {}
    plugin = data.get("plugin_data") or data
    numa = plugin.get("numa_topology") or {}
    cpus: list[Cpu] = []
    unknown: list[str] = []
    # IPA reports thread siblings per logical CPU; a core is one sibling group
    core_of: dict[tuple[int, ...], int] = {}
    for i, entry in enumerate(numa.get("cpus") or []):
        try:
            cpu_id, node = int(entry["cpu"]), int(entry["numa_node"])
            siblings = tuple(sorted(int(s) for s in entry.get("thread_siblings") or [cpu_id]))
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"numa_topology.cpus[{i}]",
                             "needs cpu, numa_node and thread_siblings") from None
        core = core_of.setdefault(siblings, len(core_of))
        # IPA does not report sockets; NUMA node stands in (one node per socket unless
        # sub-NUMA clustering, where cores still never span nodes)
        cpus.append(Cpu(id=cpu_id, core=core, socket=node, node=node))
    nodes = [NumaNode(id=int(r["numa_node"]), memory_mib=int(r["size_kb"]) // 1024)
             for r in numa.get("ram") or []]
    nic_numa = {n.get("name"): n.get("numa_node") for n in numa.get("nics") or []}
    nics = []
    for iface in inventory.get("interfaces") or []:
        name = iface.get("name")
        if not name:
            continue
        nics.append(Nic(name=name, mac=(iface.get("mac_address") or "").lower() or None,
                        numa_node=nic_numa.get(name), driver=iface.get("driver"),
                        pci_address=iface.get("pci_address"),
                        vendor_id=_hex(iface.get("vendor")), device_id=_hex(iface.get("product")),
                        speed_mbps=iface.get("speed_mbps"), max_vfs=None))
    if not cpus:
        unknown.append("cpus")
    if not nodes:
        unknown.append("numa")
    if nics:
        unknown.append("nics.max_vfs")  # IPA does not report sriov_totalvfs
    cpu = inventory.get("cpu") or {}
    vendor = None
    model = cpu.get("model_name")
    if model:
        vendor = "intel" if "intel" in model.lower() else "amd" if "amd" in model.lower() else None
    return Topology(cpus=tuple(sorted(cpus)), numa=tuple(sorted(nodes, key=lambda n: n.id)),
                    nics=tuple(nics), cpu_vendor=vendor, cpu_model=model,
                    cpu_flags=frozenset(cpu.get("flags") or ()), source=SOURCE,
                    unknown=tuple(unknown))


def _hex(value: Any) -> str | None:
    if not value:
        return None
    text = str(value).lower()
    return text[2:] if text.startswith("0x") else text
