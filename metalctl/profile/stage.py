"""The profile stage as a library: facts -> plan -> BIOS through the BMC -> verify.

Every function takes a :class:`~metalctl.store.Store` (so a pipeline can import and
call them) and records what it did as events of stage ``profile``. Facts and the
latest plan of a node are kept in the store (``node_data``) so later stages
(kickstart kernel arguments, Nova hand-off) read the same plan.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalctl.budget import Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import BiosError, FactsIncomplete, InputError, MetalctlError
from metalctl.model.node import DiscoveryRecord, Event, Lifecycle
from metalctl.model.topology import Topology
from metalctl.profile import bios, derive
from metalctl.profile.facts import bmc as bmc_facts
from metalctl.profile.facts import inband, ironic_inspection
from metalctl.profile.library import Profile
from metalctl.ssh import SshTarget
from metalctl.store import Store, now

LOG = logging.getLogger(__name__)
STAGE = "profile"


@dataclass
class NodeRef:
    """A node as the store knows it (or only a label, for facts given as a file)."""

    label: str
    key: str | None = None
    record: DiscoveryRecord | None = None
    ironic_uuid: str | None = None


def resolve(store: Store, ref: str) -> NodeRef:
    row = store.find(ref)
    if row is None:
        raise InputError("node", ref, "not in the local store (run discover/enroll first, "
                                      "or give --facts FILE for a node metalctl does not know)")
    return NodeRef(label=row["name"] or ref, key=row["key"],
                   record=DiscoveryRecord.from_dict(row["record"]),
                   ironic_uuid=row["ironic_uuid"])


# --- facts -------------------------------------------------------------------------------


def read_facts_file(path: Path) -> Topology:
    """Collector output (text), Ironic inspection data (JSON) or a saved Topology."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(str(path), "-", exc.strerror or str(exc)) from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(str(path), f"line {exc.lineno}", f"not JSON: {exc.msg}") from None
        if "numa_topology" in data or "inventory" in data or "plugin_data" in data:
            return ironic_inspection.parse(data, str(path))
        if "cpus" in data:
            return Topology.from_dict(data)
        raise InputError(str(path), "-", "neither Ironic inspection data nor metalctl facts")
    return inband.parse(text, path=str(path))


def collect(store: Store, node: NodeRef, *, local: bool = False, ssh: SshTarget | None = None,
            file: Path | None = None, ironic: Any = None) -> Topology:
    """Collect a node's topology from one source and keep it in the store."""
    if file is not None:
        topo = read_facts_file(file)
    elif ssh is not None:
        topo = inband.collect_ssh(ssh)
    elif local:
        topo = inband.collect_local()
    elif ironic is not None:
        if not node.ironic_uuid:
            raise InputError("node", node.label, "not enrolled in Ironic")
        topo = ironic_inspection.parse(ironic.inventory(node.ironic_uuid),
                                       f"Ironic inventory of {node.label}")
    elif node.record is not None:
        topo = bmc_facts.from_record(node.record)
    else:
        raise InputError("facts", node.label, "no source given")
    if node.key:
        store.put_data(node.key, "topology", topo.to_dict())
        store.add_event(Event(node.key, STAGE, "facts", now(), topo.summary()))
    return topo


def facts_of(store: Store, node: NodeRef) -> Topology:
    """The node's stored topology, or what its BMC record gives (CPU ids unknown)."""
    if node.key:
        data = store.get_data(node.key, "topology")
        if data:
            return Topology.from_dict(data)
    if node.record is not None:
        return bmc_facts.from_record(node.record)
    raise FactsIncomplete(node=node.label, reason="no facts collected; run `metalctl profile "
                                                  "facts NODE --ssh HOST` first")


# --- plan --------------------------------------------------------------------------------


