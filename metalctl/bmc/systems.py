"""How the ComputerSystems behind one Redfish service relate: hosts, DPUs, managers, racks.

DMTF schemas: ComputerSystem v1.20+ (``SystemType: DPU``, ``Links.ManagedBy``,
``Links.Chassis``, ``Links.OffloadedNetworkDeviceFunctions``), Chassis v1.x
(``Links.ContainedBy``, ``Links.ComputerSystems``, ``Location.Placement.Rack``),
NetworkInterface v1.x (``Links.NetworkAdapter``).

* A DPU or SmartNIC system (``SystemType: DPU``) is part of its host, never a server of
  its own: enrolling it would give Ironic a node that cannot be deployed. It is attached
  to the host whose chassis contains the DPU's card (``ContainedBy``), or whose
  NetworkInterfaces point at an adapter in the DPU's chassis.
* A BMC that serves several systems (a blade enclosure) has several managers; a system's
  BMC firmware is that of its own manager (``Links.ManagedBy``), the first manager of the
  collection only when the service has just one.
* The rack is the nearest ``Location.Placement.Rack`` from the system's chassis up
  through ``ContainedBy``.
"""

from __future__ import annotations

import logging
from typing import Any

from metalctl.bmc.inventory import MAX_MEMBERS, RawReader

LOG = logging.getLogger(__name__)
#: chassis nesting followed upwards (card -> sled -> enclosure -> rack is 3)
MAX_CONTAINMENT = 4
#: longest BMC-supplied name, model, serial or rack kept (longer ones are not believed)
MAX_TEXT = 256


def is_dpu(system: dict[str, Any]) -> bool:
    """True for a DPU / SmartNIC system (``SystemType: DPU``)."""
    return str(system.get("SystemType") or "") == "DPU"


def _links(doc: dict[str, Any], name: str) -> list[str]:
    links = doc.get("Links") if isinstance(doc.get("Links"), dict) else {}
    value = links.get(name)
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    return [str(i["@odata.id"]).rstrip("/") for i in items
            if isinstance(i, dict) and isinstance(i.get("@odata.id"), str)]


def chassis_chain(reader: RawReader, system: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The system's chassis and the chassis containing them, nearest first."""
    out: list[tuple[str, dict[str, Any]]] = []
    todo = _links(system, "Chassis")[:1]
    while todo and len(out) < MAX_CONTAINMENT:
        path = todo.pop()
        if any(p == path for p, _ in out):
            break  # a loop in ContainedBy
        doc = reader.doc(path)
        if not doc:
            break
        out.append((path, doc))
        todo = _links(doc, "ContainedBy")[:1]
    return out


def rack(reader: RawReader, system: dict[str, Any]) -> str | None:
    """The nearest ``Location.Placement.Rack`` of the system's chassis, or None."""
    for _path, doc in chassis_chain(reader, system):
        location = doc.get("Location") if isinstance(doc.get("Location"), dict) else {}
        placement = location.get("Placement") if isinstance(location.get("Placement"),
                                                             dict) else {}
        value = _text(placement.get("Rack"))
        if value:
            return value
    return None


def manager_firmware(reader: RawReader, system: dict[str, Any],
                     managers: dict[str, dict[str, Any]]) -> str | None:
    """``FirmwareVersion`` of the system's own manager (``Links.ManagedBy``).

    ``managers`` maps each manager's path to its document. Without ``ManagedBy`` the
    service's only manager is the system's; with several and no link, it is unknown.
    """
    own = _links(system, "ManagedBy")
    if own:
        doc = managers.get(own[0]) or reader.doc(own[0])
    elif len(managers) == 1:
        doc = next(iter(managers.values()))
    else:
        LOG.debug("BMC %s: %s names no manager among %d; firmware unknown", reader.address,
                  system.get("@odata.id"), len(managers))
        return None
    value = doc.get("FirmwareVersion")
    return str(value) if isinstance(value, (str, int, float)) and value != "" else None


def dpu_host(reader: RawReader, dpu: dict[str, Any],
             hosts: list[dict[str, Any]]) -> int | None:
    """Index in ``hosts`` of the system the DPU sits in, or None when none says so."""
    dpu_chassis = [p for p, _ in chassis_chain(reader, dpu)]
    if not dpu_chassis:
        return None
    card = dpu_chassis[0]
    for i, host in enumerate(hosts):
        # the DPU's card sits directly in the host's own chassis (not merely in the same
        # enclosure as another blade)
        own = _links(host, "Chassis")[:1]
        if len(dpu_chassis) > 1 and own == dpu_chassis[1:2]:
            return i
    for i, host in enumerate(hosts):
        for iface in reader.members(host.get("NetworkInterfaces")):
            adapter = _links(iface, "NetworkAdapter")
            if adapter and adapter[0].startswith(card + "/"):
                return i
    return None


def _text(value: Any) -> str | None:
    """A BMC-supplied string kept as it is when it is a short string, else None."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT else None


def dpu_summary(dpu: dict[str, Any]) -> dict[str, Any]:
    """What the host's record says about one DPU (identity, model, offloaded functions)."""
    return {"system_id": _text(str(dpu.get("@odata.id") or "").rstrip("/")),
            "name": _text(dpu.get("Name")), "manufacturer": _text(dpu.get("Manufacturer")),
            "model": _text(dpu.get("Model")), "serial": _text(dpu.get("SerialNumber")),
            "offloaded_functions": [p for p in _links(dpu, "OffloadedNetworkDeviceFunctions")
                                    if len(p) <= MAX_TEXT][:MAX_MEMBERS]}
