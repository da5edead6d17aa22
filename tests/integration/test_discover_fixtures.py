"""Vendor-shaped Redfish payloads, served by sushy-static, read into the inventory their
expected.json (written by hand from the payloads) says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metalctl import discover
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.model.node import Protocol, Status
from metalctl.netaddrs import parse_targets

from . import static_bmc

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "redfish"
FIXTURES = sorted(p.name for p in SAMPLES.iterdir() if (p / "expected.json").exists())
CREDS = CredentialSet("fixtures", (Credential("admin", Secret("fixture-pw")),))
BUDGET = Budget(connect_timeout_s=3, read_timeout_s=10, attempts=1, backoff_s=0,
                deadline_s=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every fixture on its own 127.23.1.N:8000 (sushy-static serves one tree each)."""
    with static_bmc.serve(SAMPLES, FIXTURES, 1, tmp_path_factory.mktemp("static")) as where:
        yield where


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_inventory_matches_the_hand_written_expectation(served, name):
    expected = json.loads((SAMPLES / name / "expected.json").read_text())
    opts = discover.DiscoverOptions(protocols=(Protocol.REDFISH,), budget=BUDGET)
    [rec] = discover.discover(parse_targets([f"http://{served[name]}:8000"]), CREDS, opts)
    assert rec.status is Status.OK, rec.error
    got = rec.to_dict()
    for key in ("vendor", "manufacturer", "model", "serial", "uuid", "power_state",
                "bios_version", "boot_mode", "bmc_firmware", "memory_gib"):
        assert got[key] == expected[key], key
    assert {k: got["cpu"][k] for k in expected["cpu"]} == expected["cpu"]
    assert [{k: n[k] for k in expected["nics"][0]} for n in got["nics"]] == expected["nics"] \
        if expected["nics"] else got["nics"] == []
    assert [{k: d[k] for k in ("name", "model", "serial", "media_type", "size_gib")}
            for d in got["disks"]] == expected["disks"]
