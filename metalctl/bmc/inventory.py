"""Hardware inventory from a Redfish service's raw payloads, read as untrusted input.

DMTF schemas: Processor v1.x (``ProcessorType``, ``Status.State``, ``TotalCores``),
ComputerSystem ``ProcessorSummary``/``MemorySummary``, Memory v1.x (``CapacityMiB``),
EthernetInterface v1.x, Manager ``HostInterfaces`` (HostInterface v1.x, DSP0270),
Chassis ``NetworkAdapters`` / ``NetworkDeviceFunctions`` / ``Ports`` (NetworkAdapter
v1.x), PCIeFunction v1.x (``VendorId``, ``DeviceId``).

What real servers serve, and this module reads right:

* absent sockets are members of ``Processors`` with ``Status.State: Absent``, and GPUs
  or FPGAs are members too (``ProcessorType`` GPU/FPGA/Accelerator): only present CPUs
  count; ``ProcessorSummary`` is used only when there is no collection;
* ``EthernetInterfaces`` of a system also list VLAN sub-interfaces (same MAC as their
  parent) and the Redfish host interface (the USB/virtual NIC between host and BMC on
  Dell iDRAC, HPE iLO, Lenovo XCC): only physical ports become NICs;
* PCI ids and SR-IOV capacity are not on the EthernetInterface but on the chassis'
  NetworkAdapters; they are joined to the system's ports by MAC.

Every collection is bounded (:data:`MAX_MEMBERS`): a BMC listing 3,000 processors is
refused as a protocol error, not recorded as 3,000 sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from metalctl.errors import BmcProtocolError, MetalctlError
from metalctl.model.hardware import CpuFacts, DiskFacts, NicFacts

LOG = logging.getLogger(__name__)
SOURCE = "redfish"

#: far above any real server (8 sockets, 64 DIMM slots, 32 ports, 48 drives)
MAX_MEMBERS = 256
#: names and descriptions that mark a host interface on systems that do not link it
#: from the manager (Lenovo XCC "ToManager", Dell "USB NIC", HPE "Virtual NIC")
_HOST_INTERFACE_HINTS = ("tomanager", "host interface", "hostinterface", "usb nic",
                         "virtual nic", "ipmi over usb", "ncsi over usb")


Getter = Callable[[str], dict[str, Any]]


class RawReader:
    """GETs JSON documents through a sushy connector (the guarded transport)."""

    def __init__(self, get: Getter, address: str) -> None:
        self._get = get
        self.address = address

    def doc(self, path: str | None) -> dict[str, Any]:
        """The document at ``path``, or {} when absent, failing or not an object."""
        if not path or not isinstance(path, str):
            return {}
        try:
            data = self._get(path)
        except MetalctlError:
            raise  # a link elsewhere or the deadline: the whole address fails
        except Exception as exc:  # noqa: BLE001 - optional resource: absent is unknown
            LOG.debug("BMC %s: %s unavailable: %s", self.address, path, type(exc).__name__)
            return {}
        return data if isinstance(data, dict) else {}

    def members(self, collection: Any) -> list[dict[str, Any]]:
        """Every member document of a collection link (``{"@odata.id": ...}``)."""
        path = collection.get("@odata.id") if isinstance(collection, dict) else None
        coll = self.doc(path)
        links = coll.get("Members")
        if not isinstance(links, list):
            return []
        if len(links) > MAX_MEMBERS:
            raise BmcProtocolError(address=self.address,
                                   reason=f"{path} lists {len(links)} members (more than "
                                          f"{MAX_MEMBERS}); refusing to read them")
        return [self.doc(m.get("@odata.id")) for m in links if isinstance(m, dict)]


def _state(doc: dict[str, Any]) -> str | None:
    status = doc.get("Status")
    return status.get("State") if isinstance(status, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def cpu(reader: RawReader, system: dict[str, Any]) -> CpuFacts:
    """Sockets, cores and threads of the present CPUs (not accelerators)."""
    if isinstance(system.get("Processors"), dict):
        procs = reader.members(system["Processors"])
        if procs:
            cpus = [p for p in procs if _state(p) != "Absent"
                    and str(p.get("ProcessorType") or "CPU") == "CPU"]
            cores = [_int(p.get("TotalCores")) for p in cpus]
            threads = [_int(p.get("TotalThreads")) for p in cpus]
            arch = next((p.get("ProcessorArchitecture") for p in cpus
                         if p.get("ProcessorArchitecture")), None)
            instruction = next((p.get("InstructionSet") for p in cpus
                                if p.get("InstructionSet")), None)
            return CpuFacts(
                sockets=len(cpus),
                cores=sum(c for c in cores if c is not None) if None not in cores else None,
                threads=sum(t for t in threads if t is not None) if None not in threads
                else None,
                model=next((str(p["Model"]) for p in cpus if p.get("Model")), None),
                arch=str(arch or instruction) if (arch or instruction) else None,
                source=SOURCE)
    summary = system.get("ProcessorSummary")
    if isinstance(summary, dict) and summary:
        return CpuFacts(sockets=_int(summary.get("Count")), cores=_int(summary.get("CoreCount")),
                        threads=_int(summary.get("LogicalProcessorCount")),
                        model=summary.get("Model") if isinstance(summary.get("Model"), str)
                        else None, source=SOURCE)
    return CpuFacts()


def memory_gib(reader: RawReader, system: dict[str, Any]) -> float | None:
    """``MemorySummary.TotalSystemMemoryGiB``, else the sum of present DIMMs."""
    summary = system.get("MemorySummary")
    if isinstance(summary, dict):
        total = summary.get("TotalSystemMemoryGiB")
        if isinstance(total, (int, float)) and not isinstance(total, bool) and total > 0:
            return float(total)
    if isinstance(system.get("Memory"), dict):
        dimms = [d for d in reader.members(system["Memory"]) if _state(d) != "Absent"]
        mib = [_int(d.get("CapacityMiB")) for d in dimms]
        if dimms and None not in mib:
            return round(sum(m for m in mib if m is not None) / 1024, 1)
    return None


def _mac(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().lower().replace("-", ":")
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        return None
    return text


def host_interface_macs(reader: RawReader, managers: list[dict[str, Any]]) -> set[str]:
    """MACs of the system-side NICs of every manager's Redfish host interface."""
    out: set[str] = set()
    for manager in managers:
        for hi in reader.members(manager.get("HostInterfaces")):
            for nic in reader.members(hi.get("HostEthernetInterfaces")):
                mac = _mac(nic.get("PermanentMACAddress")) or _mac(nic.get("MACAddress"))
                if mac:
                    out.add(mac)
    return out


