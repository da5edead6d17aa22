"""Install the lab's real peers: Debian packages and a separate Python venv.

The peers (OpenStack Ironic, sushy-tools, libvirt-python) are not metalctl
dependencies and bring their own pins, so they live in their own venv
(``$METALCTL_PEERS_VENV``, default ``~/.cache/metalctl/peers``). Versions are
the ones verified in ../shared/LAB.md.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from metalctl.errors import LabError

LOG = logging.getLogger(__name__)

PEER_REQUIREMENTS = ["ironic==39.0.0", "sushy-tools==2.2.0", "libvirt-python",
                     "psycopg2-binary"]  # Ironic on PostgreSQL (bench rack)
#: binary -> Debian package providing it. ipmitool: Ironic's ipmi driver refuses to
#: start without it. libvirt: the sushy-tools libvirt driver's domains.
APT_PACKAGES = {
    "ipmitool": "ipmitool",
    "libvirtd": "libvirt-daemon-system",
    "virsh": "libvirt-clients",
    "qemu-system-x86_64": "qemu-system-x86",
    "pkg-config": "pkg-config",
}
APT_ONLY = ["libvirt-dev", "qemu-utils"]


def venv_dir() -> Path:
    return Path(os.environ.get("METALCTL_PEERS_VENV",
                               Path.home() / ".cache" / "metalctl" / "peers"))


def peer_bin(name: str) -> Path:
    return venv_dir() / "bin" / name


def _run(argv: list[str], what: str) -> None:
    LOG.info("lab: %s", what)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-800:]
        raise LabError(reason=f"{what} failed (exit {proc.returncode}): {tail}")


def ensure_apt() -> None:
    """apt-get the Debian packages whose binaries are missing (needs root)."""
    missing = sorted({pkg for binary, pkg in APT_PACKAGES.items()
                      if shutil.which(binary) is None and not Path("/usr/sbin", binary).exists()})
    if not missing:
        return
    if os.geteuid() != 0:
        raise LabError(reason=f"missing Debian packages {missing}; run as root or apt-get them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, *APT_ONLY],
         f"apt-get install {' '.join(missing)}")


def ensure_venv() -> Path:
    """Create the peers venv and install Ironic and sushy-tools when absent."""
    root = venv_dir()
    stamp = root / "metalctl-requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted and peer_bin("ironic").exists():
        return root
    if not root.exists():
        venv.EnvBuilder(with_pip=True).create(root)
    _run([str(peer_bin("python")), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS],
         f"pip install {' '.join(PEER_REQUIREMENTS)} into {root}")
    stamp.write_text(wanted)
    return root


def ensure() -> Path:
    """Everything the lab needs; idempotent and quick when already installed."""
    ensure_apt()
    return ensure_venv()


def metalctl_python() -> str:
    """The interpreter running metalctl (lab IPMI BMCs run on pyghmi from it)."""
    return sys.executable
