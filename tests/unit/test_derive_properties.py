"""Invariants of derivation for every topology and profile (hypothesis).

Either derivation refuses with ProfileUnsatisfiable/FactsIncomplete, or the plan:
never reserves and isolates one CPU; never splits a core's siblings; leaves host
CPUs on every NUMA node; fits hugepages in each node's memory after the host
reservation; never exceeds a NIC's maximum VFs; gives Nova disjoint CPU sets.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalctl import cpulist
from metalctl.errors import FactsIncomplete, ProfileUnsatisfiable
from metalctl.model.topology import Cpu, Nic, NumaNode, Topology
from metalctl.profile.derive import PAGE_MIB, derive
from metalctl.profile.library import Profile


@st.composite
def topologies(draw):
    nodes = draw(st.integers(1, 4))
    cores_per_node = draw(st.integers(1, 24))
    threads = draw(st.sampled_from([1, 2]))
    interleaved = draw(st.booleans())  # Dell-style round-robin vs sequential numbering
    cpus = []
    total_cores = nodes * cores_per_node
    for t in range(threads):
        for k in range(total_cores):
            if interleaved:
                node, core = k % nodes, k // nodes
            else:
                node, core = k // cores_per_node, k % cores_per_node
            cpus.append(Cpu(id=t * total_cores + k, core=core, socket=node, node=node))
    numa = tuple(NumaNode(n, draw(st.integers(2, 512)) * 1024) for n in range(nodes))
    nics = tuple(Nic(name=f"p{i}", numa_node=draw(st.integers(0, nodes - 1)),
                     driver=draw(st.sampled_from(["ice", "mlx5_core", "igb"])),
                     max_vfs=draw(st.sampled_from([0, 8, 64, 128])),
                     speed_mbps=draw(st.sampled_from([1000, 10000, 25000])),
                     vendor_id="8086", vf_device_id="1889", pci_address=f"0000:0{i}:00.0")
                 for i in range(draw(st.integers(0, 4))))
    return Topology(cpus=tuple(cpus), numa=numa, nics=nics,
                    cpu_vendor=draw(st.sampled_from(["intel", "amd"])),
                    cpu_flags=frozenset({"pdpe1gb"}), source="test")


@st.composite
def profiles(draw):
    data: dict = {"cpu": {
        "hyperthreading": draw(st.booleans()),
        "host_cores_per_numa": draw(st.integers(1, 3)),
        "host_cores_near_host_nics": draw(st.integers(0, 2)),
        "isolation": draw(st.sampled_from(["tuned", "kernel", "none"])),
        "guest_cpus": draw(st.sampled_from(["dedicated", "shared"])),
        "pmd_cores_per_numa_with_nic": draw(st.integers(0, 2)),
        "pmd_cores_per_other_numa": draw(st.integers(0, 1)),
    }, "memory": {"host_reserved_mib": draw(st.sampled_from([512, 4096, 16384])),
                  "host_reserved_mib_per_numa": draw(st.sampled_from([0, 1024, 4096]))},
        "kernel": {"iommu": True}}
    if draw(st.booleans()):
        hp: dict = {"size": draw(st.sampled_from(["2M", "1G"]))}
        if draw(st.booleans()):
            hp["percent_per_numa"] = draw(st.integers(1, 100))
        else:
            hp["gib_per_numa"] = draw(st.integers(1, 64))
        data["hugepages"] = hp
    if draw(st.booleans()):
        data["sriov"] = {"nics": [{"match": {"driver": "ice"},
                                   "vfs": draw(st.sampled_from([1, 8, 64, "max"])),
                                   "physical_network": "physnet1"}]}
    if draw(st.booleans()):
        data["dpdk"] = {"nics": [{"match": {"driver": "mlx5_core"},
                                  "mtu": draw(st.sampled_from([1500, 9000]))}]}
    if draw(st.booleans()):
        data["workload"] = {"vcpus": draw(st.integers(1, 16)),
                            "memory_gib": draw(st.integers(1, 32))}
    return Profile(name="generated", data=data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(), profiles())
def test_invariants(topo, profile):
    refusal = None
    try:
        plan = derive(topo, profile, "prop")
    except (ProfileUnsatisfiable, FactsIncomplete) as exc:
        refusal = str(exc)
    if refusal is not None:
        assert refusal.startswith("node prop: needs ") or "unknown" in refusal
        return
    host = cpulist.parse(plan.host_cpus)
    isolated = cpulist.parse(plan.isolated_cpus)
    pmd = cpulist.parse(plan.pmd_cpus)
    offline = cpulist.parse(plan.offline_cpus)
    online = {c.id for c in topo.online()}
    assert not host & isolated, "a CPU is both reserved and isolated"
    assert host | pmd | isolated | offline <= online
    if profile.get("cpu.isolation") != "none":
        assert host | isolated | offline == online, "every CPU is host, isolated or offline"
    # siblings are never split between host / PMD / guest / offline
    groups = [set(p.host_cpus) for p in plan.numa] + [set(p.pmd_cpus) for p in plan.numa] + \
        [set(p.guest_cpus) for p in plan.numa]
    for core in topo.cores():
        kept = [t for t in core if t not in offline]
        owners = [i for i, g in enumerate(groups) if g & set(kept)]
        assert len(owners) <= 1, f"core {core} split over {owners}"
        if owners:
            assert set(kept) <= groups[owners[0]]
    by_node = {c.id: c.node for c in topo.cpus}
    for p in plan.numa:
        assert p.host_cpus, f"NUMA node {p.node} keeps no host CPU"
        assert {by_node[c] for c in p.host_cpus + p.pmd_cpus + p.guest_cpus} <= {p.node}
        if plan.hugepage_size:
            used = p.hugepages * PAGE_MIB[plan.hugepage_size]
            keep = profile.get("memory.host_reserved_mib_per_numa", 0)
            assert used <= (p.memory_mib or 0) - keep, f"hugepages overflow node {p.node}"
            assert p.dpdk_reserved_pages <= p.hugepages
    for v in plan.vfs:
        assert 0 < v.vfs <= v.max_vfs
    compute = plan.nova["compute"]
    dedicated = cpulist.parse(compute.get("cpu_dedicated_set", ""))
    shared = cpulist.parse(compute.get("cpu_shared_set", ""))
    assert not dedicated & shared
    assert not dedicated & pmd
    assert not dedicated & host
    if profile.get("cpu.isolation") != "none":
        assert dedicated <= isolated
