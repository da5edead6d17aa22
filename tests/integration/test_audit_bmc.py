"""BMC-side audit against the lab's real Redfish (sushy-tools) and RMCP+ BMCs.

Besides the verdicts: what the reader recorded from the real BMC, written out and read
back (the fixture format of tests/data/rule-cases/bmc.yaml), gives the same verdicts,
and still matches the recording the unit cases use (tests/data/bmc); a BMC that does
not answer passes nothing it would have had to be asked.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from metalctl.audit import bmc as bmc_audit
from metalctl.audit import bmc_eval, bmc_read
from metalctl.audit.bmc_facts import BmcFacts
from metalctl.audit.model import ERROR, FAIL, NOTAPPLICABLE, PASS
from metalctl.budget import Budget
from metalctl.profile import bios
from metalctl.profile import stage as profile_stage
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.rules import catalogue as rules_mod
from metalctl.store import Store
from metalctl_lab import libvirt_lab

from .conftest import SPEC
from .labrun import FAST, records

RULES = [r for r in rules_mod.load() if "bmc" in r.platforms]
PROFILES = ProfileLibrary()
RECORDED = Path(__file__).resolve().parents[1] / "data" / "bmc"
#: METALCTL_RECORD_BMC_FACTS=1 rewrites the recordings instead of comparing with them
RECORD = os.environ.get("METALCTL_RECORD_BMC_FACTS") == "1"


def statuses(audit):
    return {r.rule: r for r in audit.results}


def round_trip(store, node, creds, verify, site, budget, recording=None):
    """Read the BMC once; the verdicts on the facts and on their JSON agree; what the
    BMC said matches ``recording`` (not compared: where the lab put the BMC, and the
    profile's intent, which comes from the store and this machine's CPU)."""
    facts = bmc_read.read(store, node, RULES, creds, verify, budget)
    live = {r.rule: r.status for r in bmc_eval.evaluate(facts, RULES, site)}
    doc = json.loads(json.dumps(facts.to_dict()))
    again = {r.rule: r.status for r in bmc_eval.evaluate(BmcFacts.from_dict(doc), RULES, site)}
    assert again == live
    if recording is None:
        return live
    for volatile in ("label", "source", "intent"):
        doc.pop(volatile)
    path = RECORDED / recording
    if RECORD:
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert doc == json.loads(path.read_text()), f"{path}: re-record (METALCTL_RECORD_BMC_FACTS=1)"
    return live


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
    assert round_trip(store, rows[kvm.key], lab_creds, lab.ca_bundle, site, budget,
                      "sushy-tools-lab.json") == {r: v.status for r, v in first.items()}

    profile_stage.apply_bios(store, node, PROFILES.load("compute-general"), lab_creds,
                             lab.ca_bundle, FAST)
    after = statuses(bmc_audit.check_node(store, rows[kvm.key], RULES, lab_creds,
                                          lab.ca_bundle, {"bmc": {"min_bios_version": {
                                              "sushy emulator": "2.1"}}}, budget))
    assert after["BMC-001"].status == PASS
    assert after["BMC-002"].status == FAIL  # below the site minimum
    assert round_trip(store, rows[kvm.key], lab_creds, lab.ca_bundle, site,
                      budget)["BMC-001"] == PASS
    # without the site CA bundle the BMC's certificate is not trusted
    untrusted = statuses(bmc_audit.check_node(store, rows[kvm.key], RULES, lab_creds, True,
                                              site, budget))
    assert untrusted["BMC-005"].status == FAIL

    on_ipmi = statuses(bmc_audit.check_node(store, rows[ipmi.key], RULES, lab_creds,
                                            lab.ca_bundle, site, replace(budget)))
    assert on_ipmi["BMC-004"].status == PASS  # RMCP+ refused a random user
    assert on_ipmi["BMC-001"].status == NOTAPPLICABLE
    store.close()


def test_a_bmc_that_does_not_answer_passes_nothing_it_was_asked(lab, lab_creds, tmp_path):
    """The lab BMC's record moved to a port nothing listens on: each rule that asks the
    BMC is an error naming why, none passes (BMC-002 judges discovery's record)."""
    store = Store(tmp_path / "s.db").open()
    kvm = records(lab, lab_creds, SPEC.libvirt_address)[0]
    gone = replace(kvm, port=1)
    store.save_discovered(gone)
    node = profile_stage.resolve(store, gone.key)
    profile_stage.plan(store, node, PROFILES.load("compute-general"), inband.collect_local())
    [row] = store.nodes()
    audit = statuses(bmc_audit.check_node(store, row, RULES, lab_creds, lab.ca_bundle, {},
                                          Budget(connect_timeout_s=2, read_timeout_s=5)))
    for rid in ("BMC-001", "BMC-003", "BMC-004", "BMC-005"):
        assert audit[rid].status == ERROR, (rid, audit[rid].evidence)
        assert "unreachable" in audit[rid].evidence.detail, audit[rid].evidence
    assert audit["BMC-002"].status != PASS  # no site minimum: notchecked
    store.close()
