"""A real OpenSSH server on a loopback address, for tests and the lab.

It runs unprivileged-style in its own directory: own host key, own
authorized_keys, no PAM, listening on one 127.x address. It serves the machine's
own filesystem (in-band facts of this machine); hosts with their own ``/etc`` are
network-namespace test hosts (reference/lab-host-recipes.md), built on this.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from metalctl.errors import LabError
from metalctl_lab.procs import wait_up

SSHD = "/usr/sbin/sshd"


@dataclass
class SshdPeer:
    address: str
    port: int
    directory: Path
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)


def start(directory: Path, address: str = "127.0.0.1", port: int = 2222) -> SshdPeer:
    if not Path(SSHD).exists():
        raise LabError(reason=f"{SSHD} missing: run scripts/setup.sh (installs openssh-server)")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    client_key = directory / "client_ed25519"
    for k in (host_key, client_key):
        if not k.exists():
            _keygen(k)
    auth = directory / "authorized_keys"
    auth.write_text(Path(f"{client_key}.pub").read_text())
    auth.chmod(0o600)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    config = directory / "sshd_config"
    config.write_text(f"""ListenAddress {address}:{port}
HostKey {host_key}
AuthorizedKeysFile {auth}
PidFile {directory / 'sshd.pid'}
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
Subsystem sftp internal-sftp
""")
    log = directory / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))

    def accepting() -> bool:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_up("sshd", accepting, lambda: proc.poll() is None, log, 10, interval_s=0.1)
    host_pub = Path(f"{host_key}.pub").read_text().split()
    known = directory / "known_hosts"
    name = address if port == 22 else f"[{address}]:{port}"
    known.write_text(f"{name} {host_pub[0]} {host_pub[1]}\n")
    return SshdPeer(address, port, directory, client_key, known, proc)
