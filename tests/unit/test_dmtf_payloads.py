"""Discovery's readers on DMTF's own mockup payloads (tests/samples/dmtf), with no server:
what is missing is said at WARNING, firmware comes from the system's own manager, and a
DPU is found in its host."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from metalctl.bmc import inventory, systems
from metalctl.bmc.inventory import RawReader

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "dmtf"


def tree(name: str) -> dict[str, dict[str, Any]]:
    """Every document of a mockup by its Redfish path."""
    root = SAMPLES / name / "redfish" / "v1"
    out = {}
    for f in root.rglob("index.json"):
        rel = f.parent.relative_to(root).as_posix()
        out["/redfish/v1" + ("" if rel == "." else "/" + rel)] = json.loads(f.read_text())
    return out


def reader(docs: dict[str, dict[str, Any]]) -> RawReader:
    def get(path: str) -> dict[str, Any]:
        return docs[path.rstrip("/")]  # KeyError: the BMC answered 404
    return RawReader(get, "127.0.0.1")


def test_unreadable_drive_is_a_warning_naming_it_and_the_others_are_kept(caplog):
    docs = tree("public-localstorage")
    system = docs["/redfish/v1/Systems/437XR1138R2"]
    all_disks = inventory.disks(reader(docs), system)
    storage = docs[system["Storage"]["@odata.id"]]["Members"][0]["@odata.id"]
    gone = docs[storage]["Drives"][1]["@odata.id"]
    del docs[gone]
    with caplog.at_level(logging.WARNING, logger="metalctl.bmc.inventory"):
        disks = inventory.disks(reader(docs), system)
    assert len(disks) == len(all_disks) - 1 > 0
    assert any(gone in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records), caplog.text


def test_unreadable_storage_collection_is_a_warning(caplog):
    docs = tree("public-localstorage")
    system = docs["/redfish/v1/Systems/437XR1138R2"]
    del docs[system["Storage"]["@odata.id"]]
    with caplog.at_level(logging.WARNING, logger="metalctl.bmc.inventory"):
        assert inventory.disks(reader(docs), system) == ()
    assert "drives are unknown" in caplog.text


def test_firmware_is_the_systems_own_managers():
    docs = tree("public-bladed")
    # the published blades' managers all say 1.00: make blade 2's differ, in memory
    docs["/redfish/v1/Managers/Blade2BMC"] = {**docs["/redfish/v1/Managers/Blade2BMC"],
                                              "FirmwareVersion": "2.10"}
    managers = {p: d for p, d in docs.items()
                if p.startswith("/redfish/v1/Managers/") and p.count("/") == 4}
    first = docs["/redfish/v1/Managers"]["Members"][0]["@odata.id"]
    assert first.endswith("/MultiBladeBMC")
    blade2 = docs["/redfish/v1/Systems/529QB9451R6"]
    assert blade2["Links"]["ManagedBy"][0]["@odata.id"].endswith("/Blade2BMC")
    assert systems.manager_firmware(reader(docs), blade2, managers) == "2.10"
    blade1 = docs["/redfish/v1/Systems/529QB9450R6"]
    assert systems.manager_firmware(reader(docs), blade1, managers) == "1.00"
    # several managers and no ManagedBy: unknown, not the first one's
    orphan = {k: v for k, v in blade2.items() if k != "Links"}
    assert systems.manager_firmware(reader(docs), orphan, managers) is None


def test_dpu_host_and_rack_through_containment():
    docs = tree("public-smartnic")
    host = docs["/redfish/v1/Systems/437XR1138R2"]
    dpu = docs["/redfish/v1/Systems/Card1-SoC"]
    assert systems.is_dpu(dpu)
    assert not systems.is_dpu(host)
    assert systems.dpu_host(reader(docs), dpu, [host]) == 0
    assert systems.rack(reader(docs), host) == "WEB43"
    blades = tree("public-bladed")
    assert systems.rack(reader(blades), blades["/redfish/v1/Systems/529QB9450R6"]) == "WEB43"
    # a DPU is not attached to another blade merely sharing the enclosure
    assert systems.dpu_host(reader(docs), dpu, [blades["/redfish/v1/Systems/529QB9450R6"]]) \
        is None


def test_dpu_summary_keeps_only_short_strings():
    dpu = tree("public-smartnic")["/redfish/v1/Systems/Card1-SoC"]
    hostile = {**dpu, "Name": {"nested": "x"}, "Model": "M" * 5000, "SerialNumber": 7}
    summary = systems.dpu_summary(hostile)
    assert (summary["name"], summary["model"], summary["serial"]) == (None, None, None)
    assert summary["system_id"] == "/redfish/v1/Systems/Card1-SoC"
    assert len(summary["offloaded_functions"]) == 2
