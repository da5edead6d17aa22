"""The canary's image: Debian's cloud kernel and a busybox initramfs whose init says
it is up and then waits (about 2 s to userspace under TCG; LAB.md).

The kernel package is the stand-in installer's (:func:`metalctl_lab.installer.kernel_deb`,
downloaded once into the installer's cache); the initramfs is static busybox and a
ten-line init. Built once per input digest into ``$METALCTL_CACHE/canary-image/<digest>``
(appears complete or not at all). Glance also needs a disk image beside them: a 1 MiB
raw file (Nova's libvirt driver grows it to the flavor's disk; the guest never reads it).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from metalctl.errors import LabError
from metalctl_lab import installer

#: the guest's whole userspace: mounts, a banner on the serial console, then waits
INIT = """#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "metalctl canary: userspace up, $(/bin/busybox nproc) cpu(s)" > /dev/console
while :; do /bin/busybox sleep 3600; done
"""
DISK_BYTES = 1 << 20


@dataclass(frozen=True)
class CanaryFiles:
    """The three files Glance holds for the canary."""

    kernel: Path
    initrd: Path
    disk: Path


def cache_dir() -> Path:
    """Where the canary image is built (beside the installer's cache)."""
    return installer.cache_dir().parent / "canary-image"


def _build(tmp: Path, deb: Path, busybox: Path) -> None:
    with tempfile.TemporaryDirectory(dir=tmp) as work:
        _version, kernel, _modules = installer._extract_kernel(deb, Path(work))  # noqa: SLF001
        shutil.copy2(kernel, tmp / "vmlinuz")
    root = tmp / "root"
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    installer._cpio_gz(root, tmp / "initrd.img")  # noqa: SLF001
    shutil.rmtree(root)
    with (tmp / "disk.raw").open("wb") as f:
        f.truncate(DISK_BYTES)


def ensure() -> CanaryFiles:
    """Build what is missing; return the files.

    Raises:
        LabError: busybox (static) is missing, or the kernel could not be had.
    """
    found = shutil.which("busybox")
    if not found:
        raise LabError(reason="busybox missing: apt-get install busybox-static")
    busybox = Path(found)
    debs = installer.cache_dir() / "debs"
    # a kernel package already there is enough (apt's lists may be gone or changing)
    kept = sorted(debs.glob("linux-image-*-cloud-amd64_*.deb"))
    deb = kept[-1] if kept else installer.kernel_deb(debs)
    digest = hashlib.sha256(f"{deb.name}\0{busybox.stat().st_size}\0{INIT}".encode()
                            ).hexdigest()[:16]
    base = cache_dir()
    directory = base / digest
    if not (directory / "disk.raw").exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=base))
        try:
            _build(tmp, deb, busybox)
            # built meanwhile by another process: the same files
            with contextlib.suppress(OSError):
                tmp.rename(directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return CanaryFiles(directory / "vmlinuz", directory / "initrd.img", directory / "disk.raw")
