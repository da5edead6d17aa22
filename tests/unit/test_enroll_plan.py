"""Pure parts of enrollment: naming, properties, and the patch computed against a node."""

import pytest

from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.enroll import naming
from metalctl.enroll import reconcile as enroll
from metalctl.errors import InputError
from metalctl.model.hardware import CpuFacts, DiskFacts, Hardware, NicFacts
from metalctl.model.node import DiscoveryRecord, Protocol, Status

REC = DiscoveryRecord(
    "10.1.0.12", 443, Protocol.REDFISH, Status.OK, scheme="https",
    system_id="/redfish/v1/Systems/1", uuid="4c4c4544-0031-3410-8051-b2c04f4d3232",
    vendor="Dell Inc.", model="PowerEdge R650", serial="7XJ9KD3", boot_mode="UEFI",
    credentials="rack-a", bmc_username="root",
    hardware=Hardware(CpuFacts(2, 48, 96, "Xeon", "x86-64"), 512.0,
                      (NicFacts("b4:96:91:00:00:01"),), (DiskFacts(size_gib=447.1),)))
CREDS = {"rack-a": CredentialSet("rack-a", (Credential("admin", Secret("a")),
                                            Credential("root", Secret("calvin-x"))))}


def test_naming_template_and_fallback():
    assert naming.render("{vendor}-{serial}", REC, 0) == "dell-inc.-7xj9kd3"
    no_serial = DiscoveryRecord("10.1.0.13", 623, Protocol.IPMI, Status.OK, uuid="abcdef12-3")
    assert naming.render("r01-{serial}", no_serial, 3) == "r01-abcdef12"
    assert naming.render("r01-u{octets}-{index}", no_serial, 3) == "r01-u0-13-003"
    with pytest.raises(InputError, match="unknown field 'rack'"):
        naming.validate("{rack}-{serial}")


def test_desired_node_from_record():
    [d] = enroll.desired_from_records([REC], CREDS, enroll.EnrollOptions())
    assert d.driver == "redfish"
    assert d.driver_info == {"redfish_address": "https://10.1.0.12",
                             "redfish_system_id": "/redfish/v1/Systems/1",
                             "redfish_username": "root", "redfish_verify_ca": True}
    assert d.password.reveal() == "calvin-x"  # the user that worked at discovery
    assert d.properties == {"cpus": 96, "memory_mb": 524288, "cpu_arch": "x86_64",
                            "local_gb": 446, "capabilities": "boot_mode:uefi"}
    assert d.macs == ("b4:96:91:00:00:01",)


def ironic_node(d, **over):
    node = {"uuid": "u1", "driver": d.driver, "driver_info": {**d.driver_info,
                                                              "redfish_password": "******"},
            "properties": dict(d.properties), "resource_class": "baremetal", "name": d.name,
            "conductor_group": "", "extra": {**d.extra, "metalctl_key": d.key,
                                             "metalctl_credentials": "rack-a"}}
    node.update(over)
    return node


def test_patch_is_empty_when_in_sync_and_password_not_resent():
    opts = enroll.EnrollOptions()
    [d] = enroll.desired_from_records([REC], CREDS, opts)
    assert enroll._diff(d, ironic_node(d), opts) == []


def test_patch_touches_only_drifted_fields_and_resends_password_when_set_changed():
    opts = enroll.EnrollOptions()
    [d] = enroll.desired_from_records([REC], CREDS, opts)
    node = ironic_node(d, resource_class="old",
                       extra={"metalctl_credentials": "rack-old", "owner_note": "keep"})
    paths = [op["path"] for op in enroll._diff(d, node, opts)]
    assert "/resource_class" in paths
    assert "/driver_info/redfish_password" in paths
    assert "/extra/owner_note" not in paths
    forced = enroll._diff(d, ironic_node(d), enroll.EnrollOptions(update_credentials=True))
    assert [op["path"] for op in forced] == ["/driver_info/redfish_password"]
    assert "calvin" not in str(forced)  # the patch holds a Secret until sent


def test_macs_that_cannot_be_ports():
    from metalctl.model.mac import mac_problem

    assert mac_problem("b4:96:91:00:00:01") is None
    assert mac_problem("ff:ff:ff:ff:ff:ff") == "broadcast MAC"
    assert mac_problem("01:00:5e:00:00:fb") == "multicast MAC"
    assert mac_problem("33:33:00:00:00:01") == "multicast MAC"
    assert mac_problem("00:00:00:00:00:00") == "all-zero MAC"


def test_one_system_behind_two_bmc_addresses_is_one_node_with_an_alias():
    from dataclasses import replace

    other = replace(REC, address="10.1.0.99")  # same system UUID, another BMC address
    for order in ([REC, other], [other, REC]):  # whatever order discovery returned
        [d] = enroll.desired_from_records(order, CREDS, enroll.EnrollOptions())
        assert d.key == REC.key  # the lowest key wins, every run: no flip-flop
        assert d.extra["metalctl_aliases"] == [other.key]


def test_bogus_and_repeated_nic_macs_get_no_port():
    from dataclasses import replace

    nics = (NicFacts("b4:96:91:00:00:01"), NicFacts("b4:96:91:00:00:01", name="vlan100"),
            NicFacts("ff:ff:ff:ff:ff:ff"), NicFacts("00:00:00:00:00:00"))
    rec = replace(REC, hardware=replace(REC.hardware, nics=nics))
    [d] = enroll.desired_from_records([rec], CREDS, enroll.EnrollOptions())
    assert d.macs == ("b4:96:91:00:00:01",)


def test_a_plan_never_holds_two_nodes_with_one_name_mac_or_bmc():
    from dataclasses import replace

    [a] = enroll.desired_from_records([REC], CREDS, enroll.EnrollOptions())
    same_mac = replace(a, key="k2", name="other", driver_info={
        **a.driver_info, "redfish_address": "https://10.1.0.50"})
    same_name = replace(a, key="k3", macs=(), driver_info={
        **a.driver_info, "redfish_address": "https://10.1.0.51"})
    same_bmc = replace(a, key="k4", name="third", macs=())
    refused = enroll.refuse_duplicates([a, same_mac, same_name, same_bmc])
    assert set(refused) == {"k2", "k3", "k4"}
    assert "same MAC b4:96:91:00:00:01" in refused["k2"]
    assert f"same name {a.name}" in refused["k3"]
    assert "same BMC" in refused["k4"]


@pytest.mark.parametrize("mac", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00:00:00:00:00:00"])
def test_an_inventory_port_with_a_non_unicast_mac_is_an_input_error(mac):
    from metalctl.enroll import inventory

    with pytest.raises(InputError, match="no NIC has it as its own"):
        inventory.normalise_mac("nodes.yaml", "nodes[0].ports[0].address", mac)
