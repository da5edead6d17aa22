"""The profile stage as a library: facts -> plan -> BIOS through the BMC -> verify.

Every function takes a :class:`~metalctl.store.Store` (so a pipeline can import and
call them) and records what it did as events of stage ``profile``. Facts and the
latest plan of a node are kept in the store (``node_data``) so later stages
(kickstart kernel arguments, Nova hand-off) read the same plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl import data as datafiles
from metalctl import fleet
from metalctl.budget import ENROLLMENT, Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import (
    BiosError,
    BiosUnsupported,
    FactsIncomplete,
    InputError,
    MetalctlError,
    describe,
)
from metalctl.model.node import DiscoveryRecord, Event, Lifecycle
from metalctl.model.topology import Topology
from metalctl.profile import bios, derive
from metalctl.profile.facts import bmc as bmc_facts
from metalctl.profile.facts import inband, ironic_inspection
from metalctl.profile.library import Profile, ProfileLibrary
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
    """Return the stored node named or keyed ``ref``.

    Raises:
        InputError: the node is not in the local store.
    """
    row = store.find(ref)
    if row is None:
        raise InputError("node", ref, "not in the local store (run discover/enroll first, "
                                      "or give --facts FILE for a node metalctl does not know)")
    return NodeRef(label=row["name"] or ref, key=row["key"],
                   record=DiscoveryRecord.from_dict(row["record"]),
                   ironic_uuid=row["ironic_uuid"])


# --- facts -------------------------------------------------------------------------------


def read_facts_file(path: Path) -> Topology:
    """Collector output (text), Ironic inspection data (JSON) or a saved Topology.

    Read through :func:`metalctl.data.read_text` (bounded, UTF-8); JSON is validated
    against the ``ironic-inspection`` or ``facts`` schema before it is used.

    Raises:
        InputError: naming the file, the field and the line.
    """
    text = datafiles.read_text(path)
    if not text.lstrip().startswith(("{", "[")):
        return inband.parse(text, path=str(path))
    data = datafiles.parse_json(text, str(path))
    if not isinstance(data, dict):
        raise InputError(str(path), "(top level)",
                         f"expected a JSON object, got {datafiles.loader._type_name(data)}")
    if "numa_topology" in data or "inventory" in data or "plugin_data" in data:
        datafiles.validate(data, "ironic-inspection", str(path))
        return ironic_inspection.parse(data, str(path))
    if "cpus" in data:
        datafiles.validate(data, "facts", str(path))
        return Topology.from_dict(data)
    raise InputError(str(path), "(top level)",
                     "neither Ironic inspection data nor metalctl facts")


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
    keep_facts(store, node, topo)
    return topo


def keep_facts(store: Store, node: NodeRef, topo: Topology) -> None:
    """Keep a node's topology in the store (``facts`` event)."""
    if node.key:
        store.put_data(node.key, "topology", topo.to_dict())
        store.add_event(Event(node.key, STAGE, "facts", now(), topo.summary()))


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
         bios_lib: bios.BiosLibrary | None = None, *, after_install: bool = False,
         ) -> tuple[derive.ProfilePlan, dict[str, Any]]:
    """Derive the plan and the vendor BIOS attributes; keep both in the store.

    Returns the plan and a ``bios`` section: ``{vendor, attributes}`` or ``{error}``
    when the node's manufacturer has no map (derivation itself does not fail on it).
    ``after_install``: the plan of a host installed without it (its kernel arguments
    are not on the host's command line; kept in the stored plan for ``verify``).
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
                                          "bios": bios_section,
                                          **({"after_install": True} if after_install
                                             else {})})
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


def apply_bios(store: Store | None, node: NodeRef, profile: Profile, creds: CredentialSet,
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
            with bios.RedfishBios(node.record, creds, verify, budget) as backend:
                result = bios.apply(backend, desired, reboot=reboot, settle_s=settle_s)
    except MetalctlError as exc:
        outcome = bios.BiosOutcome.UNSUPPORTED if isinstance(exc, BiosUnsupported) \
            else bios.BiosOutcome.FAILED
        result = bios.ApplyResult(node.label, outcome, error=str(exc),
                                  via="ironic" if ironic else "redfish")
    result.node = node.label  # the node's name, not the BMC's system name
    if store is not None and node.key:
        store.add_event(Event(node.key, STAGE, f"bios-{result.outcome.value}", now(),
                              {"profile": profile.name, "via": result.via, **result.changes},
                              result.error))
        if result.outcome in (bios.BiosOutcome.APPLIED, bios.BiosOutcome.UNCHANGED):
            store.set_state(node.key, Lifecycle.PROFILED)
            # what the BIOS should keep matching (audit BMC-001 checks drift against it)
            store.put_data(node.key, "bios", {"profile": profile.name, "via": result.via,
                                              "attributes": desired_or_none(node, profile,
                                                                            lib)})
    return result


def desired_or_none(node: NodeRef, profile: Profile,
                    bios_lib: bios.BiosLibrary) -> dict[str, str] | None:
    """:func:`desired_bios`, or None when the node's vendor has no map."""
    try:
        return desired_bios(node, profile, bios_lib)
    except BiosError:
        return None


