"""Vendor-shaped Redfish payloads, served by sushy-static, read into the inventory their
expected.json (written by hand from the payloads) says."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from metalctl import discover
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.lab import peers
from metalctl.model.node import Protocol, Status
from metalctl.netaddrs import parse_targets

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "redfish"
FIXTURES = sorted(p.name for p in SAMPLES.iterdir() if (p / "expected.json").exists())
CREDS = CredentialSet("fixtures", (Credential("admin", Secret("fixture-pw")),))
BUDGET = Budget(connect_timeout_s=3, read_timeout_s=10, attempts=1, backoff_s=0,
                deadline_s=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every fixture on its own 127.23.1.N:8000 (sushy-static serves one tree each)."""
    log_dir = tmp_path_factory.mktemp("static")
    procs, where = [], {}
    try:
        for i, name in enumerate(FIXTURES, start=1):
            address = f"127.23.1.{i}"
            log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append((subprocess.Popen(
                [str(peers.peer_bin("sushy-static")), "-i", address, "-p", "8000",
                 "-m", str(SAMPLES / name / "redfish" / "v1")],
                stdout=log, stderr=subprocess.STDOUT), log))
            where[name] = address
        for name, address in where.items():
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"http://{address}:8000/redfish/v1/", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, f"sushy-static for {name} not up"
                time.sleep(0.2)
        yield where
    finally:
        for proc, log in procs:
            proc.terminate()
            proc.wait(10)
            log.close()


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
