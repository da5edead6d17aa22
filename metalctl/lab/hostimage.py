"""Root filesystems for lab SSH hosts: a debootstrap base plus a ``kvm`` package layer.

Built once per machine into ``$METALCTL_CACHE/hostimage`` (default
``~/.cache/metalctl/hostimage``) with a stamp of what went in, then shared read-only
by every host as overlayfs lower dirs (reference/lab-host-recipes.md §3-4). The hosts
themselves have no route out: packages go into layers here, never over SSH.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from metalctl.errors import LabError

LOG = logging.getLogger(__name__)

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "openssh-server,iproute2,procps"
#: what a Debian KVM compute host carries for hardening/audit: libvirt (sysv scripts,
#: no systemd here), both LSM userlands (config only: the lab kernel has no LSM),
#: auditd, GnuTLS tools, and dnf so RHEL-style .repo files are read by a real dnf
KVM_PACKAGES = ("libvirt-daemon-system libvirt-daemon-system-sysv libvirt-daemon-driver-qemu "
                "libvirt-clients selinux-basics selinux-policy-default selinux-utils "
                "policycoreutils policycoreutils-python-utils apparmor apparmor-utils auditd "
                "gnutls-bin dnf unattended-upgrades sudo")


def cache_dir() -> Path:
    root = Path(os.environ.get("METALCTL_CACHE", Path.home() / ".cache" / "metalctl"))
    return root / "hostimage"


def base_dir() -> Path:
    return cache_dir() / "base"


def layer_dir(name: str) -> Path:
    return cache_dir() / "layers" / name


def _stamp_ok(path: Path, content: str) -> bool:
    stamp = path.parent / f"{path.name}.stamp"
    return path.is_dir() and stamp.exists() and stamp.read_text() == content


def _write_stamp(path: Path, content: str) -> None:
    (path.parent / f"{path.name}.stamp").write_text(content)


def _run(argv: list[str], what: str, log: Path) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise LabError(reason=f"{what} failed (exit {proc.returncode}); see {log}")


def ensure_base() -> Path:
    base = base_dir()
    want = f"{SUITE} {BASE_PACKAGES}"
    if _stamp_ok(base, want):
        return base
    if not shutil.which("debootstrap"):
        raise LabError(reason="debootstrap missing: run scripts/setup.sh")
    if base.exists():
        shutil.rmtree(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    log = cache_dir() / "build.log"
    LOG.info("lab hosts: debootstrap %s (about a minute, once)", SUITE)
    _run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(base),
          MIRROR], "debootstrap", log)
    _write_stamp(base, want)
    return base


#: real systemd as PID 1 (systemd-nspawn), built on top of kvm: socket units, systemctl
SYSTEMD_PACKAGES = "systemd systemd-sysv dbus libpam-systemd"
#: QEMU itself, for nova-compute's libvirt driver on the lab hosts (metalctl.lab.nova_hosts)
NOVA_PACKAGES = "qemu-system-x86"
#: what an installed lab machine needs on top (the stand-in installer's liveimg): a kernel
#: with its initramfs, udev, networkd's DHCP (in systemd), curl for kickstart %post
METAL_PACKAGES = "linux-image-cloud-amd64 initramfs-tools udev curl ca-certificates"
LAYERS = {"kvm": (KVM_PACKAGES, ()), "systemd": (SYSTEMD_PACKAGES, ("kvm",)),
          "nova": (NOVA_PACKAGES, ("kvm",)), "metal": (METAL_PACKAGES, ("systemd",))}


def ensure_layer(name: str = "kvm", packages: str | None = None) -> Path:
    packages, below = (packages, ()) if packages else LAYERS[name]
    base = ensure_base()
    lowers = [ensure_layer(b) for b in below]
    layer = layer_dir(name)
    # a layer is rebuilt whenever one it sits on changes
    want = packages + "".join(f" on {b}:{LAYERS[b][0]}" for b in below)
    lower = ":".join([*(str(x) for x in reversed(lowers)), str(base)])
    if _stamp_ok(layer, want):
        return layer
    if layer.exists():
        shutil.rmtree(layer)
    work, merged = Path(f"{layer}.work"), Path(f"{layer}.merged")
    for d in (work, merged):
        if d.exists():
            shutil.rmtree(d)
    for d in (layer, work, merged):
        d.mkdir(parents=True)
    log = cache_dir() / "build.log"
    LOG.info("lab hosts: building layer %s (about a minute, once)", name)
    script = f"""
      M={merged}
      mount -t overlay overlay -o lowerdir={lower},upperdir={layer},workdir={work} $M
      mount -t proc proc $M/proc; mount --rbind /dev $M/dev; mount -t tmpfs tmpfs $M/run
      cp /etc/resolv.conf $M/etc/resolv.conf
      printf '#!/bin/sh\\nexit 101\\n' > $M/usr/sbin/policy-rc.d; chmod 755 $M/usr/sbin/policy-rc.d
      chroot $M apt-get update -qq
      DEBIAN_FRONTEND=noninteractive chroot $M \\
        apt-get install -y -qq --no-install-recommends {packages}
      chroot $M apt-get clean; rm -f $M/usr/sbin/policy-rc.d; rm -rf $M/var/lib/apt/lists/*
      if [ -x $M/bin/systemctl ]; then chroot $M systemctl enable ssh >/dev/null 2>&1 || true; fi
    """
    _run(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-euc", script],
         f"layer {name}", log)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(merged, ignore_errors=True)
    _write_stamp(layer, want)
    return layer
