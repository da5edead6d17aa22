"""Discovery against DMTF's own published mockups (DMTF/Redfish-Publications), served by
sushy-tools' sushy-static, each record compared field by field with the mockup's JSON.

The expectation is read here from the mockup files with the schema's plain rules (no
metalctl code): the ComputerSystem's identity, its manager's FirmwareVersion
(Links.ManagedBy), the present CPUs of Processors, MemorySummary, the MACs of
the physical EthernetInterfaces (not the managers' host interface, not VLANs), or of the
NetworkInterfaces' device functions, the present drives of
Storage (else SimpleStorage), the chassis' Placement.Rack, and DPUs attached to their host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from metalctl import discover
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.model.node import Protocol, Status
from metalctl.netaddrs import parse_targets

from . import static_bmc

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "dmtf"
MOCKUPS = sorted(p.name for p in SAMPLES.iterdir() if (p / "redfish" / "v1").is_dir())
CREDS = CredentialSet("fixtures", (Credential("admin", Secret("fixture-pw")),))
BUDGET = Budget(connect_timeout_s=3, read_timeout_s=10, attempts=1, backoff_s=0,
                deadline_s=60)
FIRST = 21  # 127.23.1.21 onwards: test_discover_fixtures uses 127.23.1.1-N


def test_at_least_five_mockups():
    assert len(MOCKUPS) >= 5, MOCKUPS


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every mockup on its own 127.23.1.N:8000."""
    with static_bmc.serve(SAMPLES, MOCKUPS, FIRST, tmp_path_factory.mktemp("dmtf")) as where:
        yield where


# --- the mockup's own JSON, read with the schema's rules ------------------------------------


class Mockup:
    """A mockup tree: GET of a Redfish path is ``<path>/index.json``."""

    def __init__(self, name: str) -> None:
        self.root = SAMPLES / name / "redfish" / "v1"

    def get(self, path: str | dict | None) -> dict[str, Any]:
        if isinstance(path, dict):
            path = path.get("@odata.id")
        if not path:
            return {}
        rel = path.removeprefix("/redfish/v1").strip("/")
        f = self.root / rel / "index.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def members(self, link: Any) -> list[dict[str, Any]]:
        return [self.get(m) for m in self.get(link).get("Members", [])]


def _mac(doc: dict[str, Any]) -> str | None:
    mac = doc.get("PermanentMACAddress") or doc.get("MACAddress")
    return mac.lower() if mac else None


def expected(mock: Mockup, system: dict[str, Any]) -> dict[str, Any]:
    links = system.get("Links", {})
    manager = mock.get(links["ManagedBy"][0]) if links.get("ManagedBy") else {}
    cpus = [p for p in mock.members(system.get("Processors"))
            if p.get("Status", {}).get("State") != "Absent"
            and p.get("ProcessorType", "CPU") == "CPU"]
    # physical ports: not the Redfish host interface the managers link, not a VLAN
    # ("Virtual" EthernetInterfaceType) repeating its parent's MAC; each MAC once
    host_interfaces = {_mac(n) for m in mock.members("/redfish/v1/Managers")
                       for h in mock.members(m.get("HostInterfaces"))
                       for n in mock.members(h.get("HostEthernetInterfaces"))}
    nics = {_mac(n) for n in mock.members(system.get("EthernetInterfaces"))
            if n.get("EthernetInterfaceType") != "Virtual"} - host_interfaces or {
        _mac(f.get("Ethernet", {})) for i in mock.members(system.get("NetworkInterfaces"))
        for f in mock.members(i.get("NetworkDeviceFunctions"))}
    drives = [mock.get(d) for s in mock.members(system.get("Storage"))
              for d in s.get("Drives", [])]
    if not drives:
        drives = [d for s in mock.members(system.get("SimpleStorage"))
                  for d in s.get("Devices", [])]
    drives = [d for d in drives if d.get("Status", {}).get("State") != "Absent"]
    rack = None
    chassis = mock.get(links["Chassis"][0]) if links.get("Chassis") else {}
    while chassis and rack is None:
        rack = chassis.get("Location", {}).get("Placement", {}).get("Rack")
        chassis = mock.get(chassis.get("Links", {}).get("ContainedBy"))
    return {
        "name": system.get("Name"), "manufacturer": system.get("Manufacturer"),
        "model": system.get("Model"), "serial": system.get("SerialNumber"),
        "uuid": (system.get("UUID") or "").lower() or None,
        "power_state": system.get("PowerState"), "bios_version": system.get("BiosVersion"),
        "boot_mode": system.get("Boot", {}).get("BootSourceOverrideMode"),
        "bmc_firmware": manager.get("FirmwareVersion"), "rack": rack,
        "memory_gib": float(system["MemorySummary"]["TotalSystemMemoryGiB"]),
        "cpu": {"sockets": len(cpus), "cores": sum(p["TotalCores"] for p in cpus),
                "threads": sum(p["TotalThreads"] for p in cpus)},
        "macs": sorted(m for m in nics if m),
        "disks": sorted((d.get("Model"), d.get("SerialNumber"), d.get("MediaType"),
                         round(d["CapacityBytes"] / 2**30, 1) if d.get("CapacityBytes")
                         else None) for d in drives),
    }


