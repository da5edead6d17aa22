"""The profile stage against real peers: the lab's Redfish BMC (sushy-tools, libvirt
driver), the lab Ironic (BIOS interface as a manual clean step), a real sshd.

Each test starts from the lab BIOS factory defaults (written back through Redfish).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from metalctl import enroll
from metalctl.errors import HostAuthFailed, HostError, SshHostKeyUnknown
from metalctl.model.node import Lifecycle
from metalctl.profile import bios, stage
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.ssh import SshTarget
from metalctl.store import Store
from metalctl_lab import libvirt_lab, sshd

from .clirun import lab_env, run
from .conftest import SPEC
from .labrun import FAST, records

PROFILES = ProfileLibrary()


@pytest.fixture
def kvm(lab, lab_creds, tmp_path):
    """The libvirt-backed node in a fresh store, its BIOS back at factory defaults."""
    store = Store(tmp_path / "store.db").open()
    rec = records(lab, lab_creds, SPEC.libvirt_address)[0]
    store.save_discovered(rec)
    with bios.RedfishBios(rec, lab_creds, lab.ca_bundle, FAST) as backend:
        backend.write(dict(libvirt_lab.BIOS_DEFAULTS))
        yield store, stage.resolve(store, rec.key), backend
    store.close()


def test_bios_drift_apply_and_rerun_through_redfish(lab, lab_creds, kvm):
    store, node, backend = kvm
    prof = PROFILES.load("nfv-sriov")
    before = stage.diff_bios(node, prof, lab_creds, lab.ca_bundle, FAST)
    drift = {r.attribute: (r.current, r.desired) for r in before if r.status == "drift"}
    assert drift["ProcVirtualization"] == ("Disabled", "Enabled")
    assert drift["ProcCStates"] == ("Enabled", "Disabled")
    assert drift["SysProfile"] == ("PerfOptimized", "Custom")  # the vendor rule
    result = stage.apply_bios(store, node, prof, lab_creds, lab.ca_bundle, FAST)
    assert result.outcome is bios.BiosOutcome.APPLIED, result.error
    assert set(result.changes) == set(drift)
    assert {r.status for r in stage.diff_bios(node, prof, lab_creds, lab.ca_bundle,
                                              FAST)} == {"ok"}
    again = stage.apply_bios(store, node, prof, lab_creds, lab.ca_bundle, FAST)
    assert again.outcome is bios.BiosOutcome.UNCHANGED
    assert not again.changes
    row = store.find(node.key)
    assert row["state"] == Lifecycle.PROFILED.value
    assert store.get_data(node.key, "bios")["profile"] == "nfv-sriov"  # audit's BMC-001 baseline
    actions = [e.action for e in store.events(node.key) if e.stage == "profile"]
    assert actions == ["bios-applied", "bios-unchanged"]


def test_refusals_change_nothing(lab, lab_creds, kvm, tmp_path):
    store, node, backend = kvm
    prof = PROFILES.load("nfv-sriov")
    untouched = backend.state().current
    # unknown vendor
    acme = dataclasses.replace(node, record=dataclasses.replace(node.record,
                                                                manufacturer="Acme"))
    r = stage.apply_bios(store, acme, prof, lab_creds, lab.ca_bundle, FAST)
    assert r.outcome is bios.BiosOutcome.FAILED
    assert "no BIOS attribute map for manufacturer " \
        "'Acme'" in r.error
    # a site map naming attributes this BMC does not have
    site = tmp_path / "site" / "bios"
    site.mkdir(parents=True)
    (site / "emu.yaml").write_text(
        "vendor: site-emulator\nmatch: {manufacturer: [sushy emulator]}\nintents:\n"
        "  virtualization: {attribute: ProcVirtualization, values: {true: Enabled}}\n"
        "  turbo: {attribute: TurboBoostTech, values: {true: Enabled}}\n")
    r = stage.apply_bios(store, node, prof.__class__(name="p", data={"bios": {
        "virtualization": True, "turbo": True}}), lab_creds, lab.ca_bundle, FAST,
        bios_lib=bios.BiosLibrary([site]))
    assert r.outcome is bios.BiosOutcome.FAILED
    assert "TurboBoostTech is not an attribute of this BMC" in r.error
    assert "(nothing written)" in r.error
    # IPMI-only node
    ipmi_rec = records(lab, lab_creds, SPEC.ipmi_address(0))[0]
    store.save_discovered(ipmi_rec)
    r = stage.apply_bios(store, stage.resolve(store, ipmi_rec.key), prof, lab_creds,
                         lab.ca_bundle, FAST)
    assert r.outcome is bios.BiosOutcome.UNSUPPORTED
    assert "BIOS settings need Redfish" in r.error
    assert backend.state().current == untouched
    assert store.find(node.key)["state"] == Lifecycle.DISCOVERED.value


def test_bios_through_ironic_clean_step(lab, lab_creds, kvm, ironic):
    store, node, backend = kvm
    opts = enroll.EnrollOptions(verify_ca=lab.ca_bundle, budget=FAST, poll_interval_s=0.5)
    res = enroll.enroll(enroll.desired_from_records([node.record], {"lab": lab_creds}, opts),
                        ironic, opts, store=store)
    assert res[0].provision_state == "manageable"
    node = stage.resolve(store, node.key)
    prof = PROFILES.load("compute-general")
    try:
        r = stage.apply_bios(store, node, prof, lab_creds, lab.ca_bundle, FAST,
                             ironic=ironic, settle_s=300)
        assert r.outcome is bios.BiosOutcome.APPLIED, r.error
        assert r.via == "ironic"
        cached = ironic.bios_settings(node.ironic_uuid)
        assert cached["ProcVirtualization"] == "Enabled"
        assert cached["WorkloadProfile"] == "MaxPerformance"
        assert backend.state().current["ProcVtd"] == "Enabled"  # really on the BMC
        assert ironic.node(node.ironic_uuid)["provision_state"] == "manageable"
        again = stage.apply_bios(store, node, prof, lab_creds, lab.ca_bundle, FAST,
                                 ironic=ironic)
        assert again.outcome is bios.BiosOutcome.UNCHANGED
    finally:
        # Ironic rebooted the node to apply: the lab's QEMU guest is running now
        ironic.set_power_state(node.ironic_uuid, "off")


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory):
    peer = sshd.start(tmp_path_factory.mktemp("sshd"), "127.0.0.1", 2320)
    yield peer
    peer.stop()


def test_facts_over_ssh_match_local_and_host_keys_are_checked(ssh_host, tmp_path):
    target = SshTarget(host=ssh_host.address, port=ssh_host.port, key_file=ssh_host.client_key,
                       known_hosts=ssh_host.known_hosts)
    remote = inband.collect_ssh(target)
    local = inband.collect_local()
    assert remote.cpus == local.cpus
    assert remote.numa[0].id == local.numa[0].id
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(SshHostKeyUnknown, match="host key not in"):
        inband.collect_ssh(dataclasses.replace(target, known_hosts=empty))
    other = tmp_path / "other_key"
    shutil.copy(ssh_host.directory / "ssh_host_ed25519_key", other)  # not authorised
    with pytest.raises(HostAuthFailed):
        inband.collect_ssh(dataclasses.replace(target, key_file=other))
    with pytest.raises(HostError, match="connection failed"):
        inband.collect_ssh(dataclasses.replace(target, port=2321))


def test_cli_facts_derive_apply_diff_verify(lab, tmp_path, ssh_host):
    env = lab_env(lab, tmp_path)
    run(["discover", SPEC.libvirt_address, "--credentials", "lab", "-o", "json"], env, 0)
    name = run(["nodes", "-o", "json"], env, 0)
    key = json.loads(name.stdout)[0]["key"]
    # BIOS back to factory defaults (an earlier test may have applied a profile)
    with Store(Path(env["METALCTL_STORE"])) as store:
        node = stage.resolve(store, key)
    from metalctl import credentials
    creds = credentials.resolve("lab", Path(lab.credentials_file), interactive=False)
    with bios.RedfishBios(node.record, creds, lab.ca_bundle, FAST) as backend:
        backend.write(dict(libvirt_lab.BIOS_DEFAULTS))
    ssh = ["--ssh", f"root@{ssh_host.address}:{ssh_host.port}", "--ssh-key",
           str(ssh_host.client_key), "--known-hosts", str(ssh_host.known_hosts)]
    run(["profile", "facts", key, *ssh, "-o", "json"], env, 0)
    plan = json.loads(run(["profile", "derive", key, "-p", "compute-general", "-o", "json"],
                          env, 0).stdout)
    assert plan["facts_source"] == "inband"
    assert plan["bios"]["vendor"] == "sushy-emulator"
    assert plan["bios"]["attributes"]["ProcVirtualization"] == "Enabled"
    assert plan["nova"]["compute"]["cpu_shared_set"]
    diff = run(["profile", "diff", key, "-p", "compute-general", "-o", "json"], env, 2)
    assert "drift" in {r["status"] for r in json.loads(diff.stdout)}
    applied = json.loads(run(["profile", "apply", key, "-p", "compute-general", "-o", "json"],
                             env, 0).stdout)
    assert applied[0]["outcome"] == "applied"
    run(["profile", "diff", key, "-p", "compute-general"], env, 0)
    # the test machine was never configured for the plan: verify says what differs
    checks = json.loads(run(["profile", "verify", key, *ssh, "-o", "json"], env, 2).stdout)
    by = {c["check"]: c for c in checks}
    assert by["re-derived host_cpus"]["status"] == "ok"
    assert by["kernel argument iommu"]["status"] == "failed"  # iommu=pt on Intel and AMD
    history = run(["history", key, "-o", "json"], env, 0)
    assert [e["action"] for e in json.loads(history.stdout) if e["stage"] == "profile"] == \
        ["facts", "derived", "bios-applied", "verified"]


def test_cli_input_errors_and_impossible_profiles(tmp_path):
    env = {"METALCTL_STORE": str(tmp_path / "s.db"), "COLUMNS": "1000"}
    samples = Path(__file__).parent.parent / "samples" / "facts"
    site = tmp_path / "profiles"
    site.mkdir()
    (site / "typo.yaml").write_text("extends: nfv-sriov\nhugepages:\n  sise: 1G\n")
    proc = run(["profile", "derive", "x", "-p", "typo", "--profile-dir", str(site),
                "--facts", str(samples / "edge-1s-12c-64g.txt")], env, 3)
    assert f"{site / 'typo.yaml'}:3: hugepages.sise: unknown key; did you mean 'size'?" in \
        proc.stderr.replace("\n", "")
    proc = run(["profile", "derive", "edge", "-p", "nfv-dpdk", "--facts",
                str(samples / "edge-1s-12c-64g.txt")], env, 1)
    assert "needs a NIC matching sriov.nics[0].match" in proc.stderr.replace("\n", "")
    proc = run(["profile", "derive", "r750", "-p", "nfv-dpdk", "-o", "yaml", "--facts",
                str(samples / "r750-2s-48c-512g.txt")], env, 0)
    assert "hugepages=0:197,1:198" in proc.stdout
