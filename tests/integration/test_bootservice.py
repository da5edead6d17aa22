"""The boot service of ``--via pxe`` against real HTTP on 127.98.0.0/16.

Each test starts its own :class:`BootService` on 127.98.0.1 (an ephemeral port) and
talks to it over real sockets from 127.98.0.2, as an iPXE ROM and an installer would;
dnsmasq's files (written here, read by :class:`DnsmasqLeases`) pin the machine's MAC to
127.98.0.2. An attacker on the provisioning network is 127.98.0.3, Ironic's conductor
127.98.0.4. Host keys are made by the real ``ssh-keygen``. A clock the test moves stands
in for the wall clock where deadlines matter; everything else is real. The hijack of
issue 19 is also replayed against a real ``metalctl serve`` process.
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from metalctl.errors import (
    BootServiceError,
    InputError,
    InstallConflict,
    MetalctlError,
    SshHostKeyMismatch,
)
from metalctl.poll import wait_for
from metalctl.provision import dnsmasq
from metalctl.provision.bootservice import TOKEN_PLACEHOLDER, BootService
from metalctl.provision.bootstate import BootFiles

SERVER, CLIENT, ATTACKER, CONDUCTOR = "127.98.0.1", "127.98.0.2", "127.98.0.3", "127.98.0.4"
MAC, MAC_HYPHEN = "52:54:00:98:00:01", "52-54-00-98-00-01"
FILES = BootFiles("vmlinuz", "initrd.img", "stage2.img", ("console=ttyS0", "inst.text"))
KICKSTART = ("text\nrootpw --iscrypted $6$salt$hash\n%post\ncurl -fsS -X POST "
             f"-H 'Authorization: Bearer {TOKEN_PLACEHOLDER}' URL\n%end\n")


class Clock:
    """Wall time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def log_text():
    """Everything the boot service logs, at DEBUG, as text."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("metalctl.provision")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield buf
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    d = tmp_path / "files"
    d.mkdir()
    (d / "vmlinuz").write_bytes(b"kernel" * 1000)
    (d / "initrd.img").write_bytes(b"initrd")
    (d / "stage2.img").write_bytes(b"stage2")
    (tmp_path / "outside").write_text("not served")
    return d


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def received() -> list:
    return []


def dnsmasq_conf(tmp_path: Path, *pins: tuple[str, str]) -> Path:
    """dnsmasq's configuration as metalctl writes it (checked by ``dnsmasq --test``),
    pinning each (MAC, address), with its lease file beside it."""
    cfg = dnsmasq.DnsmasqConfig("lo", "http://127.98.0.1:8080",
                                dhcp_range=("10.98.0.100", "10.98.0.199"), ipv6_ra=False,
                                hosts=tuple(dnsmasq.DhcpHost(m, ip) for m, ip in pins),
                                lease_file=tmp_path / "dnsmasq.leases")
    return dnsmasq.write(cfg, tmp_path / "dnsmasq.conf")


@pytest.fixture
def service(tmp_path: Path, files_dir: Path, clock: Clock, received: list, log_text):
    def sink(node, mac, keys):
        received.append((node, mac, keys))

    conf = dnsmasq_conf(tmp_path, (MAC, CLIENT), ("52:54:00:98:00:02", "127.98.0.5"))
    svc = BootService(SERVER, 0, tmp_path / "state", files_dir=files_dir, on_hostkeys=sink,
                      dhcp=dnsmasq.DnsmasqLeases(conf), clock=clock, request_timeout_s=1.0)
    svc.start()
    yield svc
    svc.stop()


def request(svc: BootService, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, *, source: str = CLIENT
            ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(SERVER, svc.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def boot_ticket(script: bytes) -> str:
    m = re.search(rb"inst\.ks=\S+/ks/[\w.-]+\?ticket=([A-Za-z0-9_-]+)", script)
    assert m, script
    return m.group(1).decode()


def served_token(kickstart: bytes) -> str:
    m = re.search(rb"Authorization: Bearer ([A-Za-z0-9_-]{43})", kickstart)
    assert m, kickstart
    return m.group(1).decode()


def start_install(svc: BootService, node: str = "n1", mac: str = MAC,
                  source: str = CLIENT) -> str:
    """What iPXE and the installer do first: boot script, kickstart; the callback token."""
    _, script = request(svc, "GET", f"/boot/{mac.replace(':', '-')}.ipxe", source=source)
    status, body = request(svc, "GET", f"/ks/{node}?ticket={boot_ticket(script)}",
                           source=source)
    assert status == 200, body
    return served_token(body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stages(svc: BootService, node: str = "n1") -> list[str]:
    return [e.stage for e in svc.events(node)]


def hostkey_lines(tmp_path: Path, tag: str) -> str:
    """Real host public keys from ssh-keygen: ed25519 and ecdsa, as sshd's .pub files."""
    lines = []
    for kind in ("ed25519", "ecdsa"):
        key = tmp_path / f"{tag}_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{tag}",
                        "-f", str(key)], check=True, timeout=30)
        lines.append(key.with_suffix(".pub").read_text())
    return "".join(lines)


