"""The lab's Nova for ``metalctl handoff`` and ``metalctl run``: its site file and
credentials, for the SSH test hosts (``metalctl lab nova-up``) or for the lab's own
machines (``metalctl lab up --nova``).

The machines reach the control plane on the provisioning network's host side, the
address their installs called back to; the SSH test hosts on their bridge's gateway.
Either way every service binds that one address (:func:`metalctl_lab.nova.prepare`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from metalctl_lab import nova, nova_hosts
from metalctl_lab.nova import NovaLab
from metalctl_lab.spec import LabState

#: the site file ``metalctl handoff --site`` and a rack's ``site.nova`` read
SITE_FILE = "nova-site.yaml"


def up_for_machines(d: Path, state: LabState) -> NovaLab:
    """Start the lab's Nova (with Glance and the canary image) on the provisioning
    network's host address and write its site file and credentials.

    Raises:
        LabError: the lab has no provisioning network, or a peer did not start.
    """
    from metalctl.errors import LabError  # noqa: PLC0415

    if not state.provnet:
        raise LabError(reason="--nova needs the provisioning network (drop --no-provnet)")
    address = str(state.provnet["host_address"])
    lab = nova.prepare(d / "nova", address, bind_address=address, image_service=True)
    nova.start(lab)
    merge_credentials(state, lab)
    # the machines run TCG inside TCG: nova-compute's first start imports nova in
    # 25-60 s, and the canary boots nested (docs/lab.md)
    write_site(d, lab, register_timeout_s=300, verify_timeout_s=240)
    return lab


def merge_credentials(state: LabState | None, lab: NovaLab) -> None:
    """The Nova lab's credential sets join the lab's credentials file (BMC sets kept)."""
    if state is None:
        return
    creds = Path(state.credentials_file)
    data = yaml.safe_load(creds.read_text()) or {}
    data.update(yaml.safe_load(lab.credentials_file.read_text()))
    creds.write_text(yaml.safe_dump(data))


def site(lab: NovaLab, *, register_timeout_s: float = 120,
         verify_timeout_s: float = 90) -> dict[str, Any]:
    """The whole site file: ``nova:`` for nova.conf, ``handoff:`` for the stage."""
    return {"nova": nova_hosts.site(lab),
            "handoff": {"api": nova_hosts.handoff_api(lab),
                        "register_timeout_s": register_timeout_s,
                        "verify_timeout_s": verify_timeout_s,
                        "canary": {"image": lab.canary_image}}}


def write_site(d: Path, lab: NovaLab, **timeouts: float) -> Path:
    """Write ``<lab dir>/nova-site.yaml`` (0600: it names credential sets only, but
    points at the lab's services)."""
    path = Path(d) / SITE_FILE
    path.write_text(yaml.safe_dump(site(lab, **timeouts)))
    path.chmod(0o600)
    return path
