"""The lab's stand-in installer under real QEMU (TCG, never KVM), without the lab.

A kickstart rendered from the repository's own rhel9-kvm template is served once, with
the files and the install callbacks, by an HTTP server this test starts on 127.0.0.1
(the guest sees it as 10.0.2.2 through QEMU user-mode networking). These are the paths
that end before an install does: a failing ``%post`` runs ``%onerror`` and leaves no
bootable disk, and a partitioned disk without ``clearpart`` is left untouched. A whole
install, booted and proven over SSH with the delivered host key (password hash, users,
hostname, the plan's kernel arguments, the installer's log), is in
``test_provision_lab.py``, where the product drives it: one install of the same
installer, not two.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from metalctl.credentials import Secret
from metalctl.provision import kickstart as ks
from metalctl_lab import installer

pytestmark = pytest.mark.skipif(not shutil.which("qemu-system-x86_64"),
                                reason="qemu-system-x86_64 missing: run scripts/setup.sh")

MAC = "52:54:00:5e:17:01"
NODE = "standin-01"
TOKEN = "tok_standin_Zq8vL2mN4pR6sT0uW3yA5cE7"
#: what the boot script hands out: opens the kickstart once, never a callback
TICKET = "tkt_standin_Hb3nP9wQ1xK5mR7tV2yC4eG6"
INSTALL_S = float(os.environ.get("METALCTL_INSTALL_S", "300"))  # one install under load


@dataclass
class Served:
    """What the guest asked for and sent back."""
    kickstart: bytes = b""
    ks_fetches: int = 0
    callbacks: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def stages(self) -> list[str]:
        return [c.get("stage", "?") for c in self.callbacks]


class _Handler(http.server.BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        s = self.served
        if url.path == f"/ks/{NODE}":
            s.ks_fetches += 1
            ticket = urllib.parse.parse_qs(url.query).get("ticket", [""])[0]
            if ticket != TICKET or s.ks_fetches > 1:  # served once, like the boot service
                s.refused.append(self.path)
                return self._reply(403)
            return self._reply(200, s.kickstart)
        path = s.files.get(url.path.removeprefix("/files/"))
        if path is None:
            return self._reply(404)
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        with path.open("rb") as f:
            shutil.copyfileobj(f, self.wfile, 1 << 20)
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.served.refused.append(self.path)
            return self._reply(403)
        # either form of the kickstart callback: `?stage=S` with the file as the raw body,
        # or a urlencoded form (stage=S&hostkeys=...|message=...)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if "stage" in query:
            fields = {"stage": query["stage"][0], "body": body.decode(errors="replace")}
        else:
            fields = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            fields["body"] = fields.get("hostkeys") or fields.get("message") or ""
        self.served.callbacks.append(fields)
        return self._reply(200, b"ok\n")


@pytest.fixture
def server() -> Iterator[tuple[Served, int]]:
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def files() -> installer.InstallerFiles:
    return installer.ensure()


def test_ensure_builds_once_and_serves_one_directory(files: installer.InstallerFiles) -> None:
    names = {p.name for p in (files.kernel, files.initrd, files.stage2, files.liveimg)}
    assert names == {"vmlinuz", "initrd.img", "stage2.img", "liveimg.tar.gz"}
    assert {p.parent for p in (files.kernel, files.initrd, files.stage2, files.liveimg)} == \
        {files.directory}
    before = {p: p.stat().st_mtime_ns for p in files.directory.iterdir()}
    again = installer.ensure()
    assert again == files
    assert {p: p.stat().st_mtime_ns for p in files.directory.iterdir()} == before
    with tarfile.open(files.stage2) as tar:  # what inst.stage2 brings: the real tools
        names = set(tar.getnames())
    assert {"./usr/bin/curl", "./usr/sbin/sfdisk", "./usr/sbin/mke2fs", "./usr/sbin/blkid",
            "./usr/bin/extlinux", "./usr/lib/standin/anaconda"} <= names


def _render(port: int, clear_pw: str, pubkey: str) -> str:
    base = f"http://10.0.2.2:{port}"
    keys = [{"user": "root", "key": pubkey}]
    site = {"kickstart": {"install": {"liveimg": f"{base}/files/liveimg.tar.gz"},
                          "root_password": {"env": "STANDIN_ROOTPW"},
                          "ssh_keys": keys, "nameservers": ["10.0.2.3"],
                          "domain": "lab.example.net",
                          "kernel_args": ["console=ttyS0"]}}
    ks_site = ks.load_site(site, label="site", environ={"STANDIN_ROOTPW": clear_pw})
    plan = {"profile": "standin", "plan": {"kernel_args": ["mitigations=auto"],
                                           "tuned": {"profile": None}}}
    node = ks.KickstartNode(NODE, MAC, address="10.0.2.15/24", gateway="10.0.2.2")
    variables = ks.variables_for(plan, ks_site, node, callback=ks.Callback(
        f"{base}/callback/{NODE}", Secret(TOKEN)))
    return ks.render("rhel9-kvm", variables).text


class Qemu:
    """One TCG guest; always killed."""

    def __init__(self, workdir: Path, argv: list[str]) -> None:
        self.console = workdir / f"console-{int(time.time() * 1000)}.log"
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg,tb-size=128", "-m", "512", "-smp", "1",
             "-display", "none", "-monitor", "none", "-no-reboot",
             "-serial", f"file:{self.console}", *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, n: int = 40) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-n:])


def _install_argv(files: installer.InstallerFiles, disk: Path, port: int, *,
                  bootif: bool) -> list[str]:
    base = f"http://10.0.2.2:{port}"
    append = [f"inst.ks={base}/ks/{NODE}?ticket={TICKET}",
              f"inst.stage2={base}/files/stage2.img", "console=ttyS0"]
    if bootif:  # metalctl's boot service form; Ironic's anaconda template has no BOOTIF
        append = ["initrd=initrd", append[0], f"BOOTIF=01-{MAC.replace(':', '-')}",
                  *append[1:]]
    return ["-kernel", str(files.kernel), "-initrd", str(files.initrd),
            "-append", " ".join(append), *_machine(disk)]


def _machine(disk: Path) -> list[str]:
    return ["-drive", f"file={disk},format=raw,if=virtio",
            "-netdev", "user,id=n0",
            "-device", f"virtio-net-pci,netdev=n0,mac={MAC}"]


def _wait_for(served: Served, stage: str, qemu: Qemu, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while stage not in served.stages():
        if qemu.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {stage!r} callback (got {served.stages()}); console:\n"
                        f"{qemu.tail()}")
        time.sleep(1)


def _keypair(tmp: Path) -> tuple[Path, str]:
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True)
    return key, (tmp / "id_ed25519.pub").read_text().strip()


def _tiny_liveimg(tmp: Path, files: installer.InstallerFiles) -> Path:
    """A root with just what the install steps before %post touch (fails fast)."""
    root = tmp / "tiny"
    for d in ("bin", "boot", "etc", "root", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(shutil.which("busybox") or "/usr/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "mkdir", "cat", "echo"):
        (root / "bin" / applet).symlink_to("busybox")
    version = files.kernel_version
    shutil.copy2(files.kernel, root / "boot" / f"vmlinuz-{version}")
    shutil.copy2(files.initrd, root / "boot" / f"initrd.img-{version}")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "shadow").write_text("root:*:20000:0:99999:7:::\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    out = tmp / "tiny.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(root, arcname=".")
    return out


def test_failing_post_runs_onerror_and_never_boots_the_half_installed_disk(
        files: installer.InstallerFiles, server: tuple[Served, int], tmp_path: Path) -> None:
    served, port = server
    _, pub = _keypair(tmp_path)
    text = _render(port, "Another-Passw0rd", pub)
    marker = "# inside the installed system"
    assert marker in text
    failing = ("%post --erroronfail\necho 'standin-test: this post fails on purpose' >&2\n"
               "exit 3\n%end\n\n")
    served.kickstart = text.replace(marker, failing + marker, 1).encode()
    served.files = {"stage2.img": files.stage2, "liveimg.tar.gz": _tiny_liveimg(tmp_path,
                                                                                 files)}
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(1 << 30)
    qemu = Qemu(tmp_path, _install_argv(files, disk, port, bootif=False))
    try:
        _wait_for(served, "error", qemu, INSTALL_S)
        time.sleep(5)
        assert qemu.proc.poll() is None, "the installer rebooted after a failure"
    finally:
        qemu.kill()
    assert served.stages() == ["pre", "error"], qemu.tail()
    message = next(c["body"] for c in served.callbacks if c["stage"] == "error")
    assert "this post fails on purpose" in message
    assert "failed with exit status 3" in message  # the installer's own message
    assert served.ks_fetches == 1
    assert not disk.read_bytes()[:440].strip(b"\0"), "the half-installed disk is bootable"


def test_a_partitioned_disk_without_clearpart_is_left_untouched(
        files: installer.InstallerFiles, server: tuple[Served, int], tmp_path: Path) -> None:
    served, port = server
    _, pub = _keypair(tmp_path)
    text = _render(port, "Third-Passw0rd-x", pub)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("clearpart"))
    served.kickstart = text.encode()
    served.files = {"stage2.img": files.stage2}
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["sfdisk", "-q", str(disk)], input=b"label: dos\nsize=64MiB, type=83\n",
                   check=True)
    table = disk.read_bytes()[:1024]
    qemu = Qemu(tmp_path, _install_argv(files, disk, port, bootif=True))
    try:
        _wait_for(served, "error", qemu, INSTALL_S)
    finally:
        qemu.kill()
    message = next(c["body"] for c in served.callbacks if c["stage"] == "error")
    assert "holds a partition table and the kickstart does not clear it" in message
    assert disk.read_bytes()[:1024] == table  # nothing written
