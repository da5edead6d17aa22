"""SSH test hosts with their own /etc: network namespace + overlay rootfs + the rootfs's sshd.

Recipe A of reference/lab-host-recipes.md: each host ``hN`` gets a network namespace
with a veth on a lab bridge (``10.<net>.0.(10+N)/24``, no route out), a mount/PID/UTS
namespace with an overlayfs root (image lower dirs from :mod:`hostimage`, an upper dir
per host that keeps its state across restarts), and runs the rootfs's own sshd as PID 1.
Killing that PID kills the whole host (the "host dropped" fault). The machine's own
/etc is never touched. Host keys are pinned into a lab known_hosts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from metalctl.errors import LabError
from metalctl_lab import hostimage
from metalctl_lab.procs import wait_gone, wait_up


@dataclass
class HostLab:
    directory: Path
    net: int = 200  # hosts at 10.<net>.0.x
    layers: tuple[str, ...] = ("kvm",)
    hosts: dict[str, int] = field(default_factory=dict)  # name -> pid

    @property
    def bridge(self) -> str:
        return f"mcbr{self.net}"

    @property
    def gateway(self) -> str:
        return f"10.{self.net}.0.1"

    def address(self, index: int) -> str:
        return f"10.{self.net}.0.{10 + index}"

    def netns(self, index: int) -> str:
        return f"mc{self.net}h{index}"

    @property
    def client_key(self) -> Path:
        return self.directory / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "ssh" / "known_hosts"

    def host_dir(self, index: int) -> Path:
        return self.directory / "hosts" / f"h{index}"

    # --- lifecycle -------------------------------------------------------------------

    def _lower(self, layers: tuple[str, ...] | None = None) -> str:
        parts = [str(hostimage.layer_dir(name)) for name in reversed(layers or self.layers)]
        return ":".join([*parts, str(hostimage.base_dir())])

    def _ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise LabError(reason=f"ip {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def _ensure_bridge(self) -> None:
        if self._ip("link", "show", self.bridge, check=False).returncode != 0:
            self._ip("link", "add", self.bridge, "type", "bridge")
            self._ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            self._ip("link", "set", self.bridge, "up")

    def _ensure_netns(self, index: int) -> None:
        ns = self.netns(index)
        if self._ip("netns", "pids", ns, check=False).returncode == 0:
            return
        self._ip("netns", "add", ns)
        # A deleted namespace is torn down asynchronously (and lives on while another
        # host's mount namespace still holds a copy of its /run/netns mount): its veth
        # can outlast it for a while. Deleting our end removes both.
        if self._ip("link", "show", f"{ns}v", check=False).returncode == 0:
            self._ip("link", "del", f"{ns}v", check=False)
        self._ip("link", "add", f"{ns}v", "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._ip("link", "set", f"{ns}v", "master", self.bridge, "up")
        self._ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
        self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("-n", ns, "link", "set", "eth0", "up")

    def start(self, index: int, systemd: bool = False) -> str:
        """Start (or restart, keeping its state) host ``h<index>``; returns its address.

        ``systemd``: boot real systemd as PID 1 with systemd-nspawn in the same kind of
        namespace (recipe B): socket units and systemctl behave as on a real host.
        """
        layers = (*self.layers, "systemd") if systemd else self.layers
        for layer in layers:
            hostimage.ensure_layer(layer)
        self._ensure_client_key()
        self._ensure_bridge()
        self._ensure_netns(index)
        self.kill(index)
        h = self.host_dir(index)
        for sub in ("upper", "work", "root"):
            (h / sub).mkdir(parents=True, exist_ok=True)
        name, ip = f"h{index}", self.address(index)
        overlay = (f"R={h}/root\nmount -t overlay overlay -o lowerdir={self._lower(layers)},"
                   f"upperdir={h}/upper,workdir={h}/work $R\n")
        # identity of the host, written into its own /etc (the image's is shared)
        identity = f"""echo {name} > $R/etc/hostname
printf '127.0.0.1 localhost\\n{ip} {name}\\n' > $R/etc/hosts
if [ ! -f {h}/.keys-done ]; then  # the image's host keys are shared: one set per host
  rm -f $R/etc/ssh/ssh_host_*; chroot $R ssh-keygen -A >/dev/null; touch {h}/.keys-done
fi
install -d -m 700 $R/root/.ssh; install -m 600 {self.client_key}.pub $R/root/.ssh/authorized_keys
"""
        (h / "systemd").unlink(missing_ok=True)
        if systemd:
            (h / "systemd").touch()
            # nspawn mounts /proc, /sys and /dev itself and joins the host's network
            # namespace; never SIGKILL it (that orphans the container): kill() sends SIGTERM
            script = overlay + identity + (
                "exec systemd-nspawn -q -D $R -b --register=no --keep-unit --console=pipe "
                f"--network-namespace-path=/run/netns/{self.netns(index)} --machine={name}\n")
            argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-euc",
                    script]
            log, timeout_s = h / "console.log", 60.0
        else:
            script = overlay + """mount -t proc proc $R/proc; mount -t sysfs -o ro sysfs $R/sys
