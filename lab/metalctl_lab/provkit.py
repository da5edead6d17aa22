"""What ``metalctl run`` needs to install the lab's machines, written by ``lab up``:

* ``<lab>/installer`` → the stand-in installer's files (:mod:`metalctl_lab.installer`),
  served by the boot service under ``/files/``;
* ``<lab>/operator/id_ed25519`` — the operator key the kickstart installs (``sshkey``) and
  metalctl proves the install with;
* ``<lab>/provision-site.yaml`` — the site's ``kickstart:`` section: the liveimg from the
  boot service, a random root password as a SHA-512 crypt hash only (the clear one is
  never written anywhere), that key, the serial console.

``inventory/rack.lab.yaml`` reaches them as ``${METALCTL_LAB_DIR}/...`` (``lab env``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from metalctl.errors import LabError
from metalctl_lab import installer


def prepare(directory: Path, host_address: str, boot_port: int) -> dict[str, str]:
    """Build (once) and link the installer, make the operator key and the site file."""
    files = installer.ensure()
    link = directory / "installer"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(files.directory, target_is_directory=True)
    key = directory / "operator" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "metalctl-lab",
                        "-f", str(key)], check=True)
    proc = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=secrets.token_urlsafe(18),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.startswith("$6$"):
        raise LabError(reason=f"openssl passwd -6 failed: {proc.stderr.strip()[:200]}")
    site = directory / "provision-site.yaml"
    site.write_text(json.dumps({"kickstart": {
        "install": {"liveimg": f"http://{host_address}:{boot_port}/files/"
                               f"{files.liveimg.name}"},
        "root_password": {"hash": proc.stdout.strip()},
        "ssh_keys": [{"user": "root", "key": key.with_suffix(".pub").read_text().strip()}],
        "kernel_args": ["console=ttyS0,115200n8"],
    }}, indent=2) + "\n")
    site.chmod(0o600)
    return {"installer": str(link), "operator_key": str(key), "site": str(site)}
