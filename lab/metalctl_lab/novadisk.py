"""The lab's Nova release as a read-only disk for the lab machines (issue 21).

A site's compute node gets nova-compute from its package mirror; the lab machines have
no route out, so the lab attaches its Nova venv (:mod:`metalctl_lab.nova_venv`: nova 34,
the release of the lab's control plane) to every machine as a read-only virtio disk, an
ext4 image labelled :data:`LABEL`. The installed system mounts it (a udev rule wants the
mount unit when a disk with that label appears: :func:`mount_unit`) at the venv's own
path, :func:`mount_point`, so nova-compute, privsep-helper and nova's other scripts are
where they are on the lab host and on the lab SSH hosts (:mod:`metalctl_lab.nova_hosts`).

Measured against the other ways (docs/lab.md, "Lab machines as compute hosts"): nothing
is unpacked during the install, whereas a copy of the venv took 105-127 s under TCG.

The venv is the lab host's, relocated onto the installed system's own Python (Debian
12's python3.11; the venv was made from pyenv's 3.11, whose interpreter links a
libpython that is not in the image): ``bin/python*`` become links to
``/usr/bin/python3.11`` and ``pyvenv.cfg`` names ``/usr/bin`` as home. The scripts'
``#!`` lines name ``<venv>/bin/python`` and stay as they are. Compiled extensions are
for CPython 3.11 and link only libraries the ``kvm`` layer carries (libvirt's).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from metalctl.errors import LabError
from metalctl_lab import nova_venv, procs

LOG = logging.getLogger(__name__)

#: the file system label the installed system mounts by
LABEL = "metalctl-nova"
#: the installed system's interpreter (Debian 12)
GUEST_PYTHON = "/usr/bin/python3.11"
PYVENV_CFG = f"""home = {os.path.dirname(GUEST_PYTHON)}
include-system-site-packages = false
version = 3.11
"""
BUILD = f"""
V=$1 T=$2 OUT=$3
mkdir -p $T/upper/bin $T/work $T/merged
mount -t overlay overlay -o lowerdir=$V,upperdir=$T/upper,workdir=$T/work $T/merged
M=$T/merged
rm -f $M/bin/python $M/bin/python3 $M/bin/python3.11
ln -s {GUEST_PYTHON} $M/bin/python3.11
ln -s python3.11 $M/bin/python3; ln -s python3.11 $M/bin/python
cp $T/pyvenv.cfg $M/pyvenv.cfg
mib=$(du -sm $M | cut -f1)
truncate -s $(( mib + mib / 8 + 64 ))M $OUT
# no journal (never written), no reserved blocks; -d copies the tree in
mke2fs -q -t ext4 -O ^has_journal -m 0 -L {LABEL} -d $M $OUT
"""


def mount_point() -> Path:
    """Where the installed system mounts the disk: the venv's own path."""
    return nova_venv.venv_dir()


def cache_dir() -> Path:
    root = Path(os.environ.get("METALCTL_CACHE", Path.home() / ".cache" / "metalctl"))
    return root / "novadisk"


def _digest() -> str:
    venv = nova_venv.venv_dir()
    stamp = venv / nova_venv.STAMP
    h = hashlib.sha256()
    # the requirements and when they were last installed (a pip run rewrites the stamp)
    h.update(stamp.read_bytes())
    h.update(str(stamp.stat().st_mtime_ns).encode())
    h.update(str(venv).encode())
    h.update((BUILD + PYVENV_CFG).encode())
    return h.hexdigest()[:16]


def ensure() -> Path:
    """Build ``$METALCTL_CACHE/novadisk/nova-<digest>.img`` unless present (about 20 s).

    Named after the venv's requirements stamp and this module's build; renamed into
    place complete, so a machine never gets a half-written disk.

    Raises:
        LabError: the Nova venv is missing (run scripts/setup.sh) or the build failed.
    """
    if not nova_venv.installed():
        raise LabError(reason=f"no Nova venv in {nova_venv.venv_dir()}: run scripts/setup.sh")
    out = cache_dir() / f"nova-{_digest()}.img"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    LOG.info("lab: building the Nova disk %s (about 20 s, once)", out.name)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        t = Path(tmp)
        (t / "pyvenv.cfg").write_text(PYVENV_CFG)
        part = t / "nova.img"
        procs.build_in_mount_ns("Nova disk build", BUILD, str(nova_venv.venv_dir()), str(t),
                                str(part))
        part.chmod(0o444)
        part.replace(out)
    return out


def systemd_escape_path(path: str) -> str:
    """``systemd-escape --path``: the name a mount unit for ``path`` must have."""
    out = []
    for i, ch in enumerate(path.strip("/")):
        if ch == "/":
            out.append("-")
        elif ch.isascii() and (ch.isalnum() or ch in ":_" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}")
    return "".join(out) or "-"


def mount_unit() -> tuple[str, str, str]:
    """``(unit file name, unit text, udev rule)`` the installed system mounts the disk
    with: the rule wants the mount when the labelled disk appears, so a machine without
    the disk boots without waiting for it."""
    where = str(mount_point())
    name = f"{systemd_escape_path(where)}.mount"
    unit = (f"[Unit]\nDescription=The Nova release (metalctl lab, read-only disk {LABEL})\n"
            f"[Mount]\nWhat=/dev/disk/by-label/{LABEL}\nWhere={where}\nType=ext4\n"
            "Options=ro,nodev\n")
    rule = (f'# metalctl lab: mount the Nova release disk when it appears\n'
            f'SUBSYSTEM=="block", ENV{{ID_FS_LABEL}}=="{LABEL}", '
            f'ENV{{SYSTEMD_WANTS}}+="{name}"\n')
    return name, unit, rule


#: nova-compute's unit on an installed lab machine, where a site's ``nova-compute``
#: package would put it (Debian's service name, so hand-off starts it like any other)
COMPUTE_UNIT_NAME = "nova-compute.service"
LOG_DIR = "/var/log/nova"


def compute_unit() -> str:
    """The systemd unit that runs nova-compute from the disk.

    As root, unlike Debian's package (``User=nova``, privileged calls through sudo and
    rootwrap): the lab image has no sudo, and the site's ``helper_command`` starts the
    disk's ``privsep-helper`` directly (:func:`metalctl_lab.nova_hosts.site`). The unit
    needs the disk mounted and libvirtd up, and does nothing until hand-off wrote
    nova.conf.
    """
    where = str(mount_point())
    # no network-online.target: `systemctl start` would wait for every link (up to 2 min
    # on a NIC without carrier); nova-compute retries RabbitMQ and Placement by itself
    return (f"[Unit]\nDescription=OpenStack Compute (nova-compute from the metalctl lab's "
            f"Nova disk)\nAfter=network.target libvirtd.service\n"
            f"Wants=libvirtd.service\nRequiresMountsFor={where}\n"
            "ConditionPathExists=/etc/nova/nova.conf\n"
            f"[Service]\nExecStart={where}/bin/nova-compute --config-file "
            f"/etc/nova/nova.conf --log-file {LOG_DIR}/nova-compute.log\n"
            "Restart=on-failure\nRestartSec=5\nTimeoutStopSec=30\n"
            "[Install]\nWantedBy=multi-user.target\n")