mount -t tmpfs -o mode=755,size=8m tmpfs $R/dev
for d in null zero full random urandom tty; do touch $R/dev/$d; mount --bind /dev/$d $R/dev/$d; done
mkdir $R/dev/pts $R/dev/shm; ln -s pts/ptmx $R/dev/ptmx
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts $R/dev/pts
mount -t tmpfs -o mode=755,size=16m tmpfs $R/run; mkdir -p $R/run/sshd
""" + f"hostname {name}\n" + identity + "exec chroot $R /usr/sbin/sshd -D -e -p 22\n"
            argv = ["ip", "netns", "exec", self.netns(index), "unshare", "--mount", "--uts",
                    "--ipc", "--pid", "--fork", "--kill-child", "--propagation", "private",
                    "/bin/sh", "-euc", script]
            log, timeout_s = h / "sshd.log", 20.0
        proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.hosts[name] = proc.pid
        (h / "pid").write_text(str(proc.pid))
        self._wait_ssh(index, proc, timeout_s)
        self._pin_host_key(index)
        return ip

    def _ensure_client_key(self) -> None:
        if not self.client_key.exists():
            self.client_key.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "metalctl-lab",
                            "-f", str(self.client_key)], check=True)
        self.known_hosts.touch()

    def _wait_ssh(self, index: int, proc: subprocess.Popen[bytes],
                  timeout_s: float = 20) -> None:
        def listening() -> bool:
            out = subprocess.run(["ip", "netns", "exec", self.netns(index), "ss", "-ltn"],
                                 capture_output=True, text=True, check=False).stdout
            return ":22 " in out

        wait_up(f"host h{index}: sshd", listening, lambda: proc.poll() is None,
                self.host_dir(index) / "sshd.log", timeout_s, interval_s=0.05)

    def _pin_host_key(self, index: int) -> None:
        ip = self.address(index)
        pub = (self.host_dir(index) / "upper" / "etc" / "ssh" / "ssh_host_ed25519_key.pub")
        kind, key = pub.read_text().split()[:2]
        lines = [ln for ln in self.known_hosts.read_text().splitlines()
                 if not ln.startswith(f"{ip} ")]
        lines.append(f"{ip} {kind} {key}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def kill(self, index: int) -> None:
        """SIGKILL the host's PID namespace (the whole host dies, state stays on disk)."""
        pid_file = self.host_dir(index) / "pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        graceful = (self.host_dir(index) / "systemd").exists()
        with contextlib.suppress(ProcessLookupError):
            # an nspawn container powers off on SIGTERM; SIGKILL would orphan it
            os.killpg(pid, signal.SIGTERM if graceful else signal.SIGKILL)
        if not wait_gone([pid], 20 if graceful else 10):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        self.hosts.pop(f"h{index}", None)

    def reset(self, index: int) -> None:
        """Forget a host's state (its upper dir): the next start is a fresh host."""
        self.kill(index)
        shutil.rmtree(self.host_dir(index), ignore_errors=True)

    def down(self) -> None:
        root = self.directory / "hosts"
        indexes = [int(h.name[1:]) for h in sorted(root.glob("h*"))] if root.exists() else []
        # every host first: each one's mount namespace holds copies of the others'
        # /run/netns mounts, so a namespace only goes once no host is left
        for index in indexes:
            self.kill(index)
        for index in indexes:
            self._ip("netns", "del", self.netns(index), check=False)
        self._ip("link", "del", self.bridge, check=False)

    @contextlib.contextmanager
    def running(self, indexes: Iterable[int]) -> Iterator[HostLab]:
        """Hosts ``indexes`` up for the ``with`` block, then every host down (also when
        one fails to start: none is left running)."""
        try:
            for index in indexes:
                self.start(index)
            yield self
        finally:
            self.down()

    def up_with_inventory(self, count: int) -> Path:
        """Start h1..h<count>; write an inventory for ``harden``/``audit``; return it."""
        for i in range(1, count + 1):
            self.start(i)
        inventory = self.directory / "inventory.yaml"
        inventory.write_text("hosts:\n" + "".join(
            f"  - {{name: h{i}, ssh: 'root@{self.address(i)}', "
            f"mgmt_address: '{self.address(i)}'}}\n" for i in range(1, count + 1)))
        return inventory

    def exec(self, index: int, command: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside a host over SSH (for tests and the lab's own checks)."""
        return subprocess.run(
            ["ssh", "-i", str(self.client_key), "-o", f"UserKnownHostsFile={self.known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             f"root@{self.address(index)}", command],
            capture_output=True, text=True, check=False, timeout=60)
