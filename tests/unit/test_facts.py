import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalctl import cpulist
from metalctl.errors import InputError
from metalctl.model.topology import Topology
from metalctl.profile.facts import inband, ironic_inspection

SAMPLES = Path(__file__).parent.parent / "samples" / "facts"


def sample(name: str) -> Topology:
    return inband.parse((SAMPLES / name).read_text(), path=name)


@given(st.sets(st.integers(0, 300)))
def test_cpulist_round_trips(cpus):
    assert cpulist.parse(cpulist.format(cpus)) == cpus


def test_cpulist_rejects_garbage():
    with pytest.raises(ValueError, match="5-3"):
        cpulist.parse("0-2,5-3")
    assert cpulist.format([3, 1, 2, 7]) == "1-3,7"


def test_dual_socket_sample_interleaved_numbering():
    t = sample("r750-2s-48c-512g.txt")
    assert t.summary()["cores"] == 48
    assert t.threads_per_core() == 2
    assert t.node_ids() == [0, 1]
    # Dell-style numbering: even CPUs on node 0, siblings 48 apart
    assert t.cores(0)[:2] == [(0, 48), (2, 50)]
    assert t.cores(1)[0] == (1, 49)
    assert t.node(1).memory_mib == 264189136 // 1024
    nics = {n.name: n for n in t.nics}
    assert (nics["ens1f0"].numa_node, nics["ens1f0"].max_vfs) == (0, 128)
    assert nics["ens6f0np0"].vf_device_id == "101e"
    assert nics["ens6f0np0"].numa_node == 1
    assert nics["eno8303"].max_vfs == 0  # no sriov_totalvfs: no SR-IOV
    assert nics["eno8403"].speed_mbps is None  # link down reads -1
    assert "pdpe1gb" in t.cpu_flags
    assert t.cpu_vendor == "intel"


def test_single_node_box_reports_unknown_nic_numa():
    t = sample("edge-1s-12c-64g.txt")
    assert t.node_ids() == [0]
    assert t.cores(0)[0] == (0, 12)
    assert all(n.numa_node is None for n in t.nics)  # sysfs says -1


def test_truncated_output_is_refused_with_the_section():
    text = (SAMPLES / "edge-1s-12c-64g.txt").read_text().replace("### end\n", "")
    with pytest.raises(InputError, match="truncated"):
        inband.parse(text, path="x.txt")
    broken = "### lscpu\n{not json\n### end\n"
    with pytest.raises(InputError, match="x.txt: lscpu: not JSON"):
        inband.parse(broken, path="x.txt")


def test_this_machine_topology_is_collected():
    t = inband.collect_local()
    assert t.online(), "lscpu gave no CPUs"
    assert t.node_ids()
    assert all(t.node(n).memory_mib for n in t.node_ids())
    assert t.cmdline is not None
    assert Topology.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_ironic_inspection_numa_topology():
    data = json.loads((SAMPLES / "ironic-inspection-2s.json").read_text())
    t = ironic_inspection.parse(data)
    assert t.node_ids() == [0, 1]
    assert t.cores(0)[0] == (0, 8)
    assert t.node(1).memory_mib == 32 * 1024
    assert {n.name: n.numa_node for n in t.nics} == {"eno1": 0, "ens2f0": 1}
    assert "nics.max_vfs" in t.unknown
    with pytest.raises(InputError, match=r"numa_topology.cpus\[0\]"):
        ironic_inspection.parse({"numa_topology": {"cpus": [{"cpu": 0}]}})
