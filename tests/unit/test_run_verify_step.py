"""The run's ``verify`` step: the profile after install, on every run until hand-off.

Where it sits: the real adapter table, and the scheduler with scripted stages (a resumed
run verifies a node again before hand-off; a handed-off node is not touched). What it
does: :func:`metalctl.profile.run.installed` with the REAL host scripts run on a copy of
the recorded sysfs tree, and facts read from that tree in the collector's format; only
the SSH transport is replaced (the lab test runs it over real SSH on an installed
machine).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest

from metalctl import ssh
from metalctl.model.node import Lifecycle
from metalctl.profile import run as profile_run
from metalctl.profile import stage as parts
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.run import adapters, load_rack
from metalctl.run.scheduler import STATE_OF, ScheduleOptions, Scheduler
from metalctl.store import Store
from tests.unit.test_run_scheduler import Script, record

SAMPLES = Path(__file__).parent.parent / "samples"
FACTS = (SAMPLES / "facts" / "r750-2s-48c-512g.txt").read_text()
TREE = SAMPLES / "sysfs" / "r750-2s-48c-512g"
TARGET = ssh.SshTarget("10.0.0.9")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.db").open()
    yield s
    s.close()


def test_the_table_puts_verify_after_provision_rechecked_until_hand_off(tmp_path, store):
    rack_file = tmp_path / "rack.yaml"
    rack_file.write_text("bmc: {ranges: [127.25.1.1], credentials: [lab]}\n"
                         "profiles: {default: compute-small}\n")
    table = adapters.table(load_rack(rack_file), adapters.StageInputs(credentials={}), store)
    order = [a.stage for a in table]
    assert order[order.index("provision") + 1] == "verify"
    step = table[order.index("verify")]
    assert step.recheck
    assert step.recheck_below is Lifecycle.HANDED_OFF
    assert STATE_OF["verify"] is Lifecycle.INSTALLED  # it records none of its own


def test_a_resumed_run_verifies_again_before_hand_off_and_not_after(store):
    script = Script(store, 3)
    table = script.adapters()
    for a in table:
        if a.stage == "verify":
            a.recheck, a.recheck_below = True, Lifecycle.HANDED_OFF
    for i, state in enumerate((Lifecycle.INSTALLED, Lifecycle.AUDITED, Lifecycle.HANDED_OFF)):
        store.save_discovered(record(i))
        store.set_state(record(i).key, state)
    Scheduler(table, store, ScheduleOptions()).run()
    steps = [(c[0], c[1]) for c in script.calls if c[0] not in ("enroll", "discover")]
    k0, k1, k2 = (record(i).key for i in range(3))
    assert [s for s, k in steps if k == k0] == ["verify", "harden", "audit", "handoff"]
    # killed inside hand-off (a host that may have rebooted since): verified again first
    assert [s for s, k in steps if k == k1] == ["verify", "audit", "handoff"]
    assert [s for s, k in steps if k == k2] == ["audit"]


# --- the step itself ----------------------------------------------------------------------


class LocalHost:
    """The host side: the real scripts run locally on a copy of the recorded tree, and
    in-band facts read back from it in the collector's format."""

    def __init__(self, tmp: Path, cmdline: str | None = None) -> None:
        self.sys = tmp / "sys"
        shutil.copytree(TREE, self.sys, symlinks=True)
        (tmp / "mounts").write_text("hugetlbfs /dev/hugepages hugetlbfs rw 0 0\n")
        self.env = {**os.environ, "METALCTL_ROOT": str(tmp / "root"),
                    "METALCTL_SYSFS": str(self.sys), "METALCTL_MOUNTS": str(tmp / "mounts"),
                    "METALCTL_VF_WAIT_S": "0"}
        self.cmdline = cmdline

    def exec_script(self, conn, target, script: str) -> ssh.ScriptResult:
        proc = subprocess.run(["sh", "-s"], input=script, env=self.env, capture_output=True,
                              text=True, timeout=60, check=False)
        return ssh.ScriptResult(proc.returncode, proc.stdout, proc.stderr)

    def run_script(self, conn, target, script: str) -> str:
        assert script == inband.script()
        text = FACTS
        for node in (0, 1):
            for kib in (2048, 1048576):
                have = (self.sys / f"devices/system/node/node{node}/hugepages/"
                        f"hugepages-{kib}kB/nr_hugepages").read_text().strip()
                text = re.sub(rf"(### node {node}\n[^#]*?hugepages {kib}) \d+",
                              rf"\g<1> {have}", text)
        for name, pf in (("ens1f0", "0000:31:00.0"), ("ens1f1", "0000:31:00.1"),
                         ("ens6f0np0", "0000:98:00.0"), ("ens6f1np1", "0000:98:00.1")):
            path = self.sys / "bus/pci/devices" / pf / "sriov_numvfs"
            if not path.exists():
                continue
            vfs = path.read_text().strip()
            text = re.sub(rf"(### nic {name}\n(?:.*\n)*?numvfs) \d+", rf"\g<1> {vfs}", text)
        if self.cmdline is not None:
            text = re.sub(r"### cmdline\n.*\n", f"### cmdline\n{self.cmdline}\n", text)
        return text


