"""The hand-off site file: ``nova:`` (what computes are configured with) and ``handoff:``
(how metalctl reaches Nova and Placement, how computes are mapped into their cell).

Schema ``site-handoff``; passwords by reference to credential sets, as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalctl import data as datafiles
from metalctl.cloud import CloudConfig
from metalctl.data import fields
from metalctl.handoff.novaconf import NovaSite, credential_of, site_from_dict

DISCOVER_HOSTS = "nova-manage cell_v2 discover_hosts --by-service --verbose"


@dataclass(frozen=True)
class CellMapping:
    """``discover_hosts`` over SSH on ``controller``, or ``interval`` (the scheduler's)."""

    method: str = "interval"
    controller: str | None = None
    command: str = DISCOVER_HOSTS


@dataclass(frozen=True)
class HandoffSite:
    """Everything the hand-off takes from the site file."""

    nova: NovaSite
    api: CloudConfig
    cell_mapping: CellMapping
    register_timeout_s: float = 90.0
    verify_timeout_s: float = 90.0
    canary_image: str | None = None  # Glance image id of the canary (kernel + initramfs)
    canary_timeout_s: float = 120.0


def load(path: Path, credentials_file: Path | None = None) -> HandoffSite:
    """Read and validate a hand-off site file, resolving its credential sets.

    Raises:
        InputError: naming the file, the field and the line.
    """
    data, lines = datafiles.load_with_lines(path, "site-handoff")
    return from_dict(data, str(path), credentials_file, lines)


def from_dict(data: dict[str, Any], label: str = "site", credentials_file: Path | None = None,
              lines: dict[Any, int] | None = None) -> HandoffSite:
    """:func:`load` for data already parsed (the lab, tests).

    Raises:
        InputError: naming the field (and the line when ``lines`` is given).
    """
    datafiles.validate(data, "site-handoff", label, lines)
    nova = site_from_dict(data["nova"], label, credentials_file, lines)
    h = data["handoff"]
    api = h["api"]
    token = None
    if api.get("placement_credentials"):
        token = credential_of(api["placement_credentials"], credentials_file, label,
                              ("handoff", "api", "placement_credentials"),
                              lines).entries[0].password
    if api.get("cafile"):  # read here (the nova section's cafile is the compute host's)
        where = ("handoff", "api", "cafile")
        fields.check_path(api["cafile"], label, "handoff.api.cafile", "file-or-dir",
                          (lines or {}).get(where))
    user, project = api.get("noauth_user", "metalctl"), api.get("noauth_project", "metalctl")
    config = CloudConfig(
        cloud=api.get("cloud"), compute_endpoint=api.get("compute_endpoint"),
        placement_endpoint=api.get("placement_endpoint"),
        # what keystonemiddleware hands nova-api after validating a token; the token is
        # passed on by Nova to Glance and Neutron (without one, Nova's image client
        # raises "No valid authentication is available" and the create answers 500)
        compute_headers={"X-User-Id": user, "X-Project-Id": project, "X-Roles": "admin",
                         "X-Auth-Token": f"noauth-{user}"},
        placement_token=token, verify=api.get("cafile", True))
    cell = h.get("cell_mapping") or {"method": "interval"}
    return HandoffSite(nova=nova, api=config,
                       cell_mapping=CellMapping(cell["method"], cell.get("controller"),
                                                cell.get("command", DISCOVER_HOSTS)),
                       register_timeout_s=float(h.get("register_timeout_s", 90)),
                       verify_timeout_s=float(h.get("verify_timeout_s", 90)),
                       canary_image=(h.get("canary") or {}).get("image"),
                       canary_timeout_s=float((h.get("canary") or {}).get("timeout_s", 120)))
