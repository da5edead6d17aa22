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