def test_known_mac_gets_the_installer_chain_with_a_ticket(service):
    ticket = service.add_install("n1", MAC, KICKSTART, FILES, 600)
    status, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    assert status == 200
    text = script.decode()
    assert text.startswith("#!ipxe\n")
    assert f"kernel --name vmlinuz {service.url}/files/vmlinuz initrd=initrd " in text
    assert f"inst.ks={service.url}/ks/n1?ticket={ticket.reveal()} " in text
    assert f"inst.stage2={service.url}/files/stage2.img" in text
    assert f"BOOTIF=01-{MAC_HYPHEN}" in text
    assert "console=ttyS0 inst.text" in text
    assert f"initrd --name initrd {service.url}/files/initrd.img" in text
    assert "token" not in text  # the callback token does not exist yet
    # the colon form is the same machine, and an iPXE retry gets the same ticket
    status, again = request(service, "GET", f"/boot/{MAC.upper()}.ipxe")
    assert status == 200
    assert boot_ticket(again) == ticket.reveal()
    # the entry script dnsmasq hands to iPXE chains the per-MAC one
    status, entry = request(service, "GET", "/boot.ipxe")
    assert status == 200
    assert f"chain --autofree {service.url}/boot/${{mac:hexhyp}}.ipxe" \
        in entry.decode()
    assert stages(service) == ["added", "boot-script"]


def test_unknown_mac_boots_the_local_disk(service):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    status, script = request(service, "GET", "/boot/52-54-00-98-00-99.ipxe")
    assert status == 200
    assert "sanboot --no-describe --drive 0x80" in script.decode()
    assert b"kernel" not in script
    assert b"ticket" not in script
    # mixed separators are not a MAC; anything else is not a route
    assert request(service, "GET", "/boot/52:54-00-98-00-01.ipxe")[0] == 400
    assert request(service, "GET", "/boot/zz.ipxe")[0] == 404


def test_kickstart_is_served_once_with_a_fresh_callback_token(service):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    ticket = boot_ticket(script)
    status, body = request(service, "GET", f"/ks/n1?ticket={ticket}")
    assert status == 200
    token = served_token(body)
    assert token != ticket
    assert body.decode() == KICKSTART.replace(TOKEN_PLACEHOLDER, token)
    # replayed: refused, nothing served, recorded on the node
    assert request(service, "GET", f"/ks/n1?ticket={ticket}") == (403, b"")
    # the machine rebooting into PXE now boots its disk: nothing is handed out again
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    assert b"sanboot" in script
    assert ticket.encode() not in script
    assert stages(service) == ["added", "boot-script", "kickstart-fetched",
                               "kickstart-refused"]
    record = service.install("n1")
    assert record.kickstart_fetched_at is not None
    assert record.bound_address == CLIENT
    # the ticket is not a callback token, nor the token a ticket
    assert request(service, "POST", "/callback/n1?stage=pre", b"", bearer(ticket))[0] == 403


