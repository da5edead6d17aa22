"""Root filesystems for lab SSH hosts and lab machines: a debootstrap base plus package layers.

Built once per machine into ``$METALCTL_CACHE/hostimage`` (default
``~/.cache/metalctl/hostimage``), then shared read-only by every host as overlayfs lower
dirs (reference/lab-host-recipes.md §3-4). The hosts themselves have no route out:
packages go into layers here, never over SSH.

Each layer is an overlay upper directory, so it is only valid on the very lower
directories it was built on: its ``/var/lib/dpkg/status`` (and ``/etc/group``…) is a
copy made on top of them and hides theirs. A layer's directory is therefore named after a
key covering its packages **and** the layer below it (that layer's key and the id of the
build in the cache), down to the base: a changed or rebuilt lower layer gives every layer
above it a new key, hence a rebuild. (Seen before this: the ``metal`` layer was built on
``systemd`` and the base only, with 141 packages and no libvirt, and a stamp of package
lists kept it.) Content-addressed directories also let worktrees with different layer
definitions share the cache without rebuilding each other's layers in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metalctl.errors import LabError

LOG = logging.getLogger(__name__)

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "openssh-server,iproute2,procps"
#: what a Debian KVM compute host carries for hardening/audit: libvirt (sysv scripts,
#: no systemd here), both LSM userlands (config only: the lab kernel has no LSM),
#: auditd, GnuTLS tools, dnf so RHEL-style .repo files are read by a real dnf, and
#: nftables (``nft``: the host firewall FWL-001 reads and loads, in the host's own
#: network namespace)
KVM_PACKAGES = ("libvirt-daemon-system libvirt-daemon-system-sysv libvirt-daemon-driver-qemu "
                "libvirt-clients selinux-basics selinux-policy-default selinux-utils "
                "policycoreutils policycoreutils-python-utils apparmor apparmor-utils auditd "
                "gnutls-bin dnf unattended-upgrades sudo nftables")
KEY_CHARS = 16


def cache_dir() -> Path:
    root = Path(os.environ.get("METALCTL_CACHE", Path.home() / ".cache" / "metalctl"))
    return root / "hostimage"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:KEY_CHARS]


def base_key() -> str:
    return _digest("base", SUITE, MIRROR, BASE_PACKAGES)


def base_dir() -> Path:
    return cache_dir() / f"base-{base_key()}"


def _stamp_path(path: Path) -> Path:
    return path.parent / f"{path.name}.stamp"


def build_id(path: Path) -> str | None:
    """The id of the build in ``path`` (a layer or base directory), None when absent or
    incomplete (no stamp: a builder died, or it was never built)."""
    stamp = _stamp_path(path)
    if not (path.is_dir() and stamp.exists()):
        return None
    try:
        return str(json.loads(stamp.read_text())["build"])
    except (ValueError, KeyError, TypeError):
        return None


def _write_stamp(path: Path, inputs: str) -> None:
    _stamp_path(path).write_text(json.dumps({"inputs": inputs, "build": uuid.uuid4().hex}))


@contextmanager
def _build_lock() -> Iterator[None]:
    """One builder at a time per cache (worktrees share it); readers need no lock, as a
    build is renamed into place complete."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / "build.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv: list[str], what: str, log: Path) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise LabError(reason=f"{what} failed (exit {proc.returncode}); see {log}")


def _fresh(path: Path) -> Path:
    """An empty ``<path>.part`` to build in (what a dead builder left is removed)."""
    part = Path(f"{path}.part")
    if part.exists():
        shutil.rmtree(part)
    return part


def _publish(part: Path, path: Path, inputs: str) -> None:
    if path.exists():  # an incomplete earlier build (no stamp)
        shutil.rmtree(path)
    _write_stamp(path, inputs)
    part.rename(path)


def ensure_base() -> Path:
    base = base_dir()
    if build_id(base):
        return base
    with _build_lock():
        if build_id(base):
            return base
        if not shutil.which("debootstrap"):
            raise LabError(reason="debootstrap missing: run scripts/setup.sh")
        part = _fresh(base)
        part.parent.mkdir(parents=True, exist_ok=True)
        log = cache_dir() / "build.log"
        LOG.info("lab hosts: debootstrap %s (about a minute, once)", SUITE)
        _run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE,
              str(part), MIRROR], "debootstrap", log)
        _publish(part, base, f"{SUITE} {BASE_PACKAGES}")
    return base


