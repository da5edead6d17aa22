"""The stand-in installer's ``liveimg``: the lab host image as an installable OS.

The root is the hostimage chain ``metal`` (kernel, udev, curl) on ``systemd`` on ``kvm``
on the debootstrap base, the same packages the SSH test hosts carry. What makes it a
machine rather than a container is done here, in an overlay above the cached layers:
no SSH host keys (the kickstart's ``%post`` runs ``ssh-keygen -A`` and sends them), no
machine id, systemd-networkd asking DHCP with the MAC as client id on every NIC (the
kickstart's ``network`` lines win), the mount of the lab's Nova release disk and the
nova-compute unit that runs from it (:mod:`metalctl_lab.novadisk`), and docs, man
pages, locales, logs and apt caches left out so that unpacking under TCG stays short.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

from metalctl_lab import hostimage, novadisk, procs

LOG = logging.getLogger(__name__)

LAYER = "metal"
EXCLUDE = ("./usr/share/doc/*", "./usr/share/man/*", "./usr/share/locale/*",
           "./usr/share/info/*", "./var/cache/debconf/*-old", "*/__pycache__/*",
           "./usr/lib/udev/hwdb.d/*")
DHCP_NETWORK = """\
# the lab image's default: DHCP on every NIC, the MAC as client id so the lease the
# installer got is the one the installed system gets (dnsmasq pins by MAC)
[Match]
Name=en* eth*

[Network]
DHCP=yes

[DHCPv4]
ClientIdentifier=mac
"""
MACHINE_SCRIPT = """
M=$1
rm -f $M/etc/ssh/ssh_host_*
# files only: services such as auditd refuse to start without their /var/log directory
find $M/var/log $M/var/cache/apt $M/var/lib/apt/lists -type f -delete
: > $M/etc/machine-id
rm -f $M/var/lib/dbus/machine-id
rm -f $M/etc/resolv.conf; : > $M/etc/resolv.conf
echo localhost > $M/etc/hostname
echo '# the installer writes this from the kickstart' > $M/etc/fstab
mkdir -p $M/etc/systemd/network
cp $2 $M/etc/systemd/network/99-dhcp.network
chroot $M systemctl enable systemd-networkd >/dev/null 2>&1
chroot $M systemctl enable ssh >/dev/null 2>&1
# the Nova release disk (metalctl_lab.novadisk): mounted when udev sees its label
cp $3 "$M/etc/systemd/system/$4"
cp $5 $M/etc/udev/rules.d/90-metalctl-nova.rules
# what a site's nova-compute package lays down: the unit, the nova group (nova.conf is
# root:nova 0640), the state, log and config directories
cp $6 $M/etc/systemd/system/nova-compute.service
chroot $M groupadd --system nova 2>/dev/null || true
mkdir -p $M/etc/nova $M/var/lib/nova/instances $M/var/log/nova
"""


def chain(name: str = LAYER) -> list[Path]:
    """The layer directories of ``name``, top first, ending with the base (built first)."""
    hostimage.ensure_layer(name)
    return hostimage.lowerdirs(name)


def _stamp_of(lowers: list[Path]) -> str:
    h = hashlib.sha256()
    for p in lowers:
        stamp = p.parent / f"{p.name}.stamp"
        h.update(stamp.read_bytes() if stamp.exists() else b"?")
    h.update((MACHINE_SCRIPT + DHCP_NETWORK + " ".join(EXCLUDE)).encode())
    h.update("".join(novadisk.mount_unit()).encode())
    h.update(novadisk.compute_unit().encode())
    return h.hexdigest()


def ensure(cache: Path) -> Path:
    """Build ``cache/liveimg-<digest>.tar.gz`` (the installable root) unless present.

    Named after a digest of its inputs (the layers' stamps and this module's edits), and
    renamed into place complete, so concurrent builders never serve a partial image.

    Raises:
        LabError: a layer or the tar failed to build.
    """
    lowers = chain()
    out = cache / f"liveimg-{_stamp_of(lowers)[:16]}.tar.gz"
    if out.exists():
        return out
    LOG.info("installer: building %s from the %s host image (about a minute, once)",
             out.name, LAYER)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        t = Path(tmp)
        for d in ("upper", "work", "merged"):
            (t / d).mkdir()
        (t / "dhcp.network").write_text(DHCP_NETWORK)
        (t / "machine.sh").write_text(MACHINE_SCRIPT)
        unit_name, unit, rule = novadisk.mount_unit()
        (t / "nova.mount").write_text(unit)
        (t / "nova.rules").write_text(rule)
        (t / "nova-compute.service").write_text(novadisk.compute_unit())
        excludes = " ".join(f"--exclude='{e}'" for e in EXCLUDE)
        lower = ":".join(str(p) for p in lowers)
        part = t / "liveimg.tar.gz"
        script = f"""
          mount -t overlay overlay -o lowerdir={lower},upperdir={t}/upper,workdir={t}/work \\
            {t}/merged
          sh {t}/machine.sh {t}/merged {t}/dhcp.network {t}/nova.mount '{unit_name}' \\
            {t}/nova.rules {t}/nova-compute.service
          tar -C {t}/merged --numeric-owner {excludes} -cf - . | gzip -6 > {part}
        """
        procs.build_in_mount_ns("liveimg build", script)
        part.chmod(0o644)
        part.replace(out)
    return out