def test_wrong_tickets_get_403_and_do_not_burn_the_right_one(service):
    ticket = service.add_install("n1", MAC, KICKSTART, FILES, 600)
    other = service.add_install("n2", "52:54:00:98:00:02", "other ks", FILES, 600)
    for bad in (secrets.token_urlsafe(32), "short", other.reveal(), ""):
        assert request(service, "GET", f"/ks/n1?ticket={bad}") == (403, b"")
    assert request(service, "GET", "/ks/n1") == (403, b"")
    assert request(service, "GET", f"/ks/n1?token={ticket.reveal()}") == (403, b"")
    assert request(service, "GET", f"/ks/nobody?ticket={ticket.reveal()}") == (403, b"")
    status, body = request(service, "GET", f"/ks/n1?ticket={ticket.reveal()}")
    assert status == 200
    assert body.startswith(b"text\n")


def test_expired_install_and_expired_ticket_are_refused(service, clock):
    ticket = service.add_install("n1", MAC, KICKSTART, FILES, 60)
    clock.offset = 61.0
    assert request(service, "GET", f"/ks/n1?ticket={ticket.reveal()}") == (403, b"")
    record = service.install("n1")
    assert record.state == "timeout"
    assert stages(service)[-1] == "timeout"
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    assert b"sanboot" in script
    # a ticket lives ticket_ttl_s (900 s), not the install's deadline: the machine's
    # next boot script carries a new one
    clock.offset = 0.0
    ticket = service.add_install("n1", MAC, KICKSTART, FILES, 3600, replace=True)
    clock.offset = 901.0
    assert request(service, "GET", f"/ks/n1?ticket={ticket.reveal()}") == (403, b"")
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    fresh = boot_ticket(script)
    assert fresh != ticket.reveal()
    assert request(service, "GET", f"/ks/n1?ticket={fresh}")[0] == 200
    assert "ticket-reissued" in stages(service)


def test_the_periodic_tick_records_timeouts_and_drops_their_tickets(tmp_path, files_dir):
    clock = Clock()
    with BootService(SERVER, 0, tmp_path / "s", files_dir=files_dir, clock=clock,
                     tick_s=0.1) as svc:
        svc.add_install("n1", MAC, KICKSTART, FILES, 60)
        clock.offset = 61.0
        wait_for(lambda: "timeout" in stages(svc), timeout_s=5, interval_s=0.05,
                 what="the tick's timeout record", ready=bool)
        assert stages(svc)[-1] == "timeout"
        assert "n1" not in svc._tickets


def test_callbacks_in_order_install_the_node_with_its_keys(service, received, tmp_path):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    # before the kickstart is served there is no callback token at all
    assert request(service, "POST", "/callback/n1?stage=end", b"",
                   bearer(secrets.token_urlsafe(32)))[0] == 403
    token = start_install(service)
    assert request(service, "POST", "/callback/n1?stage=end&token=nope", b"")[0] == 403
    assert service.install("n1").state == "active"
    for stage in ("started", "pre", "post"):
        assert request(service, "POST", f"/callback/n1?stage={stage}", b"",
                       bearer(token))[0] == 200
    assert request(service, "POST", "/callback/n1?stage=kickstart-fetched", b"",
                   bearer(token))[0] == 400
    status, _ = request(service, "POST", "/callback/n1?stage=hostkeys",
                        b"ssh-dss AAAAB3NzaC1kc3MAAACBAP== x\n", bearer(token))
    assert status == 400  # not a key: refused, the install waits for real ones
    keys = hostkey_lines(tmp_path, "n1")
    status, _ = request(service, "POST", "/callback/n1?stage=hostkeys", keys.encode(),
                        bearer(token))
    assert status == 200
    assert [(n, m) for n, m, _ in received] == [("n1", MAC)]
    assert {k.type for k in received[0][2]} == {"ssh-ed25519", "ecdsa-sha2-nistp256"}
    assert service.install("n1").hostkeys == received[0][2]
    assert request(service, "POST", f"/callback/n1?stage=end&token={token}", b"")[0] == 200
    record = service.install("n1")
    assert record.state == "installed"
    assert record.ended_at is not None
    assert stages(service) == ["added", "callback-refused", "boot-script",
                               "kickstart-fetched", "callback-refused", "started", "pre",
                               "post", "hostkeys-refused", "hostkeys", "end"]
    # the install is over: its token opens nothing any more, and nothing is recorded
    assert request(service, "POST", "/callback/n1?stage=end", b"", bearer(token))[0] == 403
    assert len(stages(service)) == 11