@dataclass(frozen=True)
class BiosOptions:
    """How to apply or compare a profile's BIOS part on many nodes.

    Attributes:
        credentials: the credential set for a node (by its recorded set name, or the
            one the operator gave); None when there is none.
        verify: Redfish TLS verification (True, a CA bundle path, or False).
        budget: BMC timeouts.
        reboot: reset the system so pending settings apply, then verify them.
        ironic: apply through Ironic's BIOS interface (a manual clean step) instead.
        bios_lib: vendor attribute maps.
        settle_s: how long to wait for settings to become current.
        concurrency: nodes worked on at once.
    """

    credentials: Callable[[NodeRef], CredentialSet | None]
    verify: bool | str = True
    budget: Budget = ENROLLMENT
    reboot: bool = False
    ironic: Any = None
    bios_lib: bios.BiosLibrary = field(default_factory=bios.BiosLibrary)
    settle_s: float = 600.0
    concurrency: int = 8


def apply(nodes: list[NodeRef], profile: Profile, opts: BiosOptions, *,
          store: Store | None = None,
          on_result: Callable[[bios.ApplyResult], None] | None = None,
          ) -> list[bios.ApplyResult]:
    """The profile stage's BIOS step for many nodes, ``opts.concurrency`` at a time.

    Each node's outcome is recorded (see :func:`apply_bios`); a node that fails is
    reported with its reason and the others go on. Results follow ``nodes``' order.
    """
    def work(node: NodeRef) -> bios.ApplyResult:
        creds = opts.credentials(node) or CredentialSet("-", ())
        return apply_bios(store, node, profile, creds, opts.verify, opts.budget,
                          reboot=opts.reboot, ironic=opts.ironic, bios_lib=opts.bios_lib,
                          settle_s=opts.settle_s)

    results: dict[str, bios.ApplyResult] = {}

    def done(o: fleet.TaskOutcome[NodeRef, bios.ApplyResult]) -> None:
        res = o.value if o.ok and o.value else bios.ApplyResult(
            o.item.label, bios.BiosOutcome.FAILED, error=describe(o.error))
        results[o.item.label] = res
        if on_result:
            on_result(res)

    for _ in fleet.run(nodes, work, concurrency=opts.concurrency, on_done=done):
        pass
    return [results[n.label] for n in nodes]


@dataclass
class DriftReport:
    """BIOS drift of one node: a row per attribute, or the error that stopped the read."""

    node: str
    rows: list[bios.DiffRow] = field(default_factory=list)
    error: str | None = None

    @property
    def drifted(self) -> bool:
        return any(r.status != "ok" for r in self.rows)


def diff(nodes: list[NodeRef], profile: Profile, opts: BiosOptions) -> list[DriftReport]:
    """BIOS drift of every node against ``profile`` (read-only; a node that cannot be read
    is reported with its error and the others go on)."""
    out = []
    for node in nodes:
        try:
            creds = opts.credentials(node)
            if creds is None:
                raise InputError("--credentials", node.label,
                                 "no credential set recorded; give one")
            out.append(DriftReport(node.label, diff_bios(node, profile, creds, opts.verify,
                                                         opts.budget, opts.bios_lib)))
        except MetalctlError as exc:
            out.append(DriftReport(node.label, error=str(exc)))
    return out


def verify(store: Store, node: NodeRef, live: Topology,
           library: ProfileLibrary | None = None,
           profile: str | None = None) -> tuple[Profile, list[derive.PlanCheck]]:
    """Re-derive the plan on the live host's topology and compare it with the stored plan;
    the comparison is recorded as a ``verified`` event.

    A plan made after install (``after_install`` in the store: the host was installed
    without its kernel arguments) leaves the checks only such a boot passes ``pending``
    rather than failed: ``metalctl run --from provision`` installs with them.

    Raises:
        InputError: the node has no derived plan.
    """
    stored = store.get_data(node.key or "", "plan")
    if not stored:
        raise InputError("plan", node.label, "no derived plan; run `metalctl profile derive` "
                                             "first")
    prof = (library or ProfileLibrary()).load(profile or stored["profile"])
    checks = derive.compare(derive.ProfilePlan.from_dict(stored["plan"]), live, prof)
    if stored.get("after_install"):
        for c in checks:
            if not c.ok and c.check.startswith(derive.BOOT_CHECKS):
                c.pending = True
                c.actual += " (installed before its plan: a reinstall boots with it)"
    if node.key:
        store.add_event(Event(node.key, STAGE, "verified", now(),
                              {"passed": sum(c.ok for c in checks),
                               "failed": [c.check for c in checks
                                          if not c.ok and not c.pending],
                               "pending": [c.check for c in checks if c.pending]}))
    return prof, checks


def diff_bios(node: NodeRef, profile: Profile, creds: CredentialSet, verify: bool | str,
              budget: Budget, bios_lib: bios.BiosLibrary | None = None) -> list[bios.DiffRow]:
    """Compare a profile's BIOS attributes with the node's current ones over Redfish.

    Raises:
        BiosError: the node has no BMC record.
    """
    lib = bios_lib or bios.BiosLibrary()
    if node.record is None:
        raise BiosError(node=node.label, reason="no BMC record; discover the node first")
    desired = desired_bios(node, profile, lib)
    with bios.RedfishBios(node.record, creds, verify, budget) as backend:
        return bios.diff(desired, backend.state())
