"""Discovery against real emulated BMCs and fault peers on loopback."""

from __future__ import annotations

import time

import pytest

from metalctl import discover
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.model.node import Status
from metalctl.netaddrs import parse_targets

from .conftest import SPEC
from .faults import Http500, SilentTcp

FAST = Budget(connect_timeout_s=1.0, read_timeout_s=2.0, attempts=1, concurrency=16)


def opts(lab, **kw):
    return discover.DiscoverOptions(**{"verify": lab.ca_bundle, "budget": FAST, **kw})


def by_status(records):
    out: dict[str, list] = {}
    for r in records:
        out.setdefault(r.status.value, []).append(r)
    return out


def test_rack_inventory_redfish_and_ipmi(lab, lab_creds):
    records = discover.discover(parse_targets(lab.ranges), lab_creds, opts(lab))
    groups = by_status(records)
    redfish = [r for r in groups["ok"] if r.protocol.value == "redfish"]
    ipmi = [r for r in groups["ok"] if r.protocol.value == "ipmi"]
    # one record per ComputerSystem: several systems behind one BMC address
    fake = [r for r in redfish if r.address != SPEC.libvirt_address]
    assert len(fake) == SPEC.redfish_bmcs * SPEC.systems_per_bmc
    assert len({r.address for r in fake}) == SPEC.redfish_bmcs
    macs = {n.mac for r in fake for n in r.hardware.nics}
    assert SPEC.system_mac(1, 1, 0) in macs
    assert SPEC.system_mac(0, 0, 1) in macs
    assert {r.uuid for r in fake} == {SPEC.system_uuid("redfish", b, s)
                                      for b in range(2) for s in range(2)}
    # the libvirt-backed BMC serves processors and memory
    kvm = [r for r in redfish if r.address == SPEC.libvirt_address]
    assert len(kvm) == SPEC.libvirt_domains
    assert kvm[0].hardware.memory_gib == 8
    assert kvm[0].hardware.cpu.model
    assert kvm[0].bios_version
    # its disk image is a volume of a libvirt storage pool, so SimpleStorage reports it
    assert [d.size_gib for d in kvm[0].hardware.disks] == [40.0]
    assert [n.mac for n in kvm[0].hardware.nics] == [SPEC.system_mac(0xEE, 0, 0),
                                                     SPEC.system_mac(0xEE, 0, 1)]
    # IPMI: identity from FRU 0 and the system GUID, power state from the chassis
    assert sorted(r.vendor for r in ipmi) == ["Lenovo", "Supermicro"]
    assert {r.serial for r in ipmi} == {"LAB200000", "LAB200001"}
    assert {r.uuid for r in ipmi} == {SPEC.system_uuid("ipmi", i, 0) for i in range(2)}
    assert all(r.power_state == "Off" and r.hardware.nics == () for r in ipmi)
    # dead addresses in the ranges: classified, not fatal
    assert len(groups["no-bmc"]) == 2 * SPEC.dead


def test_second_credential_of_the_set_is_used(lab, lab_creds):
    creds = CredentialSet("two", (Credential("admin", Secret("wrong-one")),
                                  lab_creds.entries[0]))
    rec = discover.discover(parse_targets([SPEC.redfish_address(0), SPEC.ipmi_address(0)]),
                            creds, opts(lab))
    assert {r.status for r in rec} == {Status.OK}
    assert {r.bmc_username for r in rec} == {"admin"}
    assert {r.credentials for r in rec} == {"two"}


@pytest.mark.parametrize("address", [SPEC.redfish_address(0), SPEC.ipmi_address(1)])
def test_wrong_password_is_auth_failed(lab, address):
    creds = CredentialSet("bad", (Credential("admin", Secret("wrong-pass-marker")),
                                  Credential("nobody", Secret("wrong-pass-marker"))))
    [rec] = discover.discover(parse_targets([address]), creds, opts(lab))
    assert rec.status is Status.AUTH_FAILED
    assert "wrong-pass-marker" not in (rec.error or "")
    assert "'bad'" in rec.error


def test_closed_port_is_no_bmc(lab, lab_creds):
    [rec] = discover.discover(parse_targets(["127.20.9.1:8443"]), lab_creds, opts(lab))
    assert rec.status is Status.NO_BMC


def test_address_that_never_answers_is_timeout_and_bounded(lab, lab_creds):
    silent = SilentTcp("127.20.9.2", 443)
    try:
        started = time.monotonic()
        [rec] = discover.discover(parse_targets(["127.20.9.2"]), lab_creds, opts(lab))
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert rec.status is Status.TIMEOUT
    assert elapsed < 3 * (FAST.connect_timeout_s + FAST.read_timeout_s)


def test_redfish_500_is_protocol_error(lab, lab_creds):
    server = Http500("127.20.9.3", 8000)
    try:
        [rec] = discover.discover(parse_targets(["http://127.20.9.3:8000"]), lab_creds,
                                  opts(lab))
    finally:
        server.close()
    assert rec.status is Status.PROTOCOL_ERROR
    assert "500" in rec.error


def test_tls_verification(lab, lab_creds):
    target = parse_targets([SPEC.redfish_address(1)])
    # system CAs only: the lab CA is private, so verification must fail
    rec = discover.discover(target, lab_creds, opts(lab, verify=True))
    assert {r.status for r in rec} == {Status.TLS_ERROR}
    # the CA bundle makes it verify; --insecure skips verification
    for verify in (lab.ca_bundle, False):
        rec = discover.discover(target, lab_creds, opts(lab, verify=verify))
        assert {r.status for r in rec} == {Status.OK}
        assert len(rec) == SPEC.systems_per_bmc


def test_results_saved_to_store(lab, lab_creds, tmp_path):
    from metalctl.store import Store

    with Store(tmp_path / "s.db") as store:
        discover.discover(parse_targets([SPEC.redfish_address(0), "127.20.9.4"]), lab_creds,
                          opts(lab), store=store)
        discover.discover(parse_targets([SPEC.redfish_address(0)]), lab_creds, opts(lab),
                          store=store)
        nodes = store.nodes()
        assert len(nodes) == SPEC.systems_per_bmc  # re-discovery updates, never duplicates
        assert all(n["state"] == "discovered" for n in nodes)
        actions = [e.action for e in store.events(nodes[0]["key"])]
        assert actions == ["discovered", "rediscovered"]


def test_reruns_keep_one_scan_row_per_address(lab, lab_creds, tmp_path):
    """Addresses without a BMC used to gain a row per re-run (their port was stored NULL)."""
    from metalctl.store import Store

    with Store(tmp_path / "s.db") as store:
        for _ in range(3):
            discover.discover(parse_targets(["127.20.9.4", "127.22.0.40"]), lab_creds,
                              opts(lab), store=store)
        assert [(s["address"], s["status"]) for s in store.scans()] == [
            ("127.20.9.4", "no-bmc"), ("127.22.0.40", "no-bmc")]
