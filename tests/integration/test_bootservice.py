"""The boot service of ``--via pxe`` against real HTTP on 127.98.0.0/16.

Each test starts its own :class:`BootService` on 127.98.0.1 (an ephemeral port) and
talks to it over real sockets from 127.98.0.2, as an iPXE ROM and an installer would.
Host keys are made by the real ``ssh-keygen``. A clock the test moves stands in for
the wall clock where deadlines matter; everything else is real.
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

from metalctl.errors import InputError, MetalctlError, SshHostKeyMismatch
from metalctl.provision.bootservice import TOKEN_PLACEHOLDER, BootService
from metalctl.provision.bootstate import BootFiles
from metalctl.provision.errors import BootServiceError, InstallConflict

SERVER, CLIENT = "127.98.0.1", "127.98.0.2"
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


@pytest.fixture
def service(tmp_path: Path, files_dir: Path, clock: Clock, received: list, log_text):
    def sink(node, mac, keys):
        received.append((node, mac, keys))

    svc = BootService(SERVER, 0, tmp_path / "state", files_dir=files_dir, on_hostkeys=sink,
                      clock=clock, request_timeout_s=1.0)
    svc.start()
    yield svc
    svc.stop()


def request(svc: BootService, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(SERVER, svc.port, timeout=10,
                                      source_address=(CLIENT, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def boot_token(script: bytes) -> str:
    m = re.search(rb"inst\.ks=\S+/ks/[\w.-]+\?token=([A-Za-z0-9_-]+)", script)
    assert m, script
    return m.group(1).decode()


def hostkey_lines(tmp_path: Path, tag: str) -> str:
    """Real host public keys from ssh-keygen: ed25519 and ecdsa, as sshd's .pub files."""
    lines = []
    for kind in ("ed25519", "ecdsa"):
        key = tmp_path / f"{tag}_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{tag}",
                        "-f", str(key)], check=True, timeout=30)
        lines.append(key.with_suffix(".pub").read_text())
    return "".join(lines)


def test_known_mac_gets_the_installer_chain_with_its_token(service):
    token = service.add_install("n1", MAC, KICKSTART, FILES, 600)
    status, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    assert status == 200
    text = script.decode()
    assert text.startswith("#!ipxe\n")
    assert f"kernel --name vmlinuz {service.url}/files/vmlinuz initrd=initrd " in text
    assert f"inst.ks={service.url}/ks/n1?token={token.reveal()} " in text
    assert f"inst.stage2={service.url}/files/stage2.img" in text
    assert f"BOOTIF=01-{MAC_HYPHEN}" in text
    assert "console=ttyS0 inst.text" in text
    assert f"initrd --name initrd {service.url}/files/initrd.img" in text
    # the colon form is the same machine, and the token it carries does not change
    status, again = request(service, "GET", f"/boot/{MAC.upper()}.ipxe")
    assert status == 200
    assert boot_token(again) == token.reveal()
    # the entry script dnsmasq hands to iPXE chains the per-MAC one
    status, entry = request(service, "GET", "/boot.ipxe")
    assert status == 200
    assert f"chain --autofree {service.url}/boot/${{mac:hexhyp}}.ipxe" \
        in entry.decode()
    assert [e.stage for e in service.events("n1")] == ["added", "boot-script"]


def test_unknown_mac_boots_the_local_disk(service):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    status, script = request(service, "GET", "/boot/52-54-00-98-00-99.ipxe")
    assert status == 200
    assert "sanboot --no-describe --drive 0x80" in script.decode()
    assert b"kernel" not in script
    assert b"token" not in script
    # mixed separators are not a MAC; anything else is not a route
    assert request(service, "GET", "/boot/52:54-00-98-00-01.ipxe")[0] == 400
    assert request(service, "GET", "/boot/zz.ipxe")[0] == 404


def test_kickstart_is_served_once_with_the_right_token(service):
    service.add_install("n1", MAC, KICKSTART, FILES, 600)
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    token = boot_token(script)
    status, body = request(service, "GET", f"/ks/n1?token={token}")
    assert status == 200
    assert body.decode() == KICKSTART.replace(TOKEN_PLACEHOLDER, token)
    # reused: refused, nothing served
    assert request(service, "GET", f"/ks/n1?token={token}") == (403, b"")
    # the machine rebooting into PXE now boots its disk: the token is not handed out again
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    assert b"sanboot" in script
    assert token.encode() not in script
    stages = [e.stage for e in service.events("n1")]
    assert stages == ["added", "boot-script", "kickstart-fetched"]
    assert service.install("n1").kickstart_fetched_at is not None