def _looks_like_host_interface(nic: dict[str, Any]) -> bool:
    # EthernetInterface v1.6+: the Redfish host interface is "Virtual" (Supermicro usb0)
    if str(nic.get("EthernetInterfaceType") or "") == "Virtual":
        return True
    text = " ".join(str(nic.get(k) or "") for k in ("Id", "Name", "Description")).lower()
    if any(h in text for h in _HOST_INTERFACE_HINTS):
        return True
    addresses = nic.get("IPv4Addresses")
    return isinstance(addresses, list) and any(
        isinstance(a, dict) and str(a.get("Address", "")).startswith("169.254.")
        and "host" in text for a in addresses)


def adapters_by_mac(reader: RawReader, chassis: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """PCI ids and SR-IOV capacity of every port the chassis' NetworkAdapters list."""
    out: dict[str, dict[str, Any]] = {}
    for ch in chassis:
        for adapter in reader.members(ch.get("NetworkAdapters")):
            max_vfs, sriov = None, None
            for ctl in adapter.get("Controllers") or []:
                caps = (ctl.get("ControllerCapabilities") or {}) if isinstance(ctl, dict) \
                    else {}
                offload = caps.get("VirtualizationOffload") or {}
                if isinstance(offload, dict) and offload:
                    sriov = bool(offload.get("SRIOV")) or sriov
                    vf = offload.get("VirtualFunction") or {}
                    max_vfs = _int(vf.get("DeviceMaxCount")) if isinstance(vf, dict) \
                        else max_vfs
            for fn in reader.members(adapter.get("NetworkDeviceFunctions")):
                eth = fn.get("Ethernet") or {}
                mac = _mac(eth.get("PermanentMACAddress")) or _mac(eth.get("MACAddress")) \
                    if isinstance(eth, dict) else None
                if not mac:
                    continue
                pcie = (fn.get("Links") or {}).get("PCIeFunction") or {}
                pci = reader.doc(pcie.get("@odata.id")) if isinstance(pcie, dict) else {}
                # the function's own VF budget (HPE iLO 6), else the adapter's
                vfs = _int(fn.get("MaxVirtualFunctions"))
                vfs = vfs if vfs is not None else max_vfs
                out[mac] = {"pci_vendor_id": _hex(pci.get("VendorId")),
                            "pci_device_id": _hex(pci.get("DeviceId")),
                            "sriov_capable": bool(vfs) if vfs is not None else sriov,
                            "max_vfs": vfs}
    return out


def _hex(value: Any) -> str | None:
    if not isinstance(value, str) or not value.lower().startswith("0x") or len(value) > 10:
        return None
    return value.lower()


def nics(reader: RawReader, system: dict[str, Any], hidden: set[str],
         adapters: dict[str, dict[str, Any]]) -> tuple[NicFacts, ...]:
    """The system's physical ports (no VLANs, no host interface), with adapter facts.

    ``hidden`` are the host interfaces' MACs (:func:`host_interface_macs`) and
    ``adapters`` the chassis' adapter facts by MAC (:func:`adapters_by_mac`), read once
    per BMC.
    """
    out: list[NicFacts] = []
    seen: set[str] = set()
    members = reader.members(system.get("EthernetInterfaces"))
    macs = [_mac(n.get("PermanentMACAddress")) or _mac(n.get("MACAddress")) for n in members]
    for nic, mac in zip(members, macs, strict=True):
        if not mac:
            continue
        vlan = nic.get("VLAN")
        if isinstance(vlan, dict) and vlan.get("VLANEnable") and macs.count(mac) > 1:
            continue  # a VLAN sub-interface repeating its parent's MAC, listed in any order
        if mac in seen:
            continue  # any other repeat of a MAC already recorded
        if mac in hidden or _looks_like_host_interface(nic):
            LOG.debug("BMC %s: %s is the Redfish host interface; not a NIC",
                      reader.address, mac)
            continue
        seen.add(mac)
        extra = adapters.get(mac, {})
        status = nic.get("Status") if isinstance(nic.get("Status"), dict) else {}
        out.append(NicFacts(
            mac=mac, name=str(nic.get("Id") or nic.get("Name") or "") or None,
            link_speed_mbps=_int(nic.get("SpeedMbps")),
            link_status=str(nic.get("LinkStatus") or status.get("State") or "") or None,
            pci_vendor_id=extra.get("pci_vendor_id"), pci_device_id=extra.get("pci_device_id"),
            sriov_capable=extra.get("sriov_capable"), max_vfs=extra.get("max_vfs"),
            source=SOURCE))
    return tuple(out)


# --- storage (Storage v1.x, Drive v1.x, SimpleStorage v1.x), read from the raw JSON -------


def _gib(size: Any) -> float | None:
    return round(size / 2**30, 1) if _int(size) else None


def _drive(doc: dict[str, Any]) -> DiskFacts:
    return DiskFacts(name=_str(doc.get("Name")), model=_str(doc.get("Model")),
                     serial=_str(doc.get("SerialNumber")),
                     media_type=_str(doc.get("MediaType")),
                     size_gib=_gib(doc.get("CapacityBytes")), source=SOURCE)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def disks(reader: RawReader, system: dict[str, Any]) -> tuple[DiskFacts, ...]:
    """Every present drive of the system's ``Storage``, else its ``SimpleStorage`` devices.

    Read from the payloads themselves: sushy's Storage model refuses DMTF's own mockups
    (a ``MissingAttributeError`` on a field metalctl does not need), and a refused
    collection used to mean no drives at all. A storage member or drive link that cannot
    be read is logged at WARNING with its path, and the other drives are still recorded.
    """
    out: list[DiskFacts] = []
    storage = system.get("Storage")
    if isinstance(storage, dict) and storage.get("@odata.id"):
        for link, ctl in _linked_members(reader, storage, "storage subsystem"):
            drives = ctl.get("Drives") if isinstance(ctl.get("Drives"), list) else []
            if len(drives) > MAX_MEMBERS:
                raise BmcProtocolError(address=reader.address,
                                       reason=f"{link} lists {len(drives)} drives")
            for d in drives:
                path = d.get("@odata.id") if isinstance(d, dict) else None
                doc = reader.doc(path)
                if not doc:
                    LOG.warning("BMC %s: drive %s of %s could not be read; not recorded",
                                reader.address, path, link)
                elif _state(doc) != "Absent":
                    out.append(_drive(doc))
        if out:
            return tuple(out)
    simple = system.get("SimpleStorage")
    if isinstance(simple, dict) and simple.get("@odata.id"):
        for _link, ctl in _linked_members(reader, simple, "simple storage controller"):
            for dev in ctl.get("Devices") or []:
                if isinstance(dev, dict) and _state(dev) != "Absent":  # empty bays
                    out.append(_drive(dev))
    return tuple(out)


def _linked_members(reader: RawReader, collection: dict[str, Any],
                    what: str) -> list[tuple[str, dict[str, Any]]]:
    """``(path, document)`` of each member; an unreadable one is a WARNING, not a gap."""
    coll = reader.doc(collection.get("@odata.id"))
    links = coll.get("Members") if isinstance(coll.get("Members"), list) else []
    if not coll:
        LOG.warning("BMC %s: %s collection %s could not be read; its drives are unknown",
                    reader.address, what, collection.get("@odata.id"))
    if len(links) > MAX_MEMBERS:
        raise BmcProtocolError(address=reader.address,
                               reason=f"{collection.get('@odata.id')} lists {len(links)} members")
    out = []
    for m in links:
        path = m.get("@odata.id") if isinstance(m, dict) else None
        doc = reader.doc(path)
        if doc:
            out.append((str(path), doc))
        else:
            LOG.warning("BMC %s: %s %s could not be read; its drives are not recorded",
                        reader.address, what, path)
    return out


# --- NICs behind NetworkInterfaces (NetworkInterface v1.x): hosts whose ports are on a
# --- SmartNIC/DPU list no EthernetInterfaces, only the adapter's device functions ---------


def network_interface_nics(reader: RawReader, system: dict[str, Any],
                           adapters: dict[str, dict[str, Any]]) -> tuple[NicFacts, ...]:
    """The host's ports as NetworkDeviceFunctions of its ``NetworkInterfaces``."""
    out: list[NicFacts] = []
    seen: set[str] = set()
    for iface in reader.members(system.get("NetworkInterfaces")):
        for fn in reader.members(iface.get("NetworkDeviceFunctions")):
            eth = fn.get("Ethernet") if isinstance(fn.get("Ethernet"), dict) else {}
            mac = _mac(eth.get("PermanentMACAddress")) or _mac(eth.get("MACAddress"))
            if not mac or mac in seen:
                continue
            seen.add(mac)
            extra = adapters.get(mac, {})
            out.append(NicFacts(
                mac=mac, name=_str(fn.get("Id")) or _str(fn.get("Name")),
                link_status=_str((fn.get("Status") or {}).get("State"))
                if isinstance(fn.get("Status"), dict) else None,
                pci_vendor_id=extra.get("pci_vendor_id"),
                pci_device_id=extra.get("pci_device_id"),
                sriov_capable=extra.get("sriov_capable"), max_vfs=extra.get("max_vfs"),
                source=SOURCE))
    return tuple(out)
