"""metalctl.bmc.power against real BMC peers: sushy-emulator's fake driver (power
changes land 1-11 s after the request, as on real hardware) and the lab's RMCP+ IPMI
BMC (pyghmi's server). The libvirt-driver BMC, where power really starts QEMU, is
covered by test_lab_pxe.

Own lab on 127.26 without Ironic or libvirt (not the shared session lab): never run it
at the same time as test_lab_pxe in another process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metalctl import credentials, discover
from metalctl.bmc import ipmi, power
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.errors import BmcAuthFailed
from metalctl.netaddrs import parse_targets
from metalctl.poll import wait_for
from metalctl_lab import rack

SPEC = rack.RackSpec(octet=26, redfish_bmcs=1, systems_per_bmc=1, ipmi_bmcs=1,
                     libvirt_domains=0, dead=0, ironic=False)
BUDGET = Budget(connect_timeout_s=2, read_timeout_s=10, deadline_s=60, attempts=1)


@pytest.fixture(scope="module")
def bmcs(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("powerlab")
    state = rack.up(SPEC, directory, install=False)
    try:
        creds = credentials.resolve(rack.LAB_CREDENTIALS, Path(state.credentials_file),
                                    interactive=False)
        opts = discover.DiscoverOptions(verify=state.ca_bundle, budget=BUDGET)
        found = discover.discover(parse_targets(SPEC.ranges()), creds, opts)
        by_protocol = {r.protocol.value: r for r in found if r.status.value == "ok"}
        yield state, creds, by_protocol["redfish"], by_protocol["ipmi"]
    finally:
        rack.down(directory)


def _eventually(read, want: str, timeout_s: float = 30.0) -> None:
    wait_for(read, timeout_s=timeout_s, interval_s=0.5, what=f"power state {want!r}",
             ready=lambda seen: seen == want)


def test_redfish_fake_driver_network_boot_from_off_then_restart(bmcs):
    state, creds, redfish, _ = bmcs
    ca = state.ca_bundle

    def read() -> str:
        return power.power_state(redfish, creds, ca, BUDGET)

    assert read() == power.OFF
    first = power.network_boot(redfish, creds, ca, BUDGET)
    assert first.actions == ("boot-once:Pxe", "On")
    _eventually(read, power.ON)
    # the override is what the BMC now reports
    root_doc = _system_doc(state, creds, redfish)
    assert root_doc["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    again = power.network_boot(redfish, creds, ca, BUDGET)
    assert again.power_before == power.ON
    assert again.actions in (("boot-once:Pxe", "ForceRestart"),
                             ("boot-once:Pxe", "ForceOff", "On"))
    power.power_off(redfish, creds, ca, BUDGET)
    _eventually(read, power.OFF)


def _system_doc(state, creds, record) -> dict:
    import requests

    cred = creds.entries[0]
    return requests.get(f"{record.endpoint.url}{record.system_id}", verify=state.ca_bundle,
                        auth=(cred.username, cred.password.reveal()), timeout=10).json()


def test_redfish_wrong_password_touches_nothing(bmcs):
    state, _, redfish, _ = bmcs
    wrong = CredentialSet("lab", (Credential("admin", Secret("wrong-password")),))
    with pytest.raises(BmcAuthFailed) as info:
        power.network_boot(redfish, wrong, state.ca_bundle, BUDGET)
    assert "wrong-password" not in str(info.value)


def test_ipmi_network_boot_sets_the_boot_device_and_powers_on(bmcs):
    _, creds, _, ipmi_record = bmcs
    assert power.power_state(ipmi_record, creds, True, BUDGET) == power.OFF
    result = power.network_boot(ipmi_record, creds, True, BUDGET)
    assert result.actions == ("bootdev:network", "on")
    assert power.power_state(ipmi_record, creds, True, BUDGET) == power.ON
    cmd, _ = ipmi.login(ipmi_record.address, ipmi_record.port, creds, BUDGET)
    try:
        assert cmd.get_bootdev()["bootdev"] == "network"
    finally:
        cmd.ipmi_session.logout()
    again = power.network_boot(ipmi_record, creds, True, BUDGET)
    assert again.actions == ("bootdev:network", "reset")
    assert power.power_off(ipmi_record, creds, True, BUDGET).actions == ("off",)
    assert power.power_state(ipmi_record, creds, True, BUDGET) == power.OFF


def test_ipmi_wrong_password_is_auth_failed(bmcs):
    _, _, _, ipmi_record = bmcs
    wrong = CredentialSet("lab", (Credential("admin", Secret("wrong-password")),))
    with pytest.raises(BmcAuthFailed):
        power.network_boot(ipmi_record, wrong, True, BUDGET)