def test_wrong_tokens_get_403_and_do_not_burn_the_right_one(service):
    token = service.add_install("n1", MAC, KICKSTART, FILES, 600)
    other = service.add_install("n2", "52:54:00:98:00:02", "other ks", FILES, 600)
    for bad in (secrets.token_urlsafe(32), "short", other.reveal(), ""):
        assert request(service, "GET", f"/ks/n1?token={bad}") == (403, b"")
    assert request(service, "GET", "/ks/n1") == (403, b"")
    assert request(service, "GET", f"/ks/nobody?token={token.reveal()}") == (403, b"")
    status, body = request(service, "GET", f"/ks/n1?token={token.reveal()}")
    assert status == 200
    assert body.startswith(b"text\n")


def test_expired_token_is_refused(service, clock):
    token = service.add_install("n1", MAC, KICKSTART, FILES, 60)
    clock.offset = 61.0
    assert request(service, "GET", f"/ks/n1?token={token.reveal()}") == (403, b"")
    status, _ = request(service, "POST", "/callback/n1?stage=started",
                        headers={"Authorization": f"Bearer {token.reveal()}"})
    assert status == 403
    record = service.install("n1")
    assert record.state == "timeout"
    assert service.events("n1")[-1].stage == "timeout"
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    assert b"sanboot" in script


def test_the_periodic_tick_records_timeouts_and_drops_their_tokens(tmp_path, files_dir):
    clock = Clock()
    with BootService(SERVER, 0, tmp_path / "s", files_dir=files_dir, clock=clock,
                     tick_s=0.1) as svc:
        svc.add_install("n1", MAC, KICKSTART, FILES, 60)
        clock.offset = 61.0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "timeout" not in \
                [e.stage for e in svc.state.events("n1")]:
            time.sleep(0.05)
        assert [e.stage for e in svc.state.events("n1")][-1] == "timeout"
        assert "n1" not in svc._plain


