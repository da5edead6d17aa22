"""metalctl's known_hosts: install-delivered keys replace a host's old lines, atomically."""

import base64
import os
import stat

import pytest

from metalctl.errors import InputError
from metalctl.provision import knownhosts
from metalctl.provision.hostkeys import HostKey


def _key(seed: int) -> HostKey:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([seed]) * 32
    return HostKey("ssh-ed25519", base64.b64encode(blob).decode())


def test_trust_writes_0600_and_replaces_only_that_hosts_lines(tmp_path):
    path = tmp_path / "state" / "known_hosts"
    assert knownhosts.trust(path, ["10.0.0.5", "node5"], [_key(1)]) == []
    knownhosts.trust(path, ["10.0.0.6"], [_key(2)])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert knownhosts.lines_for(path, "node5") == [f"10.0.0.5,node5 {_key(1).type} "
                                                    f"{_key(1).blob_b64}"]
    # a reinstall: the old lines of 10.0.0.5 go, 10.0.0.6 stays
    replaced = knownhosts.trust(path, ["10.0.0.5", "node5"], [_key(3)])
    assert len(replaced) == 1
    assert _key(1).blob_b64 in replaced[0]
    text = path.read_text()
    assert _key(1).blob_b64 not in text
    assert _key(2).blob_b64 in text
    assert _key(3).blob_b64 in text


def test_other_ports_are_bracketed_as_openssh_does(tmp_path):
    path = tmp_path / "known_hosts"
    knownhosts.trust(path, ["10.0.0.5"], [_key(1)], port=2222)
    assert path.read_text().startswith("[10.0.0.5]:2222 ssh-ed25519 ")
    assert knownhosts.lines_for(path, "10.0.0.5") == []
    assert len(knownhosts.lines_for(path, "10.0.0.5", 2222)) == 1


@pytest.mark.parametrize("host", ["", "a b", "a,b", "#x", "h\nx"])
def test_names_known_hosts_cannot_hold_are_refused(tmp_path, host):
    with pytest.raises(InputError):
        knownhosts.trust(tmp_path / "kh", [host], [_key(1)])


def test_no_key_is_refused(tmp_path):
    with pytest.raises(InputError, match="no host key"):
        knownhosts.trust(tmp_path / "kh", ["10.0.0.5"], [])


def test_a_node_enrolled_in_ironic_is_powered_through_ironic():
    """Ironic owns an enrolled node's power: switching it on behind Ironic's back is undone
    by Ironic's power-state sync (seen killing lab installs mid-way)."""
    from metalctl.model.node import DiscoveryRecord, Protocol, Status
    from metalctl.provision.power import BmcPower
    from metalctl.provision.stage import NodeInstall

    calls = []

    class FakeIronic:
        def node(self, uuid):
            return {"power_state": "power off"}

        def set_boot_device(self, uuid, device, persistent=False):
            calls.append(("boot", uuid, device, persistent))

        def set_power_state(self, uuid, state):
            calls.append(("power", uuid, state))

    rec = DiscoveryRecord(address="127.0.0.1", port=443, protocol=Protocol.REDFISH,
                          status=Status.OK)
    power = BmcPower(lambda n: None, ironic=FakeIronic())
    note = power.network_boot_once(NodeInstall("k", "n1", "52:54:00:00:00:01", rec,
                                               ironic_uuid="u-1"))
    assert calls == [("boot", "u-1", "pxe", False), ("power", "u-1", "on")]
    assert "power on" in note