def got(record: Any) -> dict[str, Any]:
    d = record.to_dict()
    out = {k: d[k] for k in ("name", "manufacturer", "model", "serial", "uuid",
                             "power_state", "bios_version", "boot_mode", "bmc_firmware",
                             "rack", "memory_gib")}
    out["cpu"] = {k: d["cpu"][k] for k in ("sockets", "cores", "threads")}
    out["macs"] = sorted(n["mac"] for n in d["nics"])
    out["disks"] = sorted((x["model"], x["serial"], x["media_type"], x["size_gib"])
                          for x in d["disks"])
    return out


def discovered(served: dict[str, str], name: str) -> list[Any]:
    opts = discover.DiscoverOptions(protocols=(Protocol.REDFISH,), budget=BUDGET)
    records = discover.discover(parse_targets([f"http://{served[name]}:8000"]), CREDS, opts)
    assert all(r.status is Status.OK for r in records), [r.error for r in records]
    return records


@pytest.mark.parametrize("name", MOCKUPS)
def test_every_server_matches_its_mockup_field_by_field(served, name):
    mock = Mockup(name)
    servers = [s for s in mock.members("/redfish/v1/Systems") if s.get("SystemType") != "DPU"]
    records = {r.system_id: r for r in discovered(served, name)}
    assert sorted(records) == sorted(s["@odata.id"] for s in servers)
    for system in servers:
        assert got(records[system["@odata.id"]]) == expected(mock, system), system["@odata.id"]


def test_dpu_is_attached_to_its_host_not_reported_as_a_server(served):
    mock = Mockup("public-smartnic")
    records = discovered(served, "public-smartnic")
    dpu = mock.get("/redfish/v1/Systems/Card1-SoC")
    assert dpu["SystemType"] == "DPU"
    # one server: enroll turns records into nodes, so the DPU can never become one
    assert [r.system_id for r in records] == ["/redfish/v1/Systems/437XR1138R2"]
    [host] = records
    assert [d["system_id"] for d in host.dpus] == ["/redfish/v1/Systems/Card1-SoC"]
    assert host.dpus[0]["serial"] == dpu["SerialNumber"]
    # the host's ports are the SmartNIC's device functions behind its NetworkInterfaces
    assert sorted(n.mac for n in host.hardware.nics) == ["a0:b0:c0:d0:e0:f0",
                                                         "a1:b1:c1:d1:e1:f1"]
    assert {n.max_vfs for n in host.hardware.nics} == {16}  # from the adapter's controller


def test_storage_sushy_refuses_is_read_from_the_payloads(served):
    # sushy's Storage model raises MissingAttributeError on these mockups' Storage
    mock = Mockup("public-tower")
    [record] = discovered(served, "public-tower")
    system = mock.get("/redfish/v1/Systems/437XR1238R2")
    assert "SimpleStorage" not in system  # no second chance: Storage or nothing
    assert len(record.hardware.disks) == len(expected(mock, system)["disks"]) > 0