def test_out_of_order_and_repeated_callbacks_are_refused_and_recorded(service, tmp_path):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    token = start_install(service)
    keys = hostkey_lines(tmp_path, "n1").encode()
    cb = "/callback/n1?stage="
    assert request(service, "POST", cb + "pre", b"", bearer(token))[0] == 200
    status, reply = request(service, "POST", cb + "pre", b"", bearer(token))
    assert status == 409
    assert b"out of order" in reply
    assert request(service, "POST", cb + "hostkeys", keys, bearer(token))[0] == 200
    status, reply = request(service, "POST", cb + "started", b"", bearer(token))
    assert (status, reply) == (409, b"started out of order: the install already "
                                    b"reported hostkeys\n")
    # the same keys again: refused, nothing changes, the install goes on
    assert request(service, "POST", cb + "hostkeys", keys, bearer(token))[0] == 409
    assert service.install("n1").state == "active"
    refused = [e.detail for e in service.events("n1") if e.stage == "callback-refused"]
    assert len(refused) == 3
    assert all(f"from {CLIENT}" in d for d in refused)
    assert token not in " ".join(refused)
    assert request(service, "POST", cb + "end", b"", bearer(token))[0] == 200
    assert service.install("n1").state == "installed"


def test_end_without_host_keys_fails_the_node_loudly(service):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    token = start_install(service)
    assert request(service, "POST", "/callback/n1?stage=pre", b"", bearer(token))[0] == 200
    status, reply = request(service, "POST", "/callback/n1?stage=end", b"", bearer(token))
    assert status == 409
    record = service.install("n1")
    assert record.state == "failed"
    assert "without delivering its SSH host keys" in record.error
    assert "--redo" in record.error
    assert record.hostkeys == ()
    assert stages(service)[-1] == "end-refused"


def test_a_second_set_of_host_keys_fails_the_node_and_trusts_nothing_new(
        service, received, tmp_path):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    token = start_install(service)
    first = hostkey_lines(tmp_path, "n1").encode()
    assert request(service, "POST", "/callback/n1?stage=hostkeys", first,
                   bearer(token))[0] == 200
    status, reply = request(service, "POST", "/callback/n1?stage=hostkeys",
                            hostkey_lines(tmp_path, "impostor").encode(), bearer(token))
    assert status == 409
    record = service.install("n1")
    assert record.state == "failed"
    assert "second, different set of SSH host keys" in record.error
    assert f"from {CLIENT}" in record.error
    assert "reinstall" in record.error
    assert len(received) == 1  # the sink never saw the second set
    assert record.hostkeys == received[0][2]
    assert request(service, "POST", "/callback/n1?stage=end", b"", bearer(token))[0] == 403