def test_callbacks_need_the_token_and_record_the_install(service, received, tmp_path):
    token = service.add_install("n1", MAC, KICKSTART, FILES, 600)
    bearer = {"Authorization": f"Bearer {token.reveal()}"}
    assert request(service, "POST", "/callback/n1?stage=end", b"",
                   {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"})[0] == 403
    assert request(service, "POST", "/callback/n1?stage=end&token=nope", b"")[0] == 403
    assert service.install("n1").state == "active"
    request(service, "GET", f"/ks/n1?token={token.reveal()}")
    for stage in ("started", "pre", "post"):
        assert request(service, "POST", f"/callback/n1?stage={stage}", b"", bearer)[0] == 200
    assert request(service, "POST", "/callback/n1?stage=kickstart-fetched", b"",
                   bearer)[0] == 400

    keys = hostkey_lines(tmp_path, "n1")
    status, _ = request(service, "POST", "/callback/n1?stage=hostkeys", keys.encode(), bearer)
    assert status == 200
    assert [(n, m) for n, m, _ in received] == [("n1", MAC)]
    assert {k.type for k in received[0][2]} == {"ssh-ed25519", "ecdsa-sha2-nistp256"}
    assert service.install("n1").hostkeys == received[0][2]
    # the same keys again are fine; different ones without a reinstall are refused
    assert request(service, "POST", "/callback/n1?stage=hostkeys", keys.encode(),
                   bearer)[0] == 200
    status, reply = request(service, "POST", "/callback/n1?stage=hostkeys",
                            hostkey_lines(tmp_path, "impostor").encode(), bearer)
    assert status == 409
    assert b"changed" in reply
    assert service.install("n1").hostkeys == received[0][2]
    assert len(received) == 1
    status, _ = request(service, "POST", "/callback/n1?stage=hostkeys",
                        b"ssh-dss AAAAB3NzaC1kc3MAAACBAP== x\n", bearer)
    assert status == 400

    assert request(service, "POST", f"/callback/n1?stage=end&token={token.reveal()}",
                   b"")[0] == 200
    record = service.install("n1")
    assert record.state == "installed"
    assert record.ended_at is not None
    stages = [e.stage for e in service.events("n1")]
    assert stages == ["added", "kickstart-fetched", "started", "pre", "post", "hostkeys",
                      "hostkeys-refused", "hostkeys-refused", "end"]
    # the install is over: its token opens nothing any more
    assert request(service, "POST", "/callback/n1?stage=post", b"", bearer)[0] == 403


def test_a_sink_that_refuses_host_keys_gets_409(tmp_path, files_dir):
    def refuse(node, mac, keys):
        raise SshHostKeyMismatch(host=node, reason="known_hosts has another key")

    with BootService(SERVER, 0, tmp_path / "s", files_dir=files_dir, on_hostkeys=refuse) as svc:
        token = svc.add_install("n1", MAC, KICKSTART, FILES, 600)
        status, _ = request(svc, "POST", f"/callback/n1?stage=hostkeys&token={token.reveal()}",
                            hostkey_lines(tmp_path, "n1").encode())
        assert status == 409
        assert svc.install("n1").hostkeys == ()
        assert "another key" in svc.events("n1")[-1].detail


def test_error_callback_fails_the_install_with_the_installer_message(service):
    token = service.add_install("n1", MAC, KICKSTART, FILES, 600)
    message = (f"%post failed: curl: (22) http://x/ks/n1?token={token.reveal()} "
               "returned 500\x1b[0m\n").encode()
    status, _ = request(service, "POST", f"/callback/n1?stage=error&token={token.reveal()}",
                        message)
    assert status == 200
    record = service.install("n1")
    assert record.state == "failed"
    assert record.error.startswith("%post failed: curl: (22)")
    assert token.reveal() not in record.error
    assert "\x1b" not in record.error


def test_restart_keeps_active_installs(tmp_path, files_dir, log_text):
    state = tmp_path / "state"
    with BootService(SERVER, 0, state, files_dir=files_dir) as first:
        old = first.add_install("n1", MAC, KICKSTART, FILES, 600)
        first.add_install("n2", "52:54:00:98:00:02", KICKSTART, FILES, 600)
        # n2 is mid-install when the service goes away: kickstart fetched, token in hand
        _, script = request(first, "GET", "/boot/52-54-00-98-00-02.ipxe")
        n2_token = boot_token(script)
        assert request(first, "GET", f"/ks/n2?token={n2_token}")[0] == 200
    with BootService(SERVER, 0, state, files_dir=files_dir) as second:
        assert {r.node for r in second.state.active()} == {"n1", "n2"}
        # n1 never booted: this process does not hold its token, so the script mints one
        _, script = request(second, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
        new = boot_token(script)
        assert new != old.reveal()
        assert request(second, "GET", f"/ks/n1?token={old.reveal()}") == (403, b"")
        assert request(second, "GET", f"/ks/n1?token={new}")[0] == 200
        # n2 carries on with the token it had
        assert request(second, "POST", f"/callback/n2?stage=end&token={n2_token}",
                       b"")[0] == 200
        assert second.install("n2").state == "installed"
        assert "token-reissued" in [e.stage for e in second.events("n1")]


def test_no_token_in_logs_or_state(service, log_text, tmp_path):
    token = service.add_install("n1", MAC, KICKSTART, FILES, 600)
    _, script = request(service, "GET", f"/boot/{MAC_HYPHEN}.ipxe")
    secret = token.reveal()
    request(service, "GET", f"/ks/n1?token={secret}")
    request(service, "GET", f"/ks/n1?token={secret}")
    request(service, "POST", f"/callback/n1?stage=pre&token={secret}", b"")
    request(service, "POST", "/callback/n1?stage=error",
            f"failed fetching ?token={secret}".encode(), {"Authorization": f"Bearer {secret}"})
    # a malformed request line: the HTTP parser quotes it verbatim in its error
    with socket.create_connection((SERVER, service.port), timeout=5,
                                  source_address=(CLIENT, 0)) as sock:
        sock.sendall(f"GET /ks/n1?token={secret} extra words HTTP/1.0\r\n\r\n".encode())
        assert sock.makefile("rb").readline().split()[1] == b"400"
    logs = log_text.getvalue()
    assert "kickstart n1 tok:" in logs
    assert "/ks/n1 -> 200" in logs
    assert "-> 403" in logs
    assert "illegal request line" in logs
    assert "token=***" in logs
    assert secret not in logs
    state_bytes = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir())
    assert b"n1" in state_bytes
    assert secret.encode() not in state_bytes
    assert "***" in repr(token)
    assert secret not in repr(token)


def test_bodies_are_bounded(service):
    token = service.add_install("n1", MAC, KICKSTART, FILES, 600).reveal()
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
    assert service.events("n1")[-1].stage == "added"
    # a request whose head never completes is dropped at the request timeout
    with socket.create_connection((SERVER, service.port), timeout=10,
                                  source_address=(CLIENT, 0)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        assert sock.recv(100) == b""
        assert 0.5 < time.monotonic() - t0 < 8.0


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
