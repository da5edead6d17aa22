"""The plan made real on a host: the REAL shipped scripts (``hostplan/install.sh`` with the
plan's values, which writes and runs ``hostplan/apply.sh``) on a copy of a recorded sysfs
tree of the R750-class sample, under dash and bash.

QEMU 7.2 (the lab machines) emulates no SR-IOV NIC: VFs are proven here. Per-node
hugepages are proven here on unequal counts and on the installed lab machines
(``tests/integration/test_run_handoff_lab.py``). systemctl and tuned-adm are stand-ins
that record their calls (the lab machine runs the real systemd).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from metalctl.errors import HostError
from metalctl.profile import host
from metalctl.profile.derive import ProfilePlan, derive
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary

SAMPLES = Path(__file__).parent.parent / "samples"
TREE = SAMPLES / "sysfs" / "r750-2s-48c-512g"
R750 = inband.parse((SAMPLES / "facts" / "r750-2s-48c-512g.txt").read_text())
NODE = "devices/system/node/node{}/hugepages/hugepages-1048576kB/nr_hugepages"
PFS = ("0000:31:00.0", "0000:31:00.1", "0000:98:00.0", "0000:98:00.1")
SHELLS = [s for s in ("dash", "bash") if shutil.which(s)]


@pytest.fixture(scope="module")
def plan() -> ProfilePlan:
    # nfv-sriov: 1G pages, 80 % of each node (the nodes differ: two counts), 8 VFs on
    # each 10G+ port, tuned cpu-partitioning
    return derive(R750, ProfileLibrary().load("nfv-sriov"), "r750")


@pytest.fixture(params=SHELLS)
def box(request, tmp_path: Path):
    """A host: a root for files, a copy of the recorded /sys, a mount table with a
    hugetlbfs, and PATH without systemctl or tuned-adm unless a test adds them."""
    sysfs = tmp_path / "sys"
    shutil.copytree(TREE, sysfs, symlinks=True)
    mounts = tmp_path / "mounts"
    mounts.write_text("hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("cat", "chmod", "mkdir", "mv", "printf", "grep", "sed", "awk", "sleep",
                 "mount"):
        os.symlink(shutil.which(tool), bindir / tool)
    os.symlink(shutil.which(request.param), bindir / "sh")  # the applier runs under it too
    env = {"PATH": str(bindir), "METALCTL_ROOT": str(tmp_path / "root"),
           "METALCTL_SYSFS": str(sysfs), "METALCTL_MOUNTS": str(mounts),
           "METALCTL_VF_WAIT_S": "0", "LC_ALL": "C"}
    return {"shell": shutil.which(request.param), "root": tmp_path / "root", "sys": sysfs,
            "bin": bindir, "env": env, "tmp": tmp_path}


def install(box: dict, plan: ProfilePlan) -> tuple[int, host.Realized]:
    proc = subprocess.run([box["shell"], "-s"], input=host.install_script(plan),
                          env=box["env"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert not proc.stderr, proc.stderr
    return proc.returncode, host.parse(proc.stdout)


def numvfs(box: dict, pf: str) -> str:
    return (box["sys"] / "bus/pci/devices" / pf / "sriov_numvfs").read_text().strip()


def test_the_plan_is_written_and_applied_on_a_recorded_tree(box, plan):
    pages = [p.hugepages for p in plan.numa]
    assert len(set(pages)) == 2  # two nodes, two different counts
    assert min(pages) > 0
    rc, done = install(box, plan)
    assert rc == 0, done
    assert not done.errors, done
    for p in plan.numa:  # per NUMA node, from sysfs: what RHEL 9's 5.14 kernel needs
        assert (box["sys"] / NODE.format(p.node)).read_text().strip() == str(p.hugepages)
    assert {pf: numvfs(box, pf) for pf in PFS} == dict.fromkeys(PFS, "8")
    conf = (box["root"] / "etc/metalctl/plan.conf").read_text().splitlines()
    assert [line for line in conf if not line.startswith("#")] == [
        *(f"hugepages {p.node} 1048576 {p.hugepages}" for p in plan.numa),
        *(f"vfs {pf} 8" for pf in PFS)]
    applier = box["root"] / "usr/local/libexec/metalctl-plan"
    assert applier.stat().st_mode & 0o777 == 0o755
    assert applier.read_text() == (Path(host.__file__).parent / "hostplan/apply.sh").read_text()
    unit = (box["root"] / "etc/systemd/system/metalctl-plan.service").read_text()
    assert "ExecStart=/usr/local/libexec/metalctl-plan" in unit
    assert "Before=network-pre.target libvirtd.service" in unit
    tuned = (box["root"] / "etc/tuned/cpu-partitioning-variables.conf").read_text()
    assert tuned == f"isolated_cores={plan.tuned['variables']['isolated_cores']}\n"
    assert f"hugepages node1 1048576kB 0->{pages[1]}" in done.changed
    assert "vfs 0000:98:00.0 0->8" in done.changed
    # said, not hidden: this box has neither systemd nor tuned
    assert done.notes == ["no systemd running: the plan is applied now, not at boot",
                          "tuned is not installed: profile cpu-partitioning not activated"]


def test_a_second_call_changes_nothing_and_says_so(box, plan):
    install(box, plan)
    rc, again = install(box, plan)
    assert rc == 0
    assert again.summary == "unchanged"
    assert again.changed == []
    assert again.writes == []
    assert "hugepages node0 1048576kB" in " ".join(again.unchanged)
    assert again.to_dict()["summary"] == "unchanged"


def test_vfs_from_n_to_m_go_through_zero_and_from_zero_do_not(box, plan):
    (box["sys"] / "bus/pci/devices/0000:31:00.0/sriov_numvfs").write_text("4\n")
    _, done = install(box, plan)
    writes = [w for w in done.writes if "sriov_numvfs" in w]
    # the kernel answers EBUSY to N -> M: 0 first
    assert writes[:2] == ["bus/pci/devices/0000:31:00.0/sriov_numvfs 0",
                          "bus/pci/devices/0000:31:00.0/sriov_numvfs 8"]
    assert writes[2:] == [f"bus/pci/devices/{pf}/sriov_numvfs 8" for pf in PFS[1:]]
    assert "vfs 0000:31:00.0 4->8" in done.changed
    assert numvfs(box, "0000:31:00.0") == "8"


def test_the_boot_applier_reports_what_it_cannot_do(box):
    conf = box["tmp"] / "plan.conf"
    conf.write_text("hugepages 3 2048 8\nvfs eno8303 4\nvfs 0000:98:00.1 9\nbogus 1\n")
    proc = subprocess.run([box["shell"], str(Path(host.__file__).parent / "hostplan/apply.sh")],
                          env={**box["env"], "METALCTL_PLAN_CONF": str(conf)},
                          capture_output=True, text=True, timeout=60, check=False)
    done = host.parse(proc.stdout)
    assert proc.returncode == 1
    assert done.errors == [
        "hugepages node3 2048kB: no devices/system/node/node3/hugepages/hugepages-2048kB/"
        "nr_hugepages",
        "vfs eno8303: no class/net/eno8303/device/sriov_numvfs (no SR-IOV NIC there)",
        "vfs 0000:98:00.1: 9 asked, sriov_totalvfs is 8",
        f"{conf}: unknown line 'bogus 1  '"]
    assert done.writes == []
    assert numvfs(box, "0000:98:00.1") == "0"


def test_a_nic_by_interface_name_and_a_missing_hugetlbfs(box, plan, tmp_path):
    conf = box["tmp"] / "plan.conf"
    conf.write_text("vfs ens6f1np1 2\nhugepages 0 2048 0\n")
    proc = subprocess.run([box["shell"], str(Path(host.__file__).parent / "hostplan/apply.sh")],
                          env={**box["env"], "METALCTL_PLAN_CONF": str(conf)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout
    assert numvfs(box, "0000:98:00.1") == "2"  # through class/net/<name>/device
    # no pages asked: no hugetlbfs needed either
    assert "hugetlbfs" not in proc.stdout


@pytest.fixture
def managed(box):
    """systemd running and tuned installed: stand-ins that keep state and log calls."""
    state = box["tmp"] / "state"
    state.mkdir()
    (box["root"] / "run/systemd/system").mkdir(parents=True)
    log = box["tmp"] / "calls"
    stubs = {
        "systemctl": f"""echo "systemctl $*" >> {log}