def test_the_hijack_of_issue_19_fails(service, received, tmp_path):
    """An attacker who knows the MAC: boot script, then hostkeys and end with what it
    gave. Nothing it gets opens a callback; the real machine installs with its own keys."""
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe", source=ATTACKER)
    ticket = boot_ticket(script)
    evil = hostkey_lines(tmp_path, "evil")
    for stage, body in (("hostkeys", evil.encode()), ("end", b"")):
        assert request(service, "POST", f"/callback/n1?stage={stage}", body, bearer(ticket),
                       source=ATTACKER)[0] == 403
        assert request(service, "POST", f"/callback/n1?stage={stage}&token={ticket}", body,
                       source=ATTACKER)[0] == 403
    # the ticket from another address than DHCP gave the MAC: no kickstart, no token
    assert request(service, "GET", f"/ks/n1?ticket={ticket}", source=ATTACKER) == (403, b"")
    # HEAD neither: it answers like GET (Ironic HEADs before it GETs)
    assert request(service, "HEAD", f"/ks/n1?ticket={ticket}", source=ATTACKER)[0] == 403
    record = service.install("n1")
    assert (record.state, record.hostkeys, record.kickstart_fetched_at) == ("active", (), None)
    refused = [e for e in service.events("n1") if e.stage.endswith("-refused")]
    assert [e.stage for e in refused] == ["callback-refused"] * 4 + ["kickstart-refused"]
    assert f"{ATTACKER} is not the address DHCP gave {MAC} ({CLIENT})" in refused[-1].detail
    # the machine, from its own address, with the same ticket: not burned by the attempts
    token = start_install(service)
    own = hostkey_lines(tmp_path, "own")
    assert request(service, "POST", "/callback/n1?stage=hostkeys", own.encode(),
                   bearer(token))[0] == 200
    # the real token from another address: refused and recorded
    assert request(service, "POST", "/callback/n1?stage=hostkeys", evil.encode(),
                   bearer(token), source=ATTACKER)[0] == 403
    assert request(service, "POST", "/callback/n1?stage=end", b"", bearer(token),
                   source=ATTACKER)[0] == 403
    assert service.events("n1")[-1].detail == (
        f"end from {ATTACKER}: the install is bound to {CLIENT}, the machine's address")
    assert service.install("n1").state == "active"
    assert request(service, "POST", "/callback/n1?stage=end", b"", bearer(token))[0] == 200
    record = service.install("n1")
    assert record.state == "installed"
    assert {k.blob_b64 for k in record.hostkeys} == {ln.split()[1] for ln in own.splitlines()}
    assert [node for node, _, _ in received] == ["n1"]


def test_without_dhcp_knowledge_the_first_fetch_binds_the_install(tmp_path, files_dir):
    """No lease source: the address that fetched the kickstart is the install's, and the
    token it carries counts from nowhere else (the weaker guarantee docs/bootservice.md
    states)."""
    with BootService(SERVER, 0, tmp_path / "s", files_dir=files_dir) as svc:
        svc.add_install("n1", MAC, KICKSTART, FILES, 600)
        token = start_install(svc)
        assert request(svc, "POST", "/callback/n1?stage=pre", b"", bearer(token),
                       source=ATTACKER)[0] == 403
        assert request(svc, "POST", "/callback/n1?stage=pre", b"", bearer(token))[0] == 200
        assert svc.install("n1").bound_address == CLIENT


def test_through_ironic_the_first_callback_from_the_leased_address_binds(
        service, tmp_path):
    """Ironic's conductor fetches the kickstart (HEAD first), not the machine: the install
    binds at the first callback, which must come from the address DHCP gave the MAC."""
    ticket = service.add_install("n1", MAC, KICKSTART, FILES, 600, fetcher="ironic")
    # the MAC's boot script is Ironic's business: metalctl's hands nothing out
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    assert b"sanboot" in script
    url = f"/ks/n1?ticket={ticket.reveal()}"
    for _ in range(2):
        status, _ = request(service, "HEAD", url, source=CONDUCTOR)
        assert status == 200
    status, body = request(service, "GET", url, source=CONDUCTOR)
    assert status == 200
    token = served_token(body)
    assert service.install("n1").bound_address is None
    assert request(service, "POST", "/callback/n1?stage=pre", b"", bearer(token),
                   source=ATTACKER)[0] == 403
    assert request(service, "POST", "/callback/n1?stage=pre", b"", bearer(token),
                   source=CONDUCTOR)[0] == 403
    assert request(service, "POST", "/callback/n1?stage=pre", b"", bearer(token))[0] == 200
    assert service.install("n1").bound_address == CLIENT
    assert request(service, "POST", "/callback/n1?stage=hostkeys",
                   hostkey_lines(tmp_path, "evil").encode(), bearer(token),
                   source=ATTACKER)[0] == 403
    assert stages(service)[-6:] == ["kickstart-fetched", "callback-refused",
                                    "callback-refused", "bound", "pre", "callback-refused"]