def run_step(store: Store, host: LocalHost, key: str) -> profile_run.ProfileResult:
    inputs = profile_run.ProfileInputs(select=lambda rec, topo: "nfv-sriov",
                                       profiles=ProfileLibrary())
    with mock.patch.object(profile_run, "connect", autospec=True) as connect, \
            mock.patch.object(profile_run, "run_script", side_effect=host.run_script,
                              autospec=True), \
            mock.patch("metalctl.profile.host.exec_script", side_effect=host.exec_script,
                       autospec=True):
        result = profile_run.installed(store, key, inputs, TARGET)
    connect.assert_called_once_with(TARGET)
    connect.return_value.close.assert_called_once_with()
    return result


def test_a_host_installed_before_its_plan_is_planned_made_real_and_verified(store, tmp_path):
    store.save_discovered(record(0))
    key = record(0).key
    host = LocalHost(tmp_path)
    first = run_step(store, host, key)
    assert first.ok, first.reason
    assert first.evidence["plan"] == "derived from the installed host's facts"
    assert first.evidence["profile"] == "nfv-sriov"
    assert first.evidence["realized"]["summary"] != "unchanged"
    checks = {c["name"]: c for c in first.evidence["checks"]}
    stored = store.get_data(key, "plan")["plan"]
    for p in stored["numa"]:  # the per-node pages the unit wrote, read back as facts
        assert checks[f"1G hugepages on NUMA node {p['node']}"] == {
            "name": f"1G hugepages on NUMA node {p['node']}", "want": str(p["hugepages"]),
            "got": str(p["hugepages"]), "ok": True}
    assert checks["VFs on ens6f1np1"]["ok"] is True
    # installed without the plan's kernel arguments: pending, not failed
    assert checks["kernel argument intel_iommu"]["ok"] is None
    assert "a reinstall boots with it" in checks["kernel argument intel_iommu"]["got"]
    # the stage's own events; no lifecycle state written
    actions = [e.action for e in store.events(key) if e.stage == "profile"]
    assert actions[-4:] == ["derived", "realized", "facts", "verified"]
    assert store.node(key)["state"] == Lifecycle.DISCOVERED.value
    again = run_step(store, host, key)  # a resumed run
    assert again.ok
    assert again.evidence["plan"] == "stored"
    assert again.evidence["realized"]["summary"] == "unchanged"


def test_a_failed_check_fails_the_node_naming_it(store, tmp_path):
    store.save_discovered(record(0))
    key = record(0).key
    host = LocalHost(tmp_path, cmdline="BOOT_IMAGE=/vmlinuz ro")
    topo = inband.parse(FACTS)
    # planned before install: its kernel arguments were to be on the command line
    parts.plan(store, parts.resolve(store, key), ProfileLibrary().load("nfv-sriov"), topo)
    result = run_step(store, host, key)
    assert not result.ok
    assert result.reason.startswith("profile verify: kernel argument intel_iommu: want "
                                    "intel_iommu=on, got absent (and ")
    assert "\n" not in result.reason
    verified = [e for e in store.events(key) if e.action == "verified"][-1]
    assert "kernel argument intel_iommu" in verified.changes["failed"]


def test_the_host_failing_to_apply_fails_the_node_with_its_line(store, tmp_path):
    store.save_discovered(record(0))
    key = record(0).key
    host = LocalHost(tmp_path)
    shutil.rmtree(host.sys / "bus/pci/devices/0000:98:00.1")  # that PF is gone
    os.unlink(host.sys / "class/net/ens6f1np1/device")
    result = run_step(store, host, key)
    assert not result.ok
    assert result.reason == ("plan not made real: vfs 0000:98:00.1: no bus/pci/devices/"
                             "0000:98:00.1/sriov_numvfs (no SR-IOV NIC there)")
    realized = [e for e in store.events(key) if e.action == "realized"][-1]
    assert realized.error == result.reason.removeprefix("plan not made real: ")
    assert "checks" not in result.evidence


def test_an_unreachable_host_is_the_nodes_reason(store):
    store.save_discovered(record(0))
    inputs = profile_run.ProfileInputs(select=lambda rec, topo: "nfv-sriov")
    result = profile_run.installed(store, record(0).key, inputs,
                                   ssh.SshTarget("127.0.0.1", port=1, connect_timeout_s=2))
    assert not result.ok
    assert "127.0.0.1" in result.reason
    assert isinstance(result, profile_run.ProfileResult)