case "$1" in
  is-enabled) [ -f {state}/enabled ] && echo enabled || {{ echo disabled; exit 1; }} ;;
  enable) touch {state}/enabled ;;
  is-active) [ -f {state}/active ] ;;
  start) touch {state}/active ;;
esac""",
        "tuned-adm": f"""echo "tuned-adm $*" >> {log}
case "$1" in
  active) [ -f {state}/tuned ] && echo "Current active profile: $(cat {state}/tuned)" ;;
  profile) echo "$2" > {state}/tuned ;;
esac"""}
    for name, body in stubs.items():
        path = box["bin"] / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    os.symlink(shutil.which("touch"), box["bin"] / "touch")
    return {**box, "log": log}


def test_the_unit_is_enabled_and_started_and_tuned_activated_once(managed, plan):
    rc, done = install(managed, plan)
    assert rc == 0, done
    assert managed["log"].read_text().splitlines() == [
        "systemctl daemon-reload", "systemctl is-enabled metalctl-plan.service",
        "systemctl enable metalctl-plan.service", "systemctl is-active --quiet "
        "metalctl-plan.service", "systemctl start metalctl-plan.service",
        "tuned-adm active", "tuned-adm profile cpu-partitioning"]
    assert {"metalctl-plan.service enabled", "metalctl-plan.service active",
            "tuned profile none->cpu-partitioning"} <= set(done.changed)
    managed["log"].write_text("")
    rc, again = install(managed, plan)
    assert rc == 0, again
    assert again.summary == "unchanged", again
    assert "systemctl daemon-reload" not in managed["log"].read_text()
    assert "tuned-adm profile" not in managed["log"].read_text()


def test_values_that_could_escape_the_data_file_are_refused(plan):
    bad = ProfilePlan.from_dict(plan.to_dict())
    bad.vfs[0].pci_address, bad.vfs[0].nic = None, "eth0\nhugepages 0 2048 99999"
    with pytest.raises(HostError, match="cannot be planned"):
        host.install_script(bad)
    bad = ProfilePlan.from_dict(plan.to_dict())
    bad.tuned = {"profile": "cpu-partitioning", "variables": {"isolated_cores": "1'; reboot"}}
    with pytest.raises(HostError, match="cannot be written"):
        host.install_script(bad)


LIBVIRT_90_ABSTRACTION = """\
  /sys/devices/system/cpu/ r,
  /sys/devices/system/node/ r,
  /sys/devices/system/node/node[0-9]*/meminfo r,
  #include <local/abstractions/libvirt-qemu>