def test_a_sink_that_refuses_host_keys_gets_409(tmp_path, files_dir):
    def refuse(node, mac, keys):
        raise SshHostKeyMismatch(host=node, reason="known_hosts has another key")

    with BootService(SERVER, 0, tmp_path / "s", files_dir=files_dir, on_hostkeys=refuse) as svc:
        svc.add_install("n1", MAC, KICKSTART, FILES, 600)
        token = start_install(svc)
        status, _ = request(svc, "POST", f"/callback/n1?stage=hostkeys&token={token}",
                            hostkey_lines(tmp_path, "n1").encode())
        assert status == 409
        assert svc.install("n1").hostkeys == ()
        assert "another key" in svc.events("n1")[-1].detail


def test_error_callback_fails_the_install_with_the_installer_message(service):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    token = start_install(service)
    message = (f"%post failed: curl: (22) http://x/callback/n1?token={token} "
               "returned 500\x1b[0m\n").encode()
    status, _ = request(service, "POST", f"/callback/n1?stage=error&token={token}", message)
    assert status == 200
    record = service.install("n1")
    assert record.state == "failed"
    assert record.error.startswith("%post failed: curl: (22)")
    assert token not in record.error
    assert "\x1b" not in record.error
    assert request(service, "POST", "/callback/n1?stage=error", b"again",
                   bearer(token))[0] == 403  # never twice


def test_restart_keeps_active_installs(tmp_path, files_dir, log_text):
    state = tmp_path / "state"
    with BootService(SERVER, 0, state, files_dir=files_dir) as first:
        old = first.add_install("n1", MAC, KICKSTART, FILES, 600)
        first.add_install("n2", "52:54:00:98:00:02", KICKSTART, FILES, 600)
        # n2 is mid-install when the service goes away: kickstart fetched, token in hand
        n2_token = start_install(first, "n2", "52:54:00:98:00:02")
    with BootService(SERVER, 0, state, files_dir=files_dir) as second:
        assert {r.node for r in second.state.active()} == {"n1", "n2"}
        # n1 never booted: this process does not hold its ticket, so the script mints one
        _, script = request(second, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
        new = boot_ticket(script)
        assert new != old.reveal()
        assert request(second, "GET", f"/ks/n1?ticket={old.reveal()}") == (403, b"")
        assert request(second, "GET", f"/ks/n1?ticket={new}")[0] == 200
        # n2 carries on with the token it had, from the address it is bound to
        for stage in ("hostkeys", "end"):
            body = hostkey_lines(tmp_path, "n2").encode() if stage == "hostkeys" else b""
            assert request(second, "POST", f"/callback/n2?stage={stage}&token={n2_token}",
                           body)[0] == 200
        assert second.install("n2").state == "installed"
        assert "ticket-reissued" in stages(second, "n1")


def test_no_secret_in_logs_or_state(service, log_text, tmp_path):
    ticket = service.add_install("n1", MAC, KICKSTART, FILES, 600).reveal()
    request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    _, body = request(service, "GET", f"/ks/n1?ticket={ticket}")
    token = served_token(body)
    request(service, "GET", f"/ks/n1?ticket={ticket}")
    request(service, "POST", f"/callback/n1?stage=pre&token={token}", b"", source=ATTACKER)
    request(service, "POST", f"/callback/n1?stage=pre&token={token}", b"")
    request(service, "POST", "/callback/n1?stage=error",
            f"failed fetching ?token={token} ?ticket={ticket}".encode(), bearer(token))
    # a malformed request line: the HTTP parser quotes it verbatim in its error
    with socket.create_connection((SERVER, service.port), timeout=5,
                                  source_address=(CLIENT, 0)) as sock:
        sock.sendall(f"GET /ks/n1?ticket={ticket} extra words HTTP/1.0\r\n\r\n".encode())
        assert sock.makefile("rb").readline().split()[1] == b"400"
    logs = log_text.getvalue()
    assert "kickstart n1 tok:" in logs
    assert "/ks/n1 -> 200" in logs
    assert "-> 403" in logs
    assert "illegal request line" in logs
    assert "ticket=***" in logs
    for secret in (ticket, token):
        assert secret not in logs
        state_bytes = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir())
        assert secret.encode() not in state_bytes
        assert secret not in " ".join(e.detail for e in service.events("n1"))
    assert b"n1" in state_bytes


