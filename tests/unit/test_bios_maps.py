"""Vendor BIOS maps as data, validation before writing, and the apply state machine.

The state machine runs against the real lab emulator in tests/integration; that
emulator applies settings at once, so the pending -> reset -> verify path is
exercised here with a scripted backend (in addition, never instead).
"""

import pytest

from metalctl.errors import BiosError, InputError
from metalctl.profile import bios

LIB = bios.BiosLibrary()
NFV = {"virtualization": True, "vtd": True, "sriov": True, "hyperthreading": True,
       "cstates": False, "turbo": True, "power_profile": "performance",
       "sub_numa_clustering": False}


def test_every_shipped_vendor_maps_the_nfv_intent():
    vendors = {m.vendor for m in LIB.maps()}
    assert {"dell-idrac", "hpe-ilo", "lenovo-xcc", "supermicro", "sushy-emulator"} <= vendors
    for m in LIB.maps():
        attrs = m.attributes(NFV)
        assert attrs, m.vendor


def test_vendor_rules_travel_in_the_same_request():
    dell = LIB.for_manufacturer("Dell Inc.")
    attrs = dell.attributes({"cstates": False, "power_profile": "performance"})
    assert attrs == {"ProcCStates": "Disabled", "ProcC1E": "Disabled",
                     "ProcPwrPerf": "MaxPerf", "SysProfile": "Custom"}
    hpe = LIB.for_manufacturer("HPE")
    attrs = hpe.attributes({"cstates": False})
    assert attrs["MinProcIdlePower"] == "NoCStates"
    assert attrs["WorkloadProfile"] == "Custom"
    assert hpe.attributes({"virtualization": True}) == {"ProcVirtualization": "Enabled"}


def test_unknown_vendor_is_a_clear_error():
    with pytest.raises(BiosError, match="no BIOS attribute map for manufacturer 'Acme'.*"
                                        "known vendor maps: dell-idrac"):
        LIB.for_manufacturer("Acme", "n1")


def test_a_broken_vendor_map_names_file_and_field(tmp_path):
    (tmp_path / "x.yaml").write_text("vendor: x\nmatch: {manufacturer: [x]}\nintents:\n"
                                     "  turbo: {attribute: T}\n")
    with pytest.raises(InputError, match=r"x.yaml:4: intents.turbo"):
        bios.BiosLibrary([tmp_path]).maps()


def test_validation_refuses_unknown_readonly_and_disallowed_values():
    state = bios.BiosState(current={"ProcTurboMode": "Enabled", "Serial": "X"}, pending={},
                           registry={"ProcTurboMode": {"read_only": False,
                                                       "allowed": ["Enabled", "Disabled"]},
                                     "Serial": {"read_only": True, "allowed": []}})
    with pytest.raises(BiosError) as exc:
        bios.validate_against({"ProcTurboMode": "Max", "Serial": "Y", "Nope": "1"}, state, "n")
    text = str(exc.value)
    assert "Nope is not an attribute of this BMC" in text
    assert "Serial is read-only" in text
    assert "ProcTurboMode=Max not allowed (allowed: Enabled, Disabled)" in text
    assert text.endswith("(nothing written)")


class Scripted:
    """A BMC that keeps written values pending until a reset, as iDRAC/iLO do."""

    label = "scripted"

    def __init__(self, current):
        self.current, self.pending, self.resets, self.writes = dict(current), {}, 0, []

    def state(self):
        return bios.BiosState(dict(self.current), dict(self.pending))

    def write(self, changes):
        self.writes.append(dict(changes))
        self.pending.update(changes)

    def reboot(self):
        self.resets += 1
        self.current.update(self.pending)
        self.pending = {}


def test_pending_until_reset_then_verified():
    bmc = Scripted({"ProcTurboMode": "Disabled", "LogicalProc": "Enabled"})
    desired = {"ProcTurboMode": "Enabled", "LogicalProc": "Enabled"}
    r = bios.apply(bmc, desired)
    assert r.outcome is bios.BiosOutcome.PENDING
    assert bmc.resets == 0
    assert [row.status for row in r.rows] == ["ok", "pending"]
    r = bios.apply(bmc, desired, reboot=True, poll_s=0)
    assert r.outcome is bios.BiosOutcome.APPLIED
    assert bmc.resets == 1
    assert bmc.writes == [{"ProcTurboMode": "Enabled"}] * 2  # only what differs
    assert bios.apply(bmc, desired).outcome is bios.BiosOutcome.UNCHANGED


def test_a_reset_that_does_not_apply_fails_after_the_deadline():
    class Stubborn(Scripted):
        def reboot(self):
            self.resets += 1

    bmc = Stubborn({"ProcTurboMode": "Disabled"})
    r = bios.apply(bmc, {"ProcTurboMode": "Enabled"}, reboot=True, settle_s=0.05, poll_s=0.01)
    assert r.outcome is bios.BiosOutcome.FAILED
    assert "not current" in r.error
