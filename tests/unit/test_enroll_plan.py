"""Pure parts of enrollment: naming, properties, and the patch computed against a node."""

from dataclasses import replace

import pytest

from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.enroll import naming
from metalctl.enroll import reconcile as enroll
from metalctl.errors import InputError
from metalctl.model.hardware import CpuFacts, DiskFacts, Hardware, NicFacts
from metalctl.model.node import DesiredNode, DiscoveryRecord, Protocol, Status

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


def _rec(address, uuid="4c4c4544-0031-3410-8051-b2c04f4d3232", **kw):
    return replace(REC, address=address, uuid=uuid, **kw)


def test_one_system_behind_two_addresses_is_one_node_with_the_lowest_address_kept():
    a, b = _rec("10.1.0.20"), _rec("10.1.0.3")  # numerically lowest, not as text
    other = _rec("10.1.0.4", uuid="11111111-2222-3333-4444-555555555555",
                 hardware=Hardware(nics=(NicFacts("b4:96:91:00:00:09"),)))
    for records in ([a, b, other], [other, b, a]):  # whatever order the store lists them
        desired = enroll.desired_from_records(records, CREDS, enroll.EnrollOptions())
        assert [d.driver_info["redfish_address"] for d in desired] == \
            ["https://10.1.0.3", "https://10.1.0.4"]
        assert desired[0].extra["metalctl_aliases"] == [a.key]
        assert "metalctl_aliases" not in desired[1].extra
    # the address already enrolled stays, so a re-run never flips it
    [kept] = enroll.desired_from_records([a, b], CREDS, enroll.EnrollOptions(), prefer={a.key})
    assert kept.key == a.key
    assert kept.extra["metalctl_aliases"] == [b.key]


def test_serial_identifies_a_system_without_uuid_but_placeholders_never_do():
    x = _rec("10.1.0.5", uuid=None, serial="ABC123")
    y = _rec("10.1.0.6", uuid="00000000-0000-0000-0000-000000000000", serial="ABC123")
    assert enroll.system_identity(x) == enroll.system_identity(y)
    kept, aliases = enroll.merge_aliases([x, y])
    assert kept == [x]
    assert aliases == {x.key: [y.key]}
    p1 = _rec("10.1.0.7", uuid=None, serial="To Be Filled By O.E.M.")
    p2 = _rec("10.1.0.8", uuid=None, serial="To Be Filled By O.E.M.")
    assert enroll.merge_aliases([p1, p2]) == ([p1, p2], {})


def test_a_host_interface_gets_no_port():
    hw = Hardware(nics=(NicFacts("b4:96:91:00:00:01"),
                        NicFacts("be:3a:f2:b6:05:9f", name="ToManager", source="host-interface")))
    [d] = enroll.desired_from_records([replace(REC, hardware=hw)], CREDS,
                                      enroll.EnrollOptions())
    assert d.macs == ("b4:96:91:00:00:01",)


@pytest.mark.parametrize(("mac", "why"), [
    ("00:00:00:00:00:00", "all-zero"), ("ff:ff:ff:ff:ff:ff", "broadcast"),
    ("01:00:5e:00:00:fb", "multicast"), ("33:33:00:00:00:01", "multicast"),
    ("b4:96:91:00:00", "not a MAC"),
])
def test_macs_that_cannot_be_ports(mac, why):
    assert why in enroll.mac_problem(mac)


def test_unicast_macs_are_fine():
    assert enroll.mac_problem("b4:96:91:00:00:01") is None
    assert enroll.mac_problem("02:00:00:00:00:01") is None  # locally administered unicast


def _node(key, origin="store", name=None, macs=(), address=None):
    return DesiredNode(key=key, origin=origin, driver="ipmi",
                       driver_info={"ipmi_address": address or key, "ipmi_port": 623},
                       name=name, macs=macs)


def test_discovered_duplicates_and_bad_macs_fail_one_by_one_naming_the_first():
    nodes = [_node("10.0.0.1", name="n1", macs=("b4:96:91:00:00:01",)),
             _node("10.0.0.2", name="n1", macs=("b4:96:91:00:00:02",)),
             _node("10.0.0.3", name="n3", macs=("b4:96:91:00:00:01",)),
             _node("10.0.0.4", name="n4", address="10.0.0.1"),
             _node("10.0.0.5", name="n5", macs=("ff:ff:ff:ff:ff:ff",)),
             _node("10.0.0.6", name="n6", macs=("b4:96:91:00:00:06",))]
    refused = enroll.refusals(nodes)
    assert sorted(refused) == [1, 2, 3, 4]
    assert "name 'n1' is already 10.0.0.1's" in str(refused[1])
    assert "MAC b4:96:91:00:00:01 is already 10.0.0.1's" in str(refused[2])
    assert "same BMC as 10.0.0.1" in str(refused[3])
    assert "broadcast" in str(refused[4])
    assert str(refused[4]).startswith("discovered 10.0.0.5: record.ports[0].address")


def test_file_duplicates_and_bad_macs_are_input_errors_naming_the_entry():
    first = _node("10.0.0.1", origin="nodes.yaml:nodes[0]", name="n1")
    with pytest.raises(InputError, match=r"nodes.yaml: nodes\[1\].name: name 'n1' is already "
                                         r"nodes.yaml:nodes\[0\]'s"):
        enroll.refusals([first, _node("10.0.0.2", origin="nodes.yaml:nodes[1]", name="n1")])
    with pytest.raises(InputError, match=r"nodes\[1\].ports\[0\].address: .*multicast"):
        enroll.refusals([first, _node("10.0.0.2", origin="nodes.yaml:nodes[1]",
                                      macs=("01:00:5e:00:00:01",))])