"""


def test_hugepage_guests_get_the_node_cpumap_rule_libvirt_90_lacks(box, plan):
    """Seen on the lab machine (Debian 12, libvirt 9.0, AppArmor): the canary with 2M pages
    on one NUMA node failed "libnuma: Warning: /sys not mounted or invalid. Assuming one
    node: Permission denied ... The nodes select no CPUs"."""
    aa = box["root"] / "etc/apparmor.d/abstractions/libvirt-qemu"
    aa.parent.mkdir(parents=True)
    aa.write_text(LIBVIRT_90_ABSTRACTION)
    local = box["root"] / "etc/apparmor.d/local/abstractions/libvirt-qemu"
    local.parent.mkdir(parents=True)
    local.write_text("# Site-specific additions and overrides for 'abstractions/libvirt-qemu'\n")
    _, done = install(box, plan)
    assert "/etc/apparmor.d/local/abstractions/libvirt-qemu" in done.changed
    lines = local.read_text().splitlines()
    assert lines[0].startswith("# Site-specific")  # the site's own lines are kept
    assert lines[-1] == "  /sys/devices/system/node/node[0-9]*/cpumap r,"
    _, again = install(box, plan)
    assert again.summary == "unchanged"
    # an abstraction that has the rule (libvirt >= 9.1) or a plan without pages: untouched
    aa.write_text(LIBVIRT_90_ABSTRACTION + "  /sys/devices/system/node/node[0-9]*/cpumap r,\n")
    local.write_text("")
    _, done = install(box, plan)
    assert local.read_text() == ""
    no_pages = ProfilePlan.from_dict(plan.to_dict())
    no_pages.hugepage_size = None
    aa.write_text(LIBVIRT_90_ABSTRACTION)
    install(box, no_pages)
    assert local.read_text() == ""