def test_bodies_are_bounded(service):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    token = start_install(service)
    status, _ = request(service, "POST", f"/callback/n1?stage=pre&token={token}",
                        b"x" * (64 * 1024 + 1))
    assert status == 413
    # chunked bodies are bounded the same way, as they arrive
    conn = http.client.HTTPConnection(SERVER, service.port, timeout=5,
                                      source_address=(CLIENT, 0))
    conn.request("POST", f"/callback/n1?stage=pre&token={token}",
                 body=iter([b"x" * 40_000, b"y" * 40_000]), encode_chunked=True)
    assert conn.getresponse().status == 413
    conn.close()
    assert stages(service)[-1] == "kickstart-fetched"
    # a request whose head never completes is dropped at the request timeout
    with socket.create_connection((SERVER, service.port), timeout=10,
                                  source_address=(CLIENT, 0)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        assert sock.recv(100) == b""
        assert 0.5 < time.monotonic() - t0 < 8.0


def _raw(svc: BootService, data: bytes) -> bytes:
    """Send ``data`` as it is; the status line and body of the answer."""
    with socket.create_connection((SERVER, svc.port), timeout=5,
                                  source_address=(CLIENT, 0)) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_many_query_fields_get_400_not_a_dropped_connection(service, log_text):
    query = "&".join(f"f{i}=v" for i in range(200))
    for path in (f"/healthz?{query}", f"/ks/n1?{query}", f"/callback/n1?{query}"):
        answer = _raw(service, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"at most 8 query fields" in answer
    assert "ERROR" not in log_text.getvalue()


def test_the_request_head_is_bounded_at_16_kib(service, log_text):
    def head(size: int) -> bytes:
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
        return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"

    assert _raw(service, head(16 * 1024)).startswith(b"HTTP/1.1 200 ")
    for size in (16 * 1024 + 1, 17 * 1024, 60 * 1024):
        answer = _raw(service, head(size))
        assert answer.startswith(b"HTTP/1.1 431 "), (size, answer[:100])
    assert "ERROR" not in log_text.getvalue()


def test_files_are_served_from_files_dir_only(service, files_dir):
    assert request(service, "GET", "/files/vmlinuz") == (200, (files_dir / "vmlinuz").read_bytes())
    for path in ("/files/../outside", "/files/%2e%2e/outside", "/files/", "/files/nope"):
        assert request(service, "GET", path)[0] == 404


def test_add_install_refuses_conflicts_and_bad_input(service, tmp_path):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    with pytest.raises(InstallConflict):
        service.add_install("n2", MAC.replace(":", "-"), KICKSTART, FILES, 600)
    with pytest.raises(InstallConflict):
        service.add_install("n1", "52:54:00:98:00:03", KICKSTART, FILES, 600)
    service.add_install("n1", "52:54:00:98:00:03", KICKSTART, FILES, 600, replace=True)
    bad = [("n 1", MAC, FILES), ("n3", "52:54:00:98:00", FILES),
           ("n3", "52:54:00:98:00:04", BootFiles("http://x/k $y", "i")),
           ("n3", "52:54:00:98:00:04", BootFiles("k", "i", kernel_args=("a;reboot",))),
           ("n3", "52:54:00:98:00:04", BootFiles("../k", "i"))]
    for node, mac, files in bad:
        with pytest.raises(InputError):
            service.add_install(node, mac, KICKSTART, files, 600)
    with pytest.raises(InputError):
        service.add_install("n3", "52:54:00:98:00:04", KICKSTART, FILES, 0)
    with BootService(SERVER, 0, tmp_path / "nofiles") as bare, pytest.raises(InputError):
        bare.add_install("n3", "52:54:00:98:00:04", KICKSTART, FILES, 600)


def test_a_taken_address_is_a_boot_service_error(service, tmp_path):
    other = BootService(SERVER, service.port, tmp_path / "other")
    with pytest.raises(BootServiceError) as info:
        other.start()
    assert isinstance(info.value, MetalctlError)
    other.stop()


def test_the_hijack_fails_against_a_real_metalctl_serve(tmp_path):
    """Issue 19's steps against ``metalctl serve`` in its own process (the stage adds the
    install through the shared state file, as `metalctl provision --boot-url` does)."""
    import os
    import subprocess
    import sys

    from metalctl.provision.bootstate import BootState

    with socket.socket() as s:
        s.bind((SERVER, 0))
        port = s.getsockname()[1]
    conf = dnsmasq_conf(tmp_path, (MAC, CLIENT))
    state_dir = tmp_path / "boot"
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "metalctl", "serve", "--bind", SERVER,
                             "--port", str(port), "--state-dir", str(state_dir),
                             "--dnsmasq-conf", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        url = f"http://{SERVER}:{port}"
        svc = BootService(SERVER, port, state_dir, public_url=url)  # the stage's side
        svc.add_install("n1", MAC, KICKSTART, BootFiles("http://f/k", "http://f/i"), 600)
        wait_for(lambda: request(svc, "GET", "/healthz")[0] == 200, timeout_s=30,
                 interval_s=0.1, what="metalctl serve: /healthz", ready=bool,
                 transient=(OSError,))
        _, script = request(svc, "GET", f"/boot/{MAC_HYPHEN}.ipxe", source=ATTACKER)
        ticket = boot_ticket(script)
        evil = hostkey_lines(tmp_path, "evil").encode()
        assert request(svc, "POST", "/callback/n1?stage=hostkeys", evil, bearer(ticket),
                       source=ATTACKER)[0] == 403
        assert request(svc, "POST", "/callback/n1?stage=end", b"", bearer(ticket),
                       source=ATTACKER)[0] == 403
        assert request(svc, "GET", f"/ks/n1?ticket={ticket}", source=ATTACKER)[0] == 403
        # the machine installs; the attacker replays the token it cannot have had
        token = start_install(svc)
        assert request(svc, "POST", "/callback/n1?stage=hostkeys", evil, bearer(token),
                       source=ATTACKER)[0] == 403
        own = hostkey_lines(tmp_path, "own").encode()
        for stage, body in (("pre", b""), ("hostkeys", own), ("end", b"")):
            assert request(svc, "POST", f"/callback/n1?stage={stage}", body,
                           bearer(token))[0] == 200
        assert request(svc, "POST", "/callback/n1?stage=end", b"", bearer(token))[0] == 403
        record = BootState(state_dir).get("n1")
        assert record.state == "installed"
        assert record.bound_address == CLIENT
        assert {k.blob_b64 for k in record.hostkeys} == {ln.split()[1] for ln in
                                                    own.decode().splitlines()}
        events = [(e.stage, e.detail) for e in BootState(state_dir).events("n1")]
        assert [s for s, _ in events if s.endswith("-refused")] == \
            ["callback-refused", "callback-refused", "kickstart-refused", "callback-refused"]
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    served = (tmp_path / "serve.log").read_text()
    assert ticket not in served
    assert token not in served
