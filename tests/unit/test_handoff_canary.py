"""The profile published to Nova and the canary's checks, on recorded inputs: the
domain XML is libvirt 9.0's for a Nova 34 guest of the lab's canary (LAB.md: vcpupin 1,
emulatorpin on the shared CPU, 2 MiB pages on node 0). The real peers are in
tests/integration/test_handoff.py."""

from __future__ import annotations

import pytest

from metalctl.handoff import canary, publish

DOMAIN = """<domain type='qemu' id='1'>
  <name>instance-00000001</name>
  <uuid>0b5e0f52-3f0c-4c1e-9d43-5a1f2f2a9c11</uuid>
  <memoryBacking><hugepages><page size='2048' unit='KiB' nodeset='0'/></hugepages></memoryBacking>
  <vcpu placement='static'>1</vcpu>
  <cputune><vcpupin vcpu='0' cpuset='1'/><emulatorpin cpuset='0'/></cputune>
  <numatune><memory mode='strict' nodeset='0'/></numatune>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+108</label></seclabel>
</domain>"""
NUMA_MAPS = "7f0000000000 bind:0 file=/dev/hugepages/libvirt/qemu/1-instance/qemu_back_mem huge dirty=64 N0=64 kernelpagesize_kB=2048"  # noqa: E501
SPECS = {"hw:cpu_policy": "dedicated", "hw:emulator_threads_policy": "share",
         "hw:mem_page_size": "2MB", "hw:numa_nodes": "1"}
PLAN = {"profile": "nfv-sriov", "numa": [{"node": 0, "hugepages": 64}, {"node": 1, "hugepages": 0}],
        "flavor_extra_specs": SPECS,
        "workload": {"request": {"vcpus": 4, "memory_gib": 3, "vfs": 2}},
        "nova": {"pci": {"alias": [{"name": "sriov1-8086-154c"}]}}}


def statuses(checks: list[canary.Check]) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_trait_and_flavors_from_the_plan():
    assert publish.trait("nfv-sriov") == "CUSTOM_METALCTL_PROFILE_NFV_SRIOV"
    assert publish.trait("hpc.lab 2") == "CUSTOM_METALCTL_PROFILE_HPC_LAB_2"
    team, small = publish.flavors("nfv-sriov", PLAN)
    assert (team.name, team.vcpus, team.ram_mb, team.public) == ("metalctl.nfv-sriov", 4,
                                                                  3072, True)
    assert team.extra_specs["trait:CUSTOM_METALCTL_PROFILE_NFV_SRIOV"] == "required"
    assert team.extra_specs["pci_passthrough:alias"] == "sriov1-8086-154c:2"
    # the canary: one vCPU, one node, no VF, no trait (it proves the host before the trait)
    assert (small.name, small.vcpus, small.ram_mb, small.public) == \
        ("metalctl.nfv-sriov.canary", 1, 128, False)
    assert not any(k.startswith(("trait:", "pci_passthrough:")) for k in small.extra_specs)
    assert small.extra_specs["hw:mem_page_size"] == "2MB"


def test_one_gib_pages_round_the_memory_up():
    plan = {"flavor_extra_specs": {"hw:mem_page_size": "1GB"},
            "workload": {"request": {"vcpus": 2, "memory_gib": 1.5}}}
    team, small = publish.flavors("hpc", plan)
    assert (team.ram_mb, small.ram_mb) == (2048, 1024)


def test_a_guest_as_planned_passes_every_check():
    dom = canary.parse_domain(DOMAIN)
    checks = canary.check_pinning(dom, SPECS, {1}, {0})
    checks += canary.check_hugepages(dom, NUMA_MAPS, SPECS, PLAN)
    assert statuses(checks) == {"vcpu-pinning": "pass", "emulator-threads": "pass",
                                "hugepages": "pass"}


def test_pinned_outside_the_dedicated_set_fails():
    dom = canary.parse_domain(DOMAIN.replace("cpuset='1'", "cpuset='0'"))
    [pin, _emu] = canary.check_pinning(dom, SPECS, {1}, {0})
    assert pin.status == "fail"
    assert (pin.expected, pin.actual) == ("inside cpu_dedicated_set 1", "0")


def test_hugepages_on_a_node_without_planned_pages_fail():
    dom = canary.parse_domain(DOMAIN.replace("nodeset='0'", "nodeset='1'"))
    [huge] = canary.check_hugepages(dom, NUMA_MAPS.replace("N0=", "N1="), SPECS, PLAN)
    assert huge.status == "fail"
    [small] = canary.check_hugepages(canary.parse_domain(DOMAIN), NUMA_MAPS,
                                     {**SPECS, "hw:mem_page_size": "1GB"}, PLAN)
    assert small.status == "fail"  # 2048 KiB pages where 1 GiB ones were asked for


def test_no_lsm_is_reported_as_exactly_that_never_a_pass():
    dom = canary.parse_domain(DOMAIN)
    facts = canary.GuestFacts(DOMAIN, NUMA_MAPS, "", ["lockdown", "capability", "landlock",
                                                      "bpf"])
    check = canary.check_label(dom, facts)
    assert check.status == "unavailable"
    assert "only a DAC label is possible: +64055:+108" in check.actual


@pytest.mark.parametrize(("label", "proc", "status"), [
    ("libvirt-0b5e0f52-3f0c-4c1e-9d43-5a1f2f2a9c11",
     "libvirt-0b5e0f52-3f0c-4c1e-9d43-5a1f2f2a9c11 (enforce)", "pass"),
    ("", "unconfined", "fail"),
])
def test_apparmor_label_of_its_own(label: str, proc: str, status: str):
    xml = DOMAIN.replace("</domain>", f"<seclabel type='dynamic' model='apparmor'>"
                                      f"<label>{label}</label></seclabel></domain>")
    facts = canary.GuestFacts(xml, "", proc, ["capability", "apparmor"])
    assert canary.check_label(canary.parse_domain(xml), facts).status == status


def test_placement_must_allocate_pcpu_for_a_dedicated_flavor():
    ok = {"rp": {"resources": {"PCPU": 1, "MEMORY_MB": 128, "DISK_GB": 1}}}
    assert canary.check_allocation(ok, SPECS, 1).status == "pass"
    vcpu = {"rp": {"resources": {"VCPU": 1, "MEMORY_MB": 128}}}
    assert canary.check_allocation(vcpu, SPECS, 1).status == "fail"


def test_a_domain_xml_with_a_doctype_is_refused():
    with pytest.raises(canary.CanaryFailed):
        canary.parse_domain("<!DOCTYPE x [<!ENTITY a 'b'>]><domain/>")


@pytest.mark.parametrize(("apparmor", "labels", "status"), [
    (True, "libvirt-6f0e qemu-system-x86\nlibvirt-77aa qemu-system-x86", "pass"),
    (True, "unconfined qemu-system-x86", "fail"),
    (False, "unconfined qemu-system-x86", "unavailable"),  # no LSM: never a pass
    (True, "", "unavailable"),                              # no guest: nothing judged
])
def test_the_audits_runtime_rules_are_judged_while_the_canary_runs(apparmor, labels, status):
    from metalctl.handoff import canary_audit
    from metalctl.rules.gather import HostFacts

    facts = HostFacts(family="debian", os_id="debian", apparmor_enabled=apparmor,
                      probes={"qemu-labels": labels})
    [(rule, got, _expected, actual)] = canary_audit.verdicts(facts, "c1", "10.0.0.5")
    assert rule == "VRT-002"
    assert got == status, actual
