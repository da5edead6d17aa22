"""`metalctl nodes -o ansible`, read by Ansible's own ansible-inventory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.output import ansible
from metalctl.store import Store
from tests.consumers import run

ROOT = Path(__file__).resolve().parents[2]


def rec(address: str, rack: str | None) -> DiscoveryRecord:
    return DiscoveryRecord(address, 443, Protocol.REDFISH, Status.OK, scheme="https",
                           system_id="/redfish/v1/Systems/1", rack=rack)


def make_store(path: Path, known_hosts: Path) -> None:
    with Store(path) as store:
        nodes = [("r01-u12", "127.0.0.12", "R01", Lifecycle.AUDITED, "nfv-sriov",
                  {"address": "10.1.2.12", "ssh_user": "cloud-admin", "ssh_port": 2222}),
                 ("r01-u13", "127.0.0.13", "R01", Lifecycle.INSTALLED, "compute-general",
                  {"address": "10.1.2.13", "ssh_user": "root", "ssh_port": 22}),
                 ("r02-u01", "127.0.0.21", "R-02 (row b)", Lifecycle.ENROLLED, None, None)]
        for name, bmc, rack, state, profile, install in nodes:
            r = rec(bmc, rack)
            store.save_discovered(r)
            store.set_state(r.key, state, name=name)
            if profile:
                store.put_data(r.key, "plan", {"profile": profile, "plan": {}})
            if install:
                store.put_data(r.key, "install", {**install, "known_hosts": str(known_hosts),
                                                  "host_keys": [{"type": "ssh-ed25519",
                                                                 "key": "AAAA"}]})


def test_ansible_inventory_lists_groups_and_host_settings(tmp_path):
    known_hosts = tmp_path / "known hosts"
    make_store(tmp_path / "s.db", known_hosts)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "metalctl", "nodes", "-o", "ansible",
                          "--store", str(tmp_path / "s.db"), "--ssh-key",
                          str(tmp_path / "id_ed25519")],
                         capture_output=True, text=True, env=env, check=True, timeout=60)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(out.stdout)
    tool = Path(sys.executable).with_name("ansible-inventory")
    listed = run([str(tool), "-i", str(inv), "--list"], timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "WARNING" not in listed.stderr, listed.stderr  # group names Ansible accepts
    doc = json.loads(listed.stdout)
    groups = {g: sorted(v.get("hosts", [])) for g, v in doc.items() if g != "_meta"}
    assert groups["state_audited"] == ["r01-u12"]
    assert groups["state_installed"] == ["r01-u13"]
    assert groups["state_enrolled"] == ["r02-u01"]
    assert groups["profile_nfv_sriov"] == ["r01-u12"]
    assert groups["rack_r01"] == ["r01-u12", "r01-u13"]
    assert groups["rack_r_02__row_b_"] == ["r02-u01"]
    hv = doc["_meta"]["hostvars"]
    assert hv["r01-u12"]["ansible_host"] == "10.1.2.12"
    assert (hv["r01-u12"]["ansible_user"], hv["r01-u12"]["ansible_port"]) == ("cloud-admin", 2222)
    assert hv["r01-u12"]["ansible_ssh_common_args"] == (
        f"-o UserKnownHostsFile='{known_hosts}' -o StrictHostKeyChecking=yes")
    assert hv["r01-u12"]["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    assert "ansible_host" not in hv["r02-u01"]  # not installed: no management address yet
    assert hv["r02-u01"]["metalctl_bmc"] == "https://127.0.0.21"
    assert "AAAA" not in out.stdout  # host keys stay in known_hosts


def test_group_names_are_what_ansible_accepts():
    assert ansible.group_name("profile", "nfv-sriov") == "profile_nfv_sriov"
    assert ansible.group_name("state", "handed-off") == "state_handed_off"
