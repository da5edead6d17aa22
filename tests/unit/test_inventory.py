import json
from pathlib import Path

import pytest

from metalctl.enroll import inventory
from metalctl.errors import InputError

SAMPLES = Path(__file__).parent.parent / "samples" / "inventory"


def test_baremetal_create_file():
    nodes = inventory.load(SAMPLES / "baremetal-nodes.yaml")
    assert [n.name for n in nodes] == ["r01-u12", "r01-u14"]
    first = nodes[0]
    assert first.macs == ("52:54:00:aa:bb:01", "52:54:00:aa:bb:02")  # normalised
    assert "redfish_password" not in first.driver_info
    assert first.password.reveal() == "marker-file-password"
    assert first.key == "https://127.0.0.1:8443/redfish/v1/Systems/1"
    assert nodes[1].key == "ipmi://127.0.0.2:623"
    assert nodes[1].macs == ("52:54:00:aa:bb:03",)


def test_instackenv_file():
    nodes = inventory.load(SAMPLES / "instackenv.json")
    a, b = nodes
    assert a.driver == "redfish"
    assert a.driver_info["redfish_address"] == "https://127.0.0.1:8443"
    assert a.properties == {"cpus": 32, "memory_mb": 131072, "local_gb": 480,
                            "cpu_arch": "x86_64",
                            "capabilities": "boot_mode:uefi,profile:compute"}
    assert b.driver == "ipmi"
    assert b.driver_info["ipmi_port"] == 6230
    assert b.macs == ("52:54:00:cc:00:02",)


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize(("node", "field", "reason"), [
    ({"driver": "ipmi", "driver_info": {"ipmi_address": "127.0.0.9"},
      "ports": [{"address": "zz:11:22:33:44:55"}]}, "nodes[1].ports[0].address",
     "is not a MAC"),
    ({"driver": "ipmi", "driver_info": {"ipmi_address": "127.0.0.9"}, "colour": "red"},
     "nodes[1].colour", "unknown key"),
    ({"driver_info": {"ipmi_address": "127.0.0.9"}}, "nodes[1].driver", "required"),
    ({"driver": "ipmi", "driver_info": {"ipmi_address": "127.0.0.1"}}, "nodes[1]",
     "same BMC as nodes[0]"),
    ({"driver": "ipmi", "driver_info": {"ipmi_address": "127.0.0.9"},
      "ports": [{"address": "52:54:00:00:00:01"}]}, "nodes[1].ports[0].address",
     "already used by nodes[0]"),
])
def test_bad_input_names_file_and_field(tmp_path, node, field, reason):
    ok = {"driver": "ipmi", "driver_info": {"ipmi_address": "127.0.0.1", "ipmi_password": "pw1x"},
          "ports": [{"address": "52:54:00:00:00:01"}]}
    path = write(tmp_path, "nodes.json", {"nodes": [ok, node]})
    with pytest.raises(InputError) as exc:
        inventory.load(path)
    assert exc.value.path == str(path)
    assert exc.value.field == field
    assert reason in exc.value.reason
    assert "pw1x" not in str(exc.value)


def test_malformed_yaml_names_line(tmp_path):
    p = tmp_path / "nodes.yaml"
    p.write_text("nodes:\n  - name: a\n   driver: [\n")
    with pytest.raises(InputError) as exc:
        inventory.load(p)
    assert exc.value.field == "(syntax)"
    assert exc.value.line == 3


def test_instackenv_redfish_needs_system_id(tmp_path):
    p = write(tmp_path, "instackenv.json",
              {"nodes": [{"pm_type": "redfish", "pm_addr": "127.0.0.1", "pm_user": "a"}]})
    with pytest.raises(InputError) as exc:
        inventory.load(p)
    assert exc.value.field == "nodes[0].pm_system_id"


@pytest.mark.parametrize(("port", "reason"), [("ssh", "pm_port"), ("99999", "not a port"),
                                              (70000, "pm_port")])
def test_instackenv_port_as_a_word_or_out_of_range(tmp_path, port, reason):
    p = write(tmp_path, "instackenv.json", {"nodes": [
        {"pm_type": "ipmi", "pm_addr": "127.0.0.1", "pm_port": port}]})
    with pytest.raises(InputError) as exc:
        inventory.load(p)
    assert exc.value.field == "nodes[0].pm_port"
    assert reason in str(exc.value)


def test_string_where_a_list_belongs_is_refused(tmp_path):
    p = write(tmp_path, "instackenv.json", {"nodes": [
        {"pm_type": "ipmi", "pm_addr": "127.0.0.1", "mac": "52:54:00:00:00:01"}]})
    with pytest.raises(InputError) as exc:
        inventory.load(p)
    assert exc.value.field == "nodes[0].mac"
    assert "expected array, got a string" in exc.value.reason