#: real systemd as PID 1 (systemd-nspawn), built on top of kvm: socket units, systemctl
SYSTEMD_PACKAGES = "systemd systemd-sysv dbus libpam-systemd"
#: QEMU itself, for nova-compute's libvirt driver on the lab hosts (metalctl_lab.nova_hosts)
NOVA_PACKAGES = "qemu-system-x86"
#: what an installed lab machine needs on top (the stand-in installer's liveimg): a kernel
#: with its initramfs, udev, networkd's DHCP (in systemd), curl for kickstart %post, and
#: QEMU with qemu-img (nova-compute runs it on every image), as a site's compute image
#: carries them (libvirt is in kvm below)
METAL_PACKAGES = ("linux-image-cloud-amd64 initramfs-tools udev curl ca-certificates "
                  f"qemu-utils {NOVA_PACKAGES}")
#: name -> (packages, the layer it is built on); chains are linear: one layer below at most
LAYERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kvm": (KVM_PACKAGES, ()), "systemd": (SYSTEMD_PACKAGES, ("kvm",)),
    "nova": (NOVA_PACKAGES, ("kvm",)), "metal": (METAL_PACKAGES, ("systemd",))}


def chain(name: str) -> list[str]:
    """``name`` and every layer under it, top first (the base not included)."""
    names = [name]
    while below := LAYERS[names[-1]][1]:
        if len(below) != 1:  # two uppers over one base each hide the other's dpkg status
            raise LabError(reason=f"image layer {names[-1]}: one layer below at most")
        names.append(below[0])
    return names


def layer_key(name: str, packages: str | None = None) -> str:
    """The key of layer ``name``: its packages, the key of the layer (or base) below and
    the id of that one's build. Raises LabError when that one is not built yet."""
    own, below = (packages, ()) if packages else LAYERS[name]
    if below:
        lower_key, lower = layer_key(below[0]), layer_dir(below[0])
    else:
        lower_key, lower = base_key(), base_dir()
    built = build_id(lower)
    if built is None:
        raise LabError(reason=f"image layer {name}: {lower} is not built "
                              "(hostimage.ensure_layer builds the chain)")
    return _digest(name, own, lower_key, built)


def layer_dir(name: str, packages: str | None = None) -> Path:
    """The directory of layer ``name`` as built on the current chain below it."""
    return cache_dir() / "layers" / f"{name}-{layer_key(name, packages)}"


def lowerdirs(name: str) -> list[Path]:
    """The overlay lower directories of layer ``name``'s root, top first, base last."""
    return [*(layer_dir(n) for n in chain(name)), base_dir()]


def ensure_layer(name: str = "kvm", packages: str | None = None) -> Path:
    """Build layer ``name`` (and every layer under it) unless built on the current chain.

    ``packages``: an ad-hoc layer of these packages right on the base.
    """
    own, below = (packages, ()) if packages else LAYERS[name]
    ensure_base()
    lowers = [base_dir()]
    if below:
        ensure_layer(below[0])
        # the whole chain below, not only the next layer: an overlay sees only what it
        # is given (the stale metal layer was built on systemd + base, without kvm)
        lowers = lowerdirs(below[0])
    layer = layer_dir(name, packages)
    if build_id(layer):
        return layer
    with _build_lock():
        if not build_id(layer):
            _build_layer(name, own, layer, lowers)
    return layer


def _build_layer(name: str, packages: str, layer: Path, lowers: list[Path]) -> None:
    part = _fresh(layer)
    work, merged = Path(f"{layer}.work"), Path(f"{layer}.merged")
    for d in (work, merged):
        if d.exists():
            shutil.rmtree(d)
    for d in (part, work, merged):
        d.mkdir(parents=True)
    log = cache_dir() / "build.log"
    LOG.info("lab hosts: building layer %s on %s (about a minute, once)", name,
             " ".join(p.name for p in lowers))
    lower = ":".join(str(p) for p in lowers)
    script = f"""
      M={merged}
      mount -t overlay overlay -o lowerdir={lower},upperdir={part},workdir={work} $M
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
    _publish(part, layer, f"{packages} on {' '.join(p.name for p in lowers)}")
