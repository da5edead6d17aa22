"""BMC-side audit against the lab's real Redfish (sushy-tools) and RMCP+ BMCs."""

from __future__ import annotations

from dataclasses import replace

from metalctl.audit import bmc as bmc_audit
from metalctl.audit.model import FAIL, NOTAPPLICABLE, PASS
from metalctl.budget import Budget
from metalctl.lab import libvirt_lab
from metalctl.profile import bios
from metalctl.profile import stage as profile_stage
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.rules import catalogue as rules_mod
from metalctl.store import Store

from .conftest import SPEC
from .test_profile import FAST, records

RULES = [r for r in rules_mod.load() if "bmc" in r.platforms]
PROFILES = ProfileLibrary()


def statuses(audit):
    return {r.rule: r for r in audit.results}


def test_bmc_audit_drift_firmware_auth_and_tls(lab, lab_creds, tmp_path):
    store = Store(tmp_path / "s.db").open()
    kvm = records(lab, lab_creds, SPEC.libvirt_address)[0]
    ipmi = records(lab, lab_creds, SPEC.ipmi_address(0))[0]
    for rec in (kvm, ipmi):
        store.save_discovered(rec)
    node = profile_stage.resolve(store, kvm.key)
    profile_stage.plan(store, node, PROFILES.load("compute-general"), inband.collect_local())
    with bios.RedfishBios(kvm, lab_creds, lab.ca_bundle, FAST) as backend:
        backend.write(dict(libvirt_lab.BIOS_DEFAULTS))
    site = {"bmc": {"min_bios_version": {"sushy emulator": "1.0.0"}}}
    rows = {n["key"]: n for n in store.nodes()}
    budget = Budget(connect_timeout_s=2, read_timeout_s=10)

    first = statuses(bmc_audit.check_node(store, rows[kvm.key], RULES, lab_creds,
                                          lab.ca_bundle, site, budget))
    assert first["BMC-001"].status == FAIL
    assert "ProcVirtualization=Disabled (want Enabled)" in first["BMC-001"].evidence.actual
    assert first["BMC-002"].status == PASS
    assert first["BMC-003"].status == PASS  # 401 without credentials
    assert first["BMC-004"].status == PASS  # 401 with random credentials
    assert first["BMC-005"].status == PASS  # verified with the site CA bundle

    profile_stage.apply_bios(store, node, PROFILES.load("compute-general"), lab_creds,
                             lab.ca_bundle, FAST)
    after = statuses(bmc_audit.check_node(store, rows[kvm.key], RULES, lab_creds,
                                          lab.ca_bundle, {"bmc": {"min_bios_version": {
                                              "sushy emulator": "2.1"}}}, budget))
    assert after["BMC-001"].status == PASS
    assert after["BMC-002"].status == FAIL  # below the site minimum
    # without the site CA bundle the BMC's certificate is not trusted
    untrusted = statuses(bmc_audit.check_node(store, rows[kvm.key], RULES, lab_creds, True,
                                              site, budget))
    assert untrusted["BMC-005"].status == FAIL

    on_ipmi = statuses(bmc_audit.check_node(store, rows[ipmi.key], RULES, lab_creds,
                                            lab.ca_bundle, site, replace(budget)))
    assert on_ipmi["BMC-004"].status == PASS  # RMCP+ refused a random user
    assert on_ipmi["BMC-001"].status == NOTAPPLICABLE
    store.close()