def plan(store: Store | None, node: NodeRef, profile: Profile, topo: Topology,
         bios_lib: bios.BiosLibrary | None = None) -> tuple[derive.Plan, dict[str, Any]]:
    """Derive the plan and the vendor BIOS attributes; keep both in the store.

    Returns the plan and a ``bios`` section: ``{vendor, attributes}`` or ``{error}``
    when the node's manufacturer has no map (derivation itself does not fail on it).
    """
    result = derive.derive(topo, profile, node.label)
    bios_section: dict[str, Any] = {"intent": result.bios_intent}
    manufacturer = node.record.manufacturer if node.record else None
    if manufacturer:
        try:
            vmap = (bios_lib or bios.BiosLibrary()).for_manufacturer(manufacturer, node.label)
            bios_section.update(vendor=vmap.vendor, verified=vmap.verified,
                                attributes=vmap.attributes(result.bios_intent))
        except BiosError as exc:
            bios_section["error"] = str(exc)
    else:
        bios_section["error"] = "manufacturer unknown (node not discovered through its BMC)"
    if store is not None and node.key:
        store.put_data(node.key, "plan", {"profile": profile.name, "plan": result.to_dict(),
                                          "bios": bios_section})
        store.add_event(Event(node.key, STAGE, "derived", now(),
                              {"profile": profile.name, "host_cpus": result.host_cpus,
                               "isolated_cpus": result.isolated_cpus}))
    return result, bios_section


# --- BIOS ----------------------------------------------------------------------------------


def desired_bios(node: NodeRef, profile: Profile, bios_lib: bios.BiosLibrary) -> dict[str, str]:
    """Vendor attributes for the profile's BIOS intent (no topology needed)."""
    intent = derive.bios_intent(profile)
    manufacturer = node.record.manufacturer if node.record else None
    return bios_lib.for_manufacturer(manufacturer, node.label).attributes(intent)


def apply_bios(store: Store, node: NodeRef, profile: Profile, creds: CredentialSet,
               verify: bool | str, budget: Budget, *, reboot: bool = False,
               ironic: Any = None, bios_lib: bios.BiosLibrary | None = None,
               settle_s: float = 600.0) -> bios.ApplyResult:
    """Write the profile's BIOS settings (Redfish, or Ironic's BIOS interface when
    ``ironic`` is given); mark the node ``profiled`` once they are current."""
    lib = bios_lib or bios.BiosLibrary()
    try:
        if node.record is None:
            raise BiosError(node=node.label, reason="no BMC record; discover the node first")
        desired = desired_bios(node, profile, lib)
        if ironic is not None:
            if not node.ironic_uuid:
                raise BiosError(node=node.label, reason="not enrolled in Ironic")
            result = bios.apply_ironic(ironic, node.ironic_uuid, node.label, desired,
                                       timeout_s=settle_s)
        else:
            backend = bios.RedfishBios(node.record, creds, verify, budget)
            result = bios.apply(backend, desired, reboot=reboot, settle_s=settle_s)
    except MetalctlError as exc:
        result = bios.ApplyResult(node.label, bios.Outcome.UNSUPPORTED
                                  if "need Redfish" in str(exc) else bios.Outcome.FAILED,
                                  error=str(exc), via="ironic" if ironic else "redfish")
    result.node = node.label  # the node's name, not the BMC's system name
    if node.key:
        store.add_event(Event(node.key, STAGE, f"bios-{result.outcome.value}", now(),
                              {"profile": profile.name, "via": result.via, **result.changes},
                              result.error))
        if result.outcome in (bios.Outcome.APPLIED, bios.Outcome.UNCHANGED):
            store.set_state(node.key, Lifecycle.PROFILED)
            # what the BIOS should keep matching (audit BMC-001 checks drift against it)
            store.put_data(node.key, "bios", {"profile": profile.name, "via": result.via})
    return result


def diff_bios(node: NodeRef, profile: Profile, creds: CredentialSet, verify: bool | str,
              budget: Budget, bios_lib: bios.BiosLibrary | None = None) -> list[bios.DiffRow]:
    lib = bios_lib or bios.BiosLibrary()
    if node.record is None:
        raise BiosError(node=node.label, reason="no BMC record; discover the node first")
    desired = desired_bios(node, profile, lib)
    backend = bios.RedfishBios(node.record, creds, verify, budget)
    return bios.diff(desired, backend.state())
