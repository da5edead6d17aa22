"""A tiny installer for network-boot tests: Debian's cloud kernel and a busybox initramfs.

It does the part of an install the boot path can see, nothing more: DHCP on the NIC
named by ``BOOTIF``, fetch ``inst.ks`` once (its URL carries a kickstart ticket), POST
the ``hostkeys`` callback (the kickstart's ``# hostkey:`` lines) and the ``end`` callback
with the token the kickstart carries, power off. The full stand-in installer
(``metalctl_lab.installer``) replaces it where a test needs a real install; tests take
the boot files as a parameter (:class:`TinyInstaller` is one provider).

The Debian packages (``linux-image-*-cloud-amd64``, ``busybox-static``) are fetched
with ``apt-get download`` into ``~/.cache/metalctl/pxe`` once; the initramfs (a newc
cpio written here, no ``cpio`` binary needed) is rebuilt per test directory in
milliseconds.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("METALCTL_PXE_CACHE", Path.home() / ".cache" / "metalctl" / "pxe"))
#: virtio-net and what it needs, in load order (all modules in the cloud kernel)
MODULES = ["drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
           "drivers/virtio/virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci_legacy_dev.ko",
           "drivers/virtio/virtio_pci.ko", "net/core/failover.ko",
           "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko"]

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
say() { echo "tiny-installer: $*"; }
say "userspace at $(cut -d' ' -f1 /proc/uptime) s"
for m in MODULES; do insmod /lib/modules/$m.ko || say "insmod $m failed"; done
cmdline=" $(cat /proc/cmdline) "
ks=$(echo "$cmdline" | sed -n 's/.* inst\.ks=\([^ ]*\) .*/\1/p')
mac=$(echo "$cmdline" | sed -n 's/.* BOOTIF=01-\([^ ]*\) .*/\1/p' | tr - :)
dev=
for i in /sys/class/net/*; do [ "$(cat $i/address)" = "$mac" ] && dev=${i##*/}; done
[ -n "$dev" ] || { say "no NIC with MAC $mac"; poweroff -f; }
ip link set lo up; ip link set "$dev" up
udhcpc -i "$dev" -s /bin/dhcp.sh -q -f -n -t 20 -T 1 || { say "no DHCP"; poweroff -f; }
base=${ks%%/ks/*}; rest=${ks#*/ks/}; node=${rest%%\?*}
if wget -q -O /tmp/ks "$ks"; then
  say "kickstart fetched ($(wc -c < /tmp/ks) bytes)"
  # the callback token is in the kickstart, never in the boot script's URL
  token=$(sed -n 's/.*Authorization: Bearer \([A-Za-z0-9_-]*\).*/\1/p' /tmp/ks | head -n 1)
  wget -q -O - --header "Authorization: Bearer $token" \
    --post-data "$(sed -n 's/^# hostkey: //p' /tmp/ks)" \
    "$base/callback/$node?stage=hostkeys" && say "hostkeys callback sent"
  wget -q -O - --header "Authorization: Bearer $token" \
    --post-data "tiny installer: kickstart of $(wc -l < /tmp/ks) lines read" \
    "$base/callback/$node?stage=end" && say "end callback sent"
else
  say "kickstart fetch failed"
fi
say "powering off"
poweroff -f
"""

DHCP_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) ifconfig "$interface" "$ip" netmask "$subnet" up
               echo "tiny-installer: DHCP $ip on $interface" ;;
esac
"""


def _download(pattern: str, package: str) -> Path:
    debs = CACHE / "debs"
    found = sorted(debs.glob(pattern))
    if found:
        return found[-1]
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=debs, check=True,
                   capture_output=True)
    return sorted(debs.glob(pattern))[-1]


def _cloud_kernel_package() -> str:
    out = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", out)
    assert match, f"no cloud kernel package in: {out!r}"
    return match.group(1)


def _extract(deb: Path) -> Path:
    root = CACHE / "x" / deb.stem
    if not root.exists():
        tmp = root.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(root)
    return root


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the ``newc`` format the kernel unpacks (name, mode, data)."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


@dataclass
class TinyInstaller:
    """Kernel and initramfs under ``files_dir`` (relative names for ``BootFiles``)."""

    kernel: str = "tiny/vmlinuz"
    initrd: str = "tiny/initrd.img"
    kernel_args: tuple[str, ...] = ("console=ttyS0", "panic=10")

    def build(self, files_dir: Path) -> TinyInstaller:
        kernel_root = _extract(_download("linux-image-*-cloud-amd64_*.deb",
                                         _cloud_kernel_package()))
        busybox_root = _extract(_download("busybox-static_*.deb", "busybox-static"))
        vmlinuz = next((kernel_root / "boot").glob("vmlinuz-*"))
        modules = next((kernel_root / "lib" / "modules").iterdir()) / "kernel"
        init = INIT.replace("MODULES", " ".join(Path(m).stem for m in MODULES))
        entries: list[tuple[str, int, bytes]] = [
            (d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "tmp", "lib",
                                        "lib/modules")]
        entries += [("init", 0o100755, init.encode()),
                    ("bin/busybox", 0o100755, (busybox_root / "bin" / "busybox").read_bytes()),
                    ("bin/dhcp.sh", 0o100755, DHCP_SCRIPT.encode())]
        entries += [(f"lib/modules/{Path(m).name}", 0o100644, (modules / m).read_bytes())
                    for m in MODULES]
        target = files_dir / self.initrd
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(_newc(entries), compresslevel=1))
        shutil.copyfile(vmlinuz, files_dir / self.kernel)
        return self
