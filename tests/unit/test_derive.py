"""Derivation on recorded facts: exact values, TripleO worked examples, precise refusals."""

from pathlib import Path

import pytest

from metalctl import cpulist
from metalctl.errors import FactsIncomplete, ProfileUnsatisfiable
from metalctl.model.hardware import CpuFacts, Hardware
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.model.topology import Cpu, Nic, NumaNode, Topology
from metalctl.profile.derive import _socket_memory, compare, derive
from metalctl.profile.facts import bmc as bmc_facts
from metalctl.profile.facts import inband
from metalctl.profile.library import Profile, ProfileLibrary

SAMPLES = Path(__file__).parent.parent / "samples" / "facts"
LIB = ProfileLibrary()
R750 = inband.parse((SAMPLES / "r750-2s-48c-512g.txt").read_text())
EDGE = inband.parse((SAMPLES / "edge-1s-12c-64g.txt").read_text())


def prof(data: dict, name: str = "t") -> Profile:
    return Profile(name=name, data=data)


def test_tripleo_socket_memory_worked_examples():
    # derive-ovs-dpdk-parameters: MTU 1500 -> 2048, 9000 -> 3072, both -> 4096, none -> min
    assert _socket_memory({1500}, 1024) == 2048
    assert _socket_memory({9000}, 1024) == 3072
    assert _socket_memory({1500, 9000}, 1024) == 4096
    assert _socket_memory(set(), 1024) == 1024


def test_nfv_sriov_on_dual_socket():
    plan = derive(R750, LIB.load("nfv-sriov"), "r750")
    # node 0 holds the kernel-served 1G NICs: one extra host core there
    assert plan.host_cpus == "0-2,48-50"
    assert plan.isolated_cpus == "3-47,51-95"
    assert plan.nova["compute"] == {"cpu_dedicated_set": "3-47,51-95",
                                    "cpu_shared_set": "0-2,48-50"}
    # 80 % of (node memory - 4096 MiB), per node, in 1G pages
    assert [n.hugepages for n in plan.numa] == [197, 198]
    assert "hugepages=0:197,1:198" in plan.kernel_args
    assert plan.kernel_args[:2] == ["intel_iommu=on", "iommu=pt"]
    assert {v.nic: v.vfs for v in plan.vfs} == {"ens1f0": 8, "ens1f1": 8, "ens6f0np0": 8,
                                                "ens6f1np1": 8}
    assert {"address": "0000:31:00.0", "physical_network": "sriov1"} in \
        plan.nova["pci"]["device_spec"]
    assert {a["product_id"] for a in plan.nova["pci"]["alias"]} == {"1889", "101e"}
    assert plan.flavor_extra_specs["hw:mem_page_size"] == "1GB"
    assert plan.tuned["variables"] == {"isolated_cores": "3-47,51-95"}
    assert plan.workload["guests_per_host"] == 4


def test_nfv_dpdk_puts_pmd_cores_and_socket_memory_on_the_nic_node():
    plan = derive(R750, LIB.load("nfv-dpdk"), "r750")
    node1 = plan.numa[1]
    assert node1.pmd_cpus == [3, 5, 51, 53]  # 2 whole cores on the mlx5 node
    assert plan.numa[0].pmd_cpus == [4, 52]  # 1 on the other node (vhost-user guests)
    assert plan.dpdk["socket_mem"] == "1024,3072"  # MTU 9000 on node 1
    assert plan.nova["DEFAULT"]["reserved_huge_pages"] == ["node:0,size:1048576,count:1",
                                                           "node:1,size:1048576,count:3"]
    dedicated = cpulist.parse(plan.nova["compute"]["cpu_dedicated_set"])
    assert not dedicated & cpulist.parse(plan.pmd_cpus)
    assert cpulist.parse(plan.pmd_cpus) <= cpulist.parse(plan.isolated_cpus)


def test_hpc_turns_smt_off_and_uses_kernel_isolation():
    plan = derive(EDGE, LIB.load("hpc"), "edge")
    assert plan.offline_cpus == "12-23"
    assert "nosmt" in plan.kernel_args
    assert plan.host_cpus == "0"
    assert plan.isolated_cpus == "1-11"
    assert "isolcpus=managed_irq,domain,1-11" in plan.kernel_args
    assert "irqaffinity=0" in plan.kernel_args
    assert plan.flavor_extra_specs["hw:cpu_thread_policy"] == "isolate"
    assert plan.bios_intent["hyperthreading"] is False


