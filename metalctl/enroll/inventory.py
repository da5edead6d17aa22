"""Site inventories people already have, read into :class:`DesiredNode` lists.

* ``openstack baremetal create`` files (YAML or JSON): ``{"nodes": [...]}`` where
  each node is an Ironic node body plus ``ports: [{address: MAC}]``
  (python-ironicclient ``v1/create_resources.py``; only ``chassis``/``nodes`` at
  the top level).
* TripleO ``instackenv.json`` / ``nodes.yaml``: ``pm_type``, ``pm_addr``,
  ``pm_user``, ``pm_password``, ``pm_port``, ``pm_system_id`` (Redfish),
  ``ports``/legacy ``mac``, ``cpu``, ``memory`` (MiB), ``disk`` (GiB), ``arch``...

Validation follows TripleO's import (tripleo-common ``utils/nodes.py``): unknown
fields, invalid or repeated MACs, repeated BMC identities and repeated names are
errors, each naming the file and the field (``nodes[3].ports[0].address``).
Nothing is sent to Ironic until the whole file validates. Passwords are wrapped in
:class:`Secret` as they are read and never echoed in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import netaddr

from metalctl import data as datafiles
from metalctl.credentials import Secret
from metalctl.errors import InputError
from metalctl.model.mac import mac_problem
from metalctl.model.node import DesiredNode

_PASSWORD_FIELDS = {"redfish": "redfish_password", "idrac": "redfish_password",
                    "ipmi": "ipmi_password"}
_PM_TYPES = {"ipmi": "ipmi", "pxe_ipmitool": "ipmi", "redfish": "redfish", "idrac": "idrac",
             "pxe_drac": "idrac"}


def load(path: Path) -> list[DesiredNode]:
    """Read a baremetal-create file or an instackenv file (detected by its fields).

    The file is read through :func:`metalctl.data.load` (bounded, UTF-8, no YAML
    aliases) and validated against the ``instackenv`` or ``baremetal-nodes`` schema
    before any field is used.

    Raises:
        InputError: naming the file, the field at fault and its line.
    """
    path = Path(path)
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise InputError(str(path), "(file)", "extension must be .json, .yaml or .yml")
    data, lines = datafiles.load_with_lines(path)
    nodes = data.get("nodes") if isinstance(data, Mapping) else None
    is_instack = isinstance(nodes, list) and any(
        isinstance(n, Mapping) and "pm_type" in n for n in nodes)
    datafiles.validate(data, "instackenv" if is_instack else "baremetal-nodes", str(path),
                       lines)
    reader = _from_instack if is_instack else _from_baremetal
    desired = [reader(path, i, raw) for i, raw in enumerate(nodes)]
    check_unique(path, desired)
    return desired


def normalise_mac(path: str, field: str, value: Any) -> str:
    """Canonical lower-case colon form, or an InputError naming the field."""
    if not isinstance(value, str) or not netaddr.valid_mac(value):
        raise InputError(path, field, f"{value!r} is not a MAC address")
    mac = netaddr.EUI(value)
    mac.dialect = netaddr.mac_unix_expanded
    text = str(mac).lower()
    problem = mac_problem(text)
    if problem:
        raise InputError(path, field, f"{problem}: no NIC has it as its own")
    return text


def _mapping(path: Path, field: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(str(path), field, "must be a mapping")
    return dict(value)


def _ports(path: Path, where: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputError(str(path), f"{where}.ports", "must be a list")
    macs = []
    for j, port in enumerate(raw):
        field = f"{where}.ports[{j}]"
        if not isinstance(port, Mapping) or "address" not in port:
            raise InputError(str(path), field, "must be a mapping with 'address'")
        macs.append(normalise_mac(str(path), f"{field}.address", port["address"]))
    return tuple(macs)


def _from_baremetal(path: Path, i: int, raw: Any) -> DesiredNode:
    where = f"nodes[{i}]"
    if not isinstance(raw, Mapping):
        raise InputError(str(path), where, "must be a mapping")
    driver = raw.get("driver")
    if not isinstance(driver, str) or not driver:
        raise InputError(str(path), f"{where}.driver", "required")
    info = _mapping(path, f"{where}.driver_info", raw.get("driver_info"))
    field = _PASSWORD_FIELDS.get(driver)
    password = Secret(str(info.pop(field))) if field and field in info else None
    node = DesiredNode(
        key="", origin=f"{path}:{where}", driver=driver, driver_info=info, password=password,
        password_field=field, name=raw.get("name"),
        properties=_mapping(path, f"{where}.properties", raw.get("properties")),
        resource_class=raw.get("resource_class"), conductor_group=raw.get("conductor_group"),
        macs=_ports(path, where, raw.get("ports")),
        extra=_mapping(path, f"{where}.extra", raw.get("extra")),
    )
    address_field = "driver_info.redfish_address" if driver in ("redfish", "idrac") else \
        "driver_info.ipmi_address"
    return _keyed(path, where, node, address_field)


def _from_instack(path: Path, i: int, raw: Any) -> DesiredNode:
    where = f"nodes[{i}]"
    if not isinstance(raw, Mapping):
        raise InputError(str(path), where, "must be a mapping")
    pm_type = raw.get("pm_type")
    driver = _PM_TYPES.get(str(pm_type))
    if driver is None:
        raise InputError(str(path), f"{where}.pm_type",
                         f"{pm_type!r} is not one of {sorted(_PM_TYPES)}")
    if not raw.get("pm_addr"):
        raise InputError(str(path), f"{where}.pm_addr", "required")
    port = int(raw["pm_port"]) if raw.get("pm_port") else None  # the schema: digits only
    if port is not None and not 0 < port < 65536:
        raise InputError(str(path), f"{where}.pm_port", f"{port} is not a port (1-65535)")
    if driver == "ipmi":
        info: dict[str, Any] = {"ipmi_address": raw["pm_addr"],
                                "ipmi_username": raw.get("pm_user")}
        if port:
            info["ipmi_port"] = port
    else:
        if not raw.get("pm_system_id"):
            raise InputError(str(path), f"{where}.pm_system_id", "required for Redfish")
        address = str(raw["pm_addr"])
        if "://" not in address:
            address = "https://" + address + (f":{port}" if port else "")
        info = {"redfish_address": address, "redfish_system_id": raw["pm_system_id"],
                "redfish_username": raw.get("pm_user")}
        if "pm_verify_ca" in raw:
            info["redfish_verify_ca"] = raw["pm_verify_ca"]
    info = {k: v for k, v in info.items() if v is not None}
    if "ports" in raw:
        macs = _ports(path, where, raw["ports"])
    else:
        legacy = raw.get("mac") or []
        if not isinstance(legacy, list):
            raise InputError(str(path), f"{where}.mac", "must be a list")
        macs = tuple(normalise_mac(str(path), f"{where}.mac[{j}]", m)
                     for j, m in enumerate(legacy))
    props: dict[str, Any] = {}
    for src, dst in (("cpu", "cpus"), ("memory", "memory_mb"), ("disk", "local_gb"),
                     ("arch", "cpu_arch")):
        if raw.get(src) is not None:
            props[dst] = raw[src] if dst == "cpu_arch" else _int(path, f"{where}.{src}",
                                                                 raw[src])
    caps = raw.get("capabilities")
    if isinstance(caps, Mapping):
        caps = ",".join(f"{k}:{v}" for k, v in caps.items())
    if raw.get("profile"):
        caps = ",".join(filter(None, [caps, f"profile:{raw['profile']}"]))
    if caps:
        props["capabilities"] = caps
    if raw.get("root_device") is not None:
        props["root_device"] = _mapping(path, f"{where}.root_device", raw["root_device"])
    password = Secret(str(raw["pm_password"])) if raw.get("pm_password") is not None else None
    node = DesiredNode(
        key="", origin=f"{path}:{where}", driver=driver, driver_info=info, password=password,
        password_field=_PASSWORD_FIELDS[driver], name=raw.get("name"), properties=props,
        resource_class=raw.get("resource_class"), conductor_group=raw.get("conductor_group"),
        macs=macs,
    )
    return _keyed(path, where, node, "pm_addr")


def _int(path: Path, field: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(str(path), field, f"{value!r} is not an integer") from None


def _keyed(path: Path, where: str, node: DesiredNode, address_field: str) -> DesiredNode:
    address, ident = node.bmc_identity
    if not address:
        raise InputError(str(path), f"{where}.{address_field}", "no BMC address")
    key = f"{address}{ident}" if node.driver in ("redfish", "idrac") else f"ipmi://{address}:{ident}"
    return replace(node, key=key)


def check_unique(path: Path | str, nodes: list[DesiredNode]) -> None:
    """Reject repeated MACs, BMC identities and names across the list.

    Raises:
        InputError: naming the later of the two entries and the earlier one.
    """
    seen_mac: dict[str, str] = {}
    seen_bmc: dict[tuple[str, str], str] = {}
    seen_name: dict[str, str] = {}
    for node in nodes:
        where = node.origin.rsplit(":", 1)[-1]
        for j, mac in enumerate(node.macs):
            if mac in seen_mac:
                raise InputError(str(path), f"{where}.ports[{j}].address",
                                 f"MAC {mac} already used by {seen_mac[mac]}")
            seen_mac[mac] = where
        if node.bmc_identity in seen_bmc:
            raise InputError(str(path), where,
                             f"same BMC as {seen_bmc[node.bmc_identity]} ({node.key})")
        seen_bmc[node.bmc_identity] = where
        if node.name:
            if node.name in seen_name:
                raise InputError(str(path), f"{where}.name",
                                 f"name {node.name!r} already used by {seen_name[node.name]}")
            seen_name[node.name] = where
