"""An Ansible inventory of the store's nodes, so day-2 work picks up where metalctl stops.

The document is Ansible's YAML inventory format (the ``yaml`` inventory plugin): every
host under ``all.hosts`` with its variables, and groups under ``all.children``:

* ``state_<lifecycle>``: ``state_installed``, ``state_audited``, ``state_handed_off``...
* ``profile_<name>``: the performance profile of the node's plan (``profile_nfv_sriov``)
* ``rack_<rack>``: the rack the BMC reports (Redfish ``Location.Placement.Rack``)

Group names keep only letters, digits and ``_`` (what Ansible accepts without warning).
Host variables: ``ansible_host`` (the management address the install proved over SSH),
``ansible_user``, ``ansible_port``, the ``known_hosts`` file metalctl wrote the host keys to
(as ``UserKnownHostsFile`` with ``StrictHostKeyChecking=yes``: Ansible never adds a key)
and the private key *path* when one is given; never a password or a key itself. A node
not installed yet has no management address: it is listed (by state, with its BMC) but has
no ``ansible_host``. ``metalctl_*`` variables carry the store key, BMC URL and state.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class SshDefaults:
    """SSH settings for hosts whose install record does not say (user, port, files)."""

    user: str = "root"
    port: int = 22
    known_hosts: Path | None = None
    key_file: Path | None = None


def group_name(prefix: str, value: str) -> str:
    """Return ``prefix_value`` with every character Ansible warns about as ``_``."""
    return re.sub(r"\W", "_", f"{prefix}_{value}".lower(), flags=re.ASCII)


def host_vars(node: dict[str, Any], install: dict[str, Any] | None,
              defaults: SshDefaults) -> dict[str, Any]:
    """Return the Ansible variables of one node (its store row and install record)."""
    record = node.get("record") or {}
    out: dict[str, Any] = {"metalctl_key": node["key"], "metalctl_state": node["state"],
                           "metalctl_bmc": record.get("bmc_url")}
    if not install or not install.get("address"):
        return out
    known_hosts = install.get("known_hosts") or defaults.known_hosts
    out.update(ansible_host=install["address"],
               ansible_user=install.get("ssh_user") or defaults.user,
               ansible_port=int(install.get("ssh_port") or defaults.port))
    if known_hosts:
        out["ansible_ssh_common_args"] = (
            f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))} "
            "-o StrictHostKeyChecking=yes")
    if defaults.key_file:
        out["ansible_ssh_private_key_file"] = str(defaults.key_file)
    return out


def inventory(nodes: list[dict[str, Any]],
              data: Callable[[str, str], dict[str, Any] | None],
              defaults: SshDefaults = SshDefaults()) -> dict[str, Any]:
    """Return the inventory of ``nodes`` (store rows); ``data(key, kind)`` reads node data."""
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, set[str]] = {}
    for node in nodes:
        name = node.get("name") or re.sub(r"\W", "-", node["key"], flags=re.ASCII)
        hosts[name] = host_vars(node, data(node["key"], "install"), defaults)
        plan = data(node["key"], "plan") or {}
        rack = (node.get("record") or {}).get("rack")
        for prefix, value in (("state", node["state"]), ("profile", plan.get("profile")),
                              ("rack", rack)):
            if value:
                groups.setdefault(group_name(prefix, str(value)), set()).add(name)
    return {"all": {"hosts": hosts, "children": {
        g: {"hosts": dict.fromkeys(sorted(members))} for g, members in sorted(groups.items())}}}


def dump(doc: dict[str, Any]) -> str:
    """Return the inventory as YAML (``ansible-inventory -i FILE`` reads it)."""
    return "# metalctl nodes -o ansible: Ansible YAML inventory\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False)