def test_amd_gets_passthrough_without_intel_switch():
    amd = Topology(cpus=EDGE.cpus, numa=EDGE.numa, cpu_vendor="amd", cpu_flags=EDGE.cpu_flags)
    plan = derive(amd, LIB.load("compute-general"))
    assert plan.kernel_args == ["iommu=pt"]


def two_nodes(mem1_gib: int) -> Topology:
    cpus = tuple(Cpu(id=i, core=i % 4, socket=i // 4, node=i // 4) for i in range(8))
    return Topology(cpus=cpus, numa=(NumaNode(0, 64 * 1024), NumaNode(1, mem1_gib * 1024)),
                    cpu_flags=frozenset({"pdpe1gb"}), cpu_vendor="intel")


def test_impossible_hugepages_say_where_need_and_have():
    p = prof({"memory": {"host_reserved_mib_per_numa": 4096},
              "hugepages": {"size": "1G", "gib_per_numa": 24}})
    with pytest.raises(ProfileUnsatisfiable) as exc:
        derive(two_nodes(24), p, "n1")
    assert str(exc.value) == ("node n1: needs 24 GiB of 1G pages on NUMA node 1; "
                              "20 GiB free there after the host's 4096 MiB")


def test_impossible_cpu_vf_and_nic_requests():
    with pytest.raises(ProfileUnsatisfiable, match="needs 4 host cores and at least 1 guest "
                                                   "core on NUMA node 0; it has 4 usable"):
        derive(two_nodes(64), prof({"cpu": {"host_cores_per_numa": 4}}), "n")
    with pytest.raises(ProfileUnsatisfiable, match="needs 16 VFs on NIC ens6f0np0; it "
                                                   "supports at most 8"):
        derive(R750, prof({"sriov": {"nics": [{"match": {"driver": "mlx5_core"}, "vfs": 16,
                                               "physical_network": "p"}]}}), "r750")
    with pytest.raises(ProfileUnsatisfiable, match="SR-IOV on NIC eno8303"):
        derive(R750, prof({"sriov": {"nics": [{"match": {"driver": "tg3"}, "vfs": 1,
                                               "physical_network": "p"}]}}), "r750")
    with pytest.raises(ProfileUnsatisfiable, match=r"a NIC matching sriov.nics\[0\].match"):
        derive(EDGE, LIB.load("nfv-dpdk"), "edge")
    no_1g = Topology(cpus=EDGE.cpus, numa=EDGE.numa, cpu_flags=frozenset({"vmx"}))
    with pytest.raises(ProfileUnsatisfiable, match="lacks pdpe1gb"):
        derive(no_1g, LIB.load("hpc"))


def test_workload_that_fits_no_node_names_each_node():
    p = prof({"cpu": {"guest_cpus": "dedicated", "isolation": "kernel"},
              "hugepages": {"size": "1G", "percent_per_numa": 50},
              "workload": {"vcpus": 16, "memory_gib": 8}})
    with pytest.raises(ProfileUnsatisfiable) as exc:
        derive(two_nodes(64), p, "small")
    assert "needs 16 guest CPUs, 8 GiB of 1G pages on each of 1 NUMA node(s)" in str(exc.value)
    assert "node 0 has 3 guest CPUs" in str(exc.value)


def test_bmc_facts_never_guess_cpu_ids():
    rec = DiscoveryRecord(address="127.0.0.1", port=443, protocol=Protocol.REDFISH,
                          status=Status.OK, hardware=Hardware(cpu=CpuFacts(sockets=2, cores=48,
                                                                           threads=96)))
    with pytest.raises(FactsIncomplete, match="lack CPU ids and thread siblings"):
        derive(bmc_facts.from_record(rec), LIB.load("compute-general"), "bmc-only")


def test_multi_node_nic_without_numa_is_incomplete_not_guessed():
    topo = Topology(cpus=two_nodes(64).cpus, numa=two_nodes(64).numa,
                    nics=(Nic(name="p1", max_vfs=8, speed_mbps=25000),))
    p = prof({"sriov": {"nics": [{"match": {"name": "p*"}, "vfs": 2,
                                  "physical_network": "x"}]}})
    with pytest.raises(FactsIncomplete, match="NUMA node of NIC p1 unknown"):
        derive(topo, p)


def test_derivation_on_this_machine():
    local = inband.collect_local()
    plan = derive(local, LIB.load("compute-general"), "localhost")
    host = cpulist.parse(plan.host_cpus)
    shared = cpulist.parse(plan.nova["compute"]["cpu_shared_set"])
    assert host
    assert shared
    assert not host & shared
    assert host | shared == {c.id for c in local.online()}


def test_compare_reports_each_difference_against_a_live_host():
    profile = LIB.load("nfv-sriov")
    plan = derive(R750, profile, "r750")
    # a host that booted with the plan applied
    applied = Topology(
        cpus=R750.cpus, nics=tuple(Nic(**{**n.__dict__, "current_vfs": 8}) if n.max_vfs else n
                                   for n in R750.nics),
        numa=tuple(NumaNode(n.id, n.memory_mib, {1048576: h.hugepages})
                   for n, h in zip(R750.numa, plan.numa, strict=True)),
        cpu_vendor="intel", cpu_flags=R750.cpu_flags, source="inband",
        cmdline=" ".join(plan.kernel_args + [f"nohz_full={plan.isolated_cpus}"]))
    assert all(c.ok for c in compare(plan, applied, profile))
    # the same host before anything was applied
    failed = {c.check for c in compare(plan, R750, profile) if not c.ok}
    assert "1G hugepages on NUMA node 1" in failed
    assert "VFs on ens1f0" in failed
    assert "kernel argument hugepages" in failed
    assert "tuned isolated_cores (nohz_full on the command line)" in failed
    # SMT switched off in BIOS since planning: CPU lists re-derive differently
    no_smt = Topology(cpus=tuple(c for c in R750.cpus if c.id < 48), numa=R750.numa,
                      nics=R750.nics, cpu_flags=R750.cpu_flags, cpu_vendor="intel")
    assert "re-derived host_cpus" in {c.check for c in compare(plan, no_smt, profile)
                                      if not c.ok}


def test_compute_small_fits_the_labs_tcg_machine_and_general_does_not():
    # the lab's booting machines: 2 sockets x 2 cores, one thread, 1536 MiB in two cells
    # (the kernel shows 1477 MiB: about 738 per node in-band)
    cpus = tuple(Cpu(id=i, core=i % 2, socket=i // 2, node=i // 2) for i in range(4))
    tcg = Topology(cpus=cpus, numa=(NumaNode(0, 729), NumaNode(1, 748)), cpu_vendor="intel")
    with pytest.raises(ProfileUnsatisfiable, match="memory.host_reserved_mib"):
        derive(tcg, LIB.load("compute-general"), "kvm-0")
    plan = derive(tcg, LIB.load("compute-small"), "kvm-0")
    assert plan.nova["DEFAULT"]["reserved_host_memory_mb"] == 256
    assert [n.host_cpus for n in plan.numa] == [[0], [2]]
    # 128 MiB of 2M pages on each node, exactly (mib_per_numa): the canary fits on one
    assert [n.hugepages for n in plan.numa] == [64, 64]
    assert plan.flavor_extra_specs["hw:mem_page_size"] == "2MB"
    assert "hugepages=128" in plan.kernel_args


def test_mib_per_numa_is_exact_in_whole_pages_or_refused():
    cpus = tuple(Cpu(id=i, core=i % 2, socket=i // 2, node=i // 2) for i in range(4))
    tcg = Topology(cpus=cpus, numa=(NumaNode(0, 300), NumaNode(1, 1000)), cpu_vendor="intel")
    small = LIB.load("compute-small")
    with pytest.raises(ProfileUnsatisfiable, match="not a multiple of 2 MiB"):
        derive(tcg, Profile("odd", {**small.data, "hugepages": {"size": "2M",
                                                                "mib_per_numa": 127}}), "n")
    with pytest.raises(ProfileUnsatisfiable,
                       match="512 MiB of 2M pages on NUMA node 0; 300 MiB free there"):
        derive(tcg, Profile("big", {**small.data, "hugepages": {"size": "2M",
                                                                "mib_per_numa": 512}}), "n")
