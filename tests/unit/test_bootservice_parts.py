"""The boot service's parts without a server: tokens, host keys, MACs, boot files, state.

Host keys come from the real ``ssh-keygen``; the state is a real SQLite file.
"""

from __future__ import annotations

import base64
import struct
import subprocess

import pytest

from metalctl.credentials import Secret
from metalctl.errors import InputError, InstallConflict
from metalctl.provision import hostkeys, tokens
from metalctl.provision.bootstate import BootFiles, BootState, normalise_mac


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    """Real public keys by ssh-keygen: {name: '.pub' line}."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name, args in {"ed25519": ["-t", "ed25519"], "ecdsa256": ["-t", "ecdsa"],
                       "ecdsa521": ["-t", "ecdsa", "-b", "521"],
                       "rsa3072": ["-t", "rsa", "-b", "3072"],
                       "rsa1024": ["-t", "rsa", "-b", "1024"],
                       "ed25519b": ["-t", "ed25519"]}.items():
        subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", "root@host", *args,
                        "-f", str(d / name)], check=True, timeout=60)
        out[name] = (d / f"{name}.pub").read_text().strip()
    return out


def test_tokens_are_random_well_formed_and_checked_against_digests():
    a, b = tokens.issue(), tokens.issue()
    assert isinstance(a, Secret)
    assert a.reveal() != b.reveal()
    assert tokens.well_formed(a.reveal())
    assert tokens.matches(a.reveal(), tokens.digest(a))
    assert not tokens.matches(b.reveal(), tokens.digest(a))
    assert not tokens.matches(None, tokens.digest(a))
    assert not tokens.matches("", tokens.digest(a))
    assert not tokens.matches(a.reveal() + "x", tokens.digest(a))
    assert not tokens.matches(a.reveal(), None)
    # the empty-digest stand-in can never be matched
    assert not tokens.matches("", tokens.digest(""))


def test_fingerprint_reveals_neither_token_nor_stored_digest():
    t = tokens.issue()
    fp = tokens.fingerprint(t)
    assert fp.startswith("tok:")
    assert len(fp) == 12
    assert fp[4:] not in t.reveal()
    assert fp[4:] not in tokens.digest(t)
    assert tokens.fingerprint(t.reveal()) == fp
    assert tokens.fingerprint(None) == "tok:none"


@pytest.mark.parametrize("name", ["ed25519", "ecdsa256", "ecdsa521", "rsa3072"])
def test_real_host_keys_parse_and_fingerprint_like_ssh_keygen(keys, name, tmp_path):
    (key,) = hostkeys.parse(keys[name] + "\n")
    assert keys[name].startswith(f"{key.type} {key.blob_b64} ")
    pub = tmp_path / "k.pub"
    pub.write_text(keys[name] + "\n")
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    assert listed.split()[1] == key.fingerprint
    assert key.known_hosts_line("n1", "10.98.0.11") == f"n1,10.98.0.11 {key.type} " \
        f"{key.blob_b64}"


def test_a_host_body_with_several_keys_comments_and_duplicates(keys):
    body = "\n".join(["# from %post", keys["ed25519"], "", keys["ecdsa256"], keys["ed25519"]])
    parsed = hostkeys.parse(body)
    assert [k.type for k in parsed] == ["ssh-ed25519", "ecdsa-sha2-nistp256"]


def _blob(*parts: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(p)) + p for p in parts)).decode()


@pytest.mark.parametrize(("body", "reason"), [
    ("", "no host key"),
    ("ssh-dss AAAAB3NzaC1kc3M=", "not one of"),
    ("ssh-ed25519 !!!notbase64", "base64"),
    ("ssh-ed25519", "expected"),
    (f"ssh-ed25519 {_blob(b'ssh-ed25519', b'short')}", "malformed"),
    (f"ssh-ed25519 {_blob(b'ssh-ed25519', bytes(32), b'extra')}", "malformed"),
    (f"ssh-rsa {_blob(b'ssh-ed25519', bytes(32))}", "not of the declared type"),
    (f"ecdsa-sha2-nistp256 {_blob(b'ecdsa-sha2-nistp256', b'nistp384', bytes([4]) * 65)}",
     "malformed"),
    ("ssh-ed25519 " + base64.b64encode(struct.pack(">I", 99) + b"ssh").decode(), "truncated"),
    ("ssh-ed25519 " + "A" * 5000, "longer than"),
])
def test_malformed_keys_are_refused(body, reason):
    with pytest.raises(InputError) as info:
        hostkeys.parse(body)
    assert reason in str(info.value)


def test_weak_rsa_and_two_keys_of_one_type_are_refused(keys):
    with pytest.raises(InputError, match="1024 bits"):
        hostkeys.parse(keys["rsa1024"])
    with pytest.raises(InputError, match="second, different ssh-ed25519"):
        hostkeys.parse(keys["ed25519"] + "\n" + keys["ed25519b"])


@pytest.mark.parametrize(("raw", "want"), [
    ("52-54-00-AB-cd-EF", "52:54:00:ab:cd:ef"), ("52:54:00:ab:cd:ef", "52:54:00:ab:cd:ef")])
def test_macs_in_ipxe_and_colon_form(raw, want):
    assert normalise_mac(raw) == want


@pytest.mark.parametrize("raw", ["52:54-00:ab:cd:ef", "52:54:00:ab:cd", "5254.00ab.cdef",
                                 "52:54:00:ab:cd:eg", "52:54:00:ab:cd:ef:00", ""])
def test_malformed_macs_are_refused(raw):
    with pytest.raises(InputError):
        normalise_mac(raw)


@pytest.mark.parametrize("files", [
    BootFiles("http://h/k ernel", "i"), BootFiles("k", "i", "http://h/${x}"),
    BootFiles("k", "i", kernel_args=("a&&reboot",)), BootFiles("k", "/abs/i"),
    BootFiles("k/../../etc/shadow", "i"), BootFiles("k", "i", kernel_args=("x'y",))])
def test_boot_files_unsafe_in_ipxe_are_refused(files):
    with pytest.raises(InputError):
        files.validate()


def test_state_keeps_installs_across_reopen_and_applies_deadlines(tmp_path):
    now = [1000.0]
    files = BootFiles("http://h/vmlinuz", "http://h/initrd")
    state = BootState(tmp_path, clock=lambda: now[0])
    state.add("n1", "52:54:00:98:00:01", tokens.digest("t" * 43), "ks", files, 60)
    with pytest.raises(InstallConflict):
        state.add("n2", "52:54:00:98:00:01", tokens.digest("u" * 43), "ks", files, 60)
    with pytest.raises(InstallConflict, match="same name but for case"):
        state.add("N1", "52:54:00:98:00:09", tokens.digest("u" * 43), "ks", files, 60)
    state.close()
    assert oct((tmp_path / "bootservice.db").stat().st_mode & 0o777) == "0o600"
    again = BootState(tmp_path, clock=lambda: now[0])
    assert [r.node for r in again.active()] == ["n1"]
    cb = tokens.digest("c" * 43)
    assert again.take_kickstart("n1", tokens.digest("u" * 43), cb, "x", bind=True) is None
    assert again.take_kickstart("n1", tokens.digest("t" * 43), cb, "x", bind=True) == "ks"
    assert again.take_kickstart("n1", tokens.digest("t" * 43), cb, "x", bind=True) is None
    auth = again.auth("n1")
    assert (auth.ticket_digest, auth.token_digest, auth.bound_peer) == (None, cb, "x")
    now[0] += 61
    assert again.expire() == ["n1"]
    assert again.get("n1").state == "timeout"
    # a timed-out install frees its MAC for the next install
    again.add("n2", "52:54:00:98:00:01", tokens.digest("u" * 43), "ks", files, 60)
    assert [e.stage for e in again.events("n1")] == ["added", "kickstart-fetched", "timeout"]
    again.close()


def test_install_timings_follow_when_steps_happened_not_when_they_were_recorded():
    from metalctl.provision.stage import _timings
    # the power request returned (and was recorded) after the boot script was fetched
    events = [("added", 100.0), ("boot-script", 101.5), ("power", 100.5),
              ("kickstart-fetched", 104.0), ("boot-script", 110.0)]
    timings = _timings(events, 100.0, then=[("ssh", 120.0)])
    assert list(timings) == ["power", "boot-script", "kickstart-fetched", "ssh"]
    assert timings == {"power": 0.5, "boot-script": 1.0, "kickstart-fetched": 2.5,
                       "ssh": 16.0}


def test_a_ticket_is_short_lived_and_the_state_binds_once(tmp_path):
    now = [1000.0]
    files = BootFiles("http://h/vmlinuz", "http://h/initrd")
    state = BootState(tmp_path, clock=lambda: now[0])
    ticket, cb = tokens.digest("t" * 43), tokens.digest("c" * 43)
    state.add("n1", "52:54:00:98:00:01", ticket, "ks", files, 600, ticket_ttl_s=30)
    now[0] += 31  # the install is alive, its ticket is not
    assert state.auth("n1").state == "active"
    assert state.take_kickstart("n1", ticket, cb, "10.0.0.5", bind=False) is None
    state.set_ticket("n1", ticket, now[0] + 30)
    assert state.take_kickstart("n1", ticket, cb, "10.0.0.9", bind=False) == "ks"
    assert state.auth("n1").bound_peer is None  # Ironic's conductor fetched it
    assert state.bind("n1", "10.0.0.5")
    assert not state.bind("n1", "10.0.0.6")
    assert state.auth("n1").bound_peer == "10.0.0.5"
    assert state.advance("n1", 2, "pre")
    assert not state.advance("n1", 2, "pre")  # never twice
    assert [e.stage for e in state.events("n1")] == ["added", "kickstart-fetched", "bound",
                                                     "pre"]


def test_refusals_are_recorded_up_to_a_bound(tmp_path):
    from metalctl.provision.bootstate import MAX_REFUSALS_RECORDED

    state = BootState(tmp_path)
    state.add("n1", "52:54:00:98:00:01", tokens.digest("t" * 43), "ks",
              BootFiles("http://h/k", "http://h/i"), 600)
    recorded = [state.refused("n1", "callback-refused", f"try {i}") for i in range(40)]
    assert recorded.count(True) == MAX_REFUSALS_RECORDED
    assert len(state.events("n1")) == MAX_REFUSALS_RECORDED + 1


def test_a_state_file_of_the_first_release_gains_the_new_columns(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "bootservice.db")
    old.executescript("""CREATE TABLE installs (node TEXT PRIMARY KEY, mac TEXT NOT NULL,
        token_sha256 TEXT NOT NULL, kickstart TEXT NOT NULL, boot_files TEXT NOT NULL,
        state TEXT NOT NULL, created_at REAL NOT NULL, deadline_at REAL NOT NULL,
        script_served_at REAL, kickstart_fetched_at REAL, ended_at REAL, hostkeys TEXT,
        error TEXT);""")
    old.execute("INSERT INTO installs VALUES ('n1', '52:54:00:98:00:01', 'd', 'ks', "
                "'{\"kernel\": \"k\", \"initrd\": \"i\"}', 'active', 1, 9e12, NULL, NULL, "
                "NULL, NULL, NULL)")
    old.commit()
    old.close()
    state = BootState(tmp_path)
    record = state.get("n1")
    assert (record.fetcher, record.bound_address, record.step) == ("machine", None, 0)
    assert state.auth("n1").ticket_digest is None  # its boot script mints a ticket


def test_dnsmasq_pins_and_leases_say_which_address_a_mac_has(tmp_path):
    from metalctl.provision.dnsmasq import DnsmasqLeases

    leases = tmp_path / "leases"
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text("interface=br0\ndhcp-range=10.0.0.100,10.0.0.199,1h\n"
                    "dhcp-host=52:54:00:aa:00:01,10.0.0.10,m1\n"
                    "dhcp-host=52:54:00:aa:00:02,m2   # named only\n"
                    f"dhcp-leasefile={leases}\n")
    src = DnsmasqLeases(conf)
    assert src.addresses("52-54-00-AA-00-01") == {"10.0.0.10"}
    assert src.addresses("52:54:00:aa:00:02") == frozenset()  # no lease yet: refuse
    leases.write_text("1765000000 52:54:00:aa:00:02 10.0.0.150 m2 01:52:54:00:aa:00:02\n"
                      "0 52:54:00:aa:00:03 10.0.0.151 * *\n")
    assert src.addresses("52:54:00:aa:00:02") == {"10.0.0.150"}
    # proxy mode: the site's DHCP server leases, this file cannot know
    conf.write_text("interface=br0\ndhcp-range=10.0.0.0,proxy\n")
    assert src.addresses("52:54:00:aa:00:02") is None
    conf.unlink()
    from metalctl.errors import BootServiceError

    with pytest.raises(BootServiceError):
        src.addresses("52:54:00:aa:00:02")
