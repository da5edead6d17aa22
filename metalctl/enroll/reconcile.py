"""Stage 2 — enroll: make Ironic hold exactly one node per discovered system.

``plan`` reads Ironic once (all nodes, all ports) and matches each desired node
the way TripleO's import does: by BMC identity (address + system id for
Redfish, address + port for IPMI), by any port MAC, and by name. One match is
updated where it differs, none is created, several is an error that names the
candidates. ``apply`` runs the plan concurrently, then moves each node through
``manage`` (Ironic verifies the BMC credentials), optionally ``inspect`` and
``provide``. A re-run after any interruption converges: creates are never
retried blindly, they are re-planned against what Ironic now holds.

Ironic stays the source of truth for provisioning state; metalctl records
events in its store and mirrors the state, and does nothing Ironic does itself.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from metalctl import fleet, logredact, poll
from metalctl.budget import ENROLLMENT, Budget
from metalctl.credentials import CredentialSet
from metalctl.enroll import naming
from metalctl.errors import (
    AmbiguousMatch,
    InputError,
    IronicError,
    IronicUnavailable,
    MetalctlError,
    WaitTimeout,
)
from metalctl.errors import describe as describe_error
from metalctl.ironic import Ironic
from metalctl.model.hardware import NicFacts
from metalctl.model.mac import mac_problem
from metalctl.model.node import (
    DesiredNode,
    DiscoveryRecord,
    Event,
    Lifecycle,
    Protocol,
    Status,
    bmc_identity,
)
from metalctl.store import Store, now

LOG = logging.getLogger(__name__)

_CPU_ARCH = {"x86": "x86_64", "x86-64": "x86_64", "x86_64": "x86_64", "arm": "aarch64",
             "aarch64": "aarch64", "ppc64le": "ppc64le"}


class Action(str, enum.Enum):
    """What enroll did to one node in Ironic."""
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class EnrollOptions:
    """What enrollment does beyond creating/updating.

    Attributes:
        manage: move ``enroll`` nodes to ``manageable`` (Ironic checks credentials).
        inspect: run out-of-band inspection on manageable nodes.
        provide: move manageable nodes to ``available``.
        resource_class / conductor_group: applied when the node data gives none.
        name_template: site naming scheme (see :mod:`metalctl.enroll.naming`).
        update_credentials: re-send passwords of existing nodes (Ironic masks them,
            so otherwise they are re-sent only when the credential set changed).
        verify_ca: Redfish TLS verification handed to Ironic (True, CA path, False).
        budget: concurrency and the per-node deadline for state transitions.
    """

    manage: bool = True
    inspect: bool = False
    provide: bool = False
    resource_class: str = "baremetal"
    conductor_group: str | None = None
    name_template: str = naming.DEFAULT_TEMPLATE
    update_credentials: bool = False
    verify_ca: bool | str = True
    #: one list call per interval for the whole batch (ironicclient's --wait uses 2 s)
    poll_interval_s: float = 2.0
    budget: Budget = ENROLLMENT


@dataclass
class NodePlan:
    """What to do for one desired node."""

    desired: DesiredNode
    match: dict[str, Any] | None = None
    patch: list[dict[str, Any]] = field(default_factory=list)
    new_ports: list[str] = field(default_factory=list)
    error: MetalctlError | None = None

    @property
    def action(self) -> Action:
        if self.error:
            return Action.FAILED
        if self.match is None:
            return Action.CREATED
        return Action.UPDATED if self.patch or self.new_ports else Action.UNCHANGED


@dataclass(frozen=True)
class EnrollResult:
    """The per-node line of the enrollment report."""

    key: str
    name: str | None
    action: Action
    uuid: str | None = None
    provision_state: str | None = None
    changes: tuple[str, ...] = ()
    error: str | None = None
    origin: str | None = None

    @property
    def ok(self) -> bool:
        return self.action is not Action.FAILED

    @property
    def reason(self) -> str | None:
        return self.error

    @property
    def evidence(self) -> dict[str, Any]:
        return {"action": self.action.value, "uuid": self.uuid,
                "provision_state": self.provision_state}

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a plain dict for rendering and events."""
        return {"key": self.key, "name": self.name, "action": self.action.value,
                "uuid": self.uuid, "provision_state": self.provision_state,
                "changes": list(self.changes), "error": self.error, "origin": self.origin}


# --- desired state from discovery ------------------------------------------------------


def desired_from_records(records: Sequence[DiscoveryRecord], creds: dict[str, CredentialSet],
                         opts: EnrollOptions, *, prefer: Collection[str] = ()
                         ) -> list[DesiredNode]:
    """Turn ``ok`` discovery records into desired Ironic nodes, one per system.

    ``creds`` maps credential-set names (as recorded at discovery) to the sets;
    the user that worked at discovery is the one given to Ironic. A system
    reached through several BMC addresses (same UUID, or same vendor, model and
    serial) becomes one node: see :func:`merge_aliases`; ``prefer`` holds keys
    already enrolled, kept over the others. Host-interface NICs get no port.
    """
    naming.validate(opts.name_template)
    out = []
    usable = sorted((r for r in records if r.status is Status.OK), key=lambda r: r.key)
    kept, aliases = merge_aliases(usable, prefer)
    for index, rec in enumerate(kept):
        cset = creds.get(rec.credentials or "")
        entry = next((c for c in cset.entries if c.username == rec.bmc_username), None) \
            if cset else None
        if rec.protocol is Protocol.REDFISH:
            ep = rec.endpoint
            assert ep is not None
            driver, pw_field = "redfish", "redfish_password"
            info: dict[str, Any] = {"redfish_address": ep.url,
                                    "redfish_system_id": rec.system_id,
                                    "redfish_username": rec.bmc_username,
                                    "redfish_verify_ca": opts.verify_ca}
        else:
            driver, pw_field = "ipmi", "ipmi_password"
            info = {"ipmi_address": rec.address, "ipmi_port": rec.port,
                    "ipmi_username": rec.bmc_username}
        extra: dict[str, Any] = {"metalctl_key": rec.key, "system_uuid": rec.uuid}
        if aliases.get(rec.key):
            extra["metalctl_aliases"] = aliases[rec.key]
        out.append(DesiredNode(
            key=rec.key, origin="store", driver=driver,
            driver_info={k: v for k, v in info.items() if v is not None},
            password=entry.password if entry else None, password_field=pw_field,
            name=naming.render(opts.name_template, rec, index),
            properties=_properties(rec),
            macs=tuple(n.mac for n in rec.hardware.nics if not is_host_interface(n)),
            extra=extra, credentials=rec.credentials,
        ))
    return out


#: Serial numbers that firmware reports when it has none; never an identity.
_PLACEHOLDER_SERIALS = {"", "0", "none", "n/a", "na", "not specified", "not available",
                        "to be filled by o.e.m.", "default string", "system serial number",
                        "0123456789", "1234567890", "xxxxxxxxxx", "unknown"}
_NIL_UUIDS = {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
              "03000200-0400-0500-0006-000700080009"}  # the last: a common AMI placeholder


def system_identity(rec: DiscoveryRecord) -> str | None:
    """What identifies the hardware behind a record whatever BMC address reached it.

    The SMBIOS UUID when it is a real one, else vendor + model + serial when the
    serial is not a firmware placeholder; ``None`` when neither is known.
    """
    uuid = (rec.uuid or "").strip().lower()
    if uuid and uuid not in _NIL_UUIDS:
        return f"uuid:{uuid}"
    serial = (rec.serial or "").strip()
    if len(serial) >= 3 and serial.lower() not in _PLACEHOLDER_SERIALS:
        return f"serial:{rec.manufacturer or rec.vendor or ''}/{rec.model or ''}/{serial}"
    return None


def _address_order(rec: DiscoveryRecord) -> tuple[int, int, str, int, str]:
    try:
        ip = ipaddress.ip_address(rec.address)
        return (ip.version, int(ip), "", rec.port or 0, rec.key)
    except ValueError:
        return (9, 0, rec.address, rec.port or 0, rec.key)


def merge_aliases(records: Sequence[DiscoveryRecord], prefer: Collection[str] = ()
                  ) -> tuple[list[DiscoveryRecord], dict[str, list[str]]]:
    """One record per system: the one in ``prefer`` (already enrolled), else the lowest
    address (then port, then Redfish before IPMI by key), so every run keeps the same one.

    Returns the kept records (input order) and, per kept key, the keys of its aliases.
    """
    groups: dict[str, list[DiscoveryRecord]] = {}
    for rec in records:
        ident = system_identity(rec)
        if ident:
            groups.setdefault(ident, []).append(rec)
    dropped: set[str] = set()
    aliases: dict[str, list[str]] = {}
    for ident, group in groups.items():
        if len(group) < 2:
            continue
        keeper = min(group, key=lambda r: (r.key not in prefer, _address_order(r)))
        others = sorted(r.key for r in group if r is not keeper)
        aliases[keeper.key] = others
        dropped.update(others)
        LOG.info("%s: one system behind %d BMC addresses; enrolling %s, aliases %s",
                 ident, len(group), keeper.key, ", ".join(others))
    return [r for r in records if r.key not in dropped], aliases


def is_host_interface(nic: NicFacts) -> bool:
    """The BMC's own USB/virtual NIC towards the host (Redfish host interface): no port."""
    return bool(getattr(nic, "host_interface", False)) or nic.source == "host-interface"


def _properties(rec: DiscoveryRecord) -> dict[str, Any]:
    hw = rec.hardware
    props: dict[str, Any] = {}
    cpus = hw.cpu.threads or hw.cpu.cores
    if cpus:
        props["cpus"] = cpus
    if hw.memory_gib:
        props["memory_mb"] = int(hw.memory_gib * 1024)
    if hw.cpu.arch:
        props["cpu_arch"] = _CPU_ARCH.get(hw.cpu.arch.lower(), hw.cpu.arch)
    sizes = [d.size_gib for d in hw.disks if d.size_gib]
    if sizes:
        # Ironic convention: one GiB less than the root disk, for partitioning overhead
        props["local_gb"] = max(int(max(sizes)) - 1, 1)
    if rec.boot_mode and rec.boot_mode.lower() in ("uefi", "bios", "legacy"):
        props["capabilities"] = "boot_mode:" + ("bios" if rec.boot_mode.lower() == "legacy"
                                                 else rec.boot_mode.lower())
    return props


# --- plan --------------------------------------------------------------------------------


@dataclass
class IronicSnapshot:
    """All nodes and ports, indexed the ways matching needs."""

    nodes: dict[str, dict[str, Any]]
    by_bmc: dict[tuple[str, str], set[str]]
    by_mac: dict[str, str]
    by_name: dict[str, str]
    macs_of: dict[str, set[str]]

    @classmethod
    def read(cls, ironic: Ironic) -> IronicSnapshot:
        """Read every Ironic node and port once and index them by BMC, MAC and name."""
        nodes = {n["uuid"]: n for n in ironic.nodes()}
        by_bmc: dict[tuple[str, str], set[str]] = {}
        for uuid, n in nodes.items():
            by_bmc.setdefault(bmc_identity(n["driver"], n.get("driver_info") or {}),
                              set()).add(uuid)
        by_mac, macs_of = {}, {}
        for p in ironic.ports():
            by_mac[p["address"].lower()] = p["node_uuid"]
            macs_of.setdefault(p["node_uuid"], set()).add(p["address"].lower())
        by_name = {n["name"]: u for u, n in nodes.items() if n.get("name")}
        return cls(nodes, by_bmc, by_mac, by_name, macs_of)

    def candidates(self, d: DesiredNode) -> set[str]:
        """Return the Ironic nodes matching ``d`` by BMC identity or by one of its MACs."""
        found = set(self.by_bmc.get(d.bmc_identity, set()))
        found |= {self.by_mac[m] for m in d.macs if m in self.by_mac}
        return found

    def named(self, d: DesiredNode) -> str | None:
        """Return the Ironic node already carrying ``d``'s name, if any."""
        return self.by_name.get(d.name) if d.name else None


def _diff(d: DesiredNode, node: dict[str, Any], opts: EnrollOptions) -> list[dict[str, Any]]:
    """JSON patch bringing ``node`` to ``d`` for the fields metalctl owns.

    Only keys metalctl sets are compared; what others put on the node stays.
    """
    patch: list[dict[str, Any]] = []

    def put(path: str, have: Any, want: Any) -> None:
        if want is not None and have != want:
            patch.append({"op": "add", "path": path, "value": want})

    put("/driver", node.get("driver"), d.driver)
    info = node.get("driver_info") or {}
    for key, value in d.driver_info.items():
        put(f"/driver_info/{key}", info.get(key), value)
    extra = node.get("extra") or {}
    cred_changed = d.credentials is not None and extra.get("metalctl_credentials") != \
        d.credentials
    if d.password is not None and d.password_field and (opts.update_credentials or cred_changed):
        patch.append({"op": "add", "path": f"/driver_info/{d.password_field}",
                      "value": d.password})
    props = node.get("properties") or {}
    for key, value in d.properties.items():
        put(f"/properties/{key}", props.get(key), value)
    put("/resource_class", node.get("resource_class"), d.resource_class or opts.resource_class)
    if d.conductor_group or opts.conductor_group:
        put("/conductor_group", node.get("conductor_group"),
            d.conductor_group or opts.conductor_group)
    put("/name", node.get("name"), d.name)
    for key, value in _extra(d).items():
        put(f"/extra/{key}", extra.get(key), value)
    return patch


def _extra(d: DesiredNode) -> dict[str, Any]:
    extra = {k: v for k, v in d.extra.items() if v is not None}
    extra["metalctl_key"] = d.key
    if d.credentials:
        extra["metalctl_credentials"] = d.credentials
    return extra


def _where(d: DesiredNode) -> tuple[str, str]:
    """(path, entry) naming a desired node in an error: its file entry, or its record."""
    if d.origin == "store":
        return f"discovered {d.key}", "record"
    path, _, entry = d.origin.rpartition(":")
    return (path, entry) if path else (d.origin, "node")


def refusals(desired: Sequence[DesiredNode]) -> dict[int, InputError]:
    """Desired nodes a plan must not hold, by index, each with its reason.

    A plan never holds two entries with the same name, MAC or BMC identity (the
    first one in the list is kept; the later one is refused naming the first),
    nor a port whose MAC is all-zero, broadcast or multicast.

    Raises:
        InputError: for an entry read from a file (the file is wrong: exit 3, nothing
            is changed). Entries from discovery are refused one by one instead.
    """
    out: dict[int, InputError] = {}
    seen_name: dict[str, DesiredNode] = {}
    seen_mac: dict[str, DesiredNode] = {}
    seen_bmc: dict[tuple[str, str], DesiredNode] = {}

    def refuse(i: int, d: DesiredNode, field: str, reason: str) -> None:
        path, entry = _where(d)
        err = InputError(path, f"{entry}.{field}" if field else entry, reason)
        if d.origin != "store":
            raise err
        out.setdefault(i, err)

    for i, d in enumerate(desired):
        for j, mac in enumerate(d.macs):
            problem = mac_problem(mac)
            if problem:
                refuse(i, d, f"ports[{j}].address", problem)
            elif mac.lower() in seen_mac:
                refuse(i, d, f"ports[{j}].address",
                       f"MAC {mac} is already {_label(seen_mac[mac.lower()])}'s")
        if d.bmc_identity in seen_bmc:
            refuse(i, d, "", f"same BMC as {_label(seen_bmc[d.bmc_identity])} "
                             f"({' '.join(filter(None, d.bmc_identity))})")
        if d.name and d.name in seen_name:
            refuse(i, d, "name", f"name {d.name!r} is already {_label(seen_name[d.name])}'s")
        if i in out:
            continue  # a refused entry claims nothing: the next holder is compared to the first
        for mac in d.macs:
            seen_mac.setdefault(mac.lower(), d)
        seen_bmc.setdefault(d.bmc_identity, d)
        if d.name:
            seen_name.setdefault(d.name, d)
    return out


def _label(d: DesiredNode) -> str:
    return d.key if d.origin == "store" else d.origin


def plan(ironic: Ironic, desired: Sequence[DesiredNode], opts: EnrollOptions
         ) -> list[NodePlan]:
    """Match every desired node against Ironic; pure apart from reading Ironic.

    Entries :func:`refusals` rejects are planned as failed, never applied.

    Raises:
        InputError: an entry from a file repeats another's name, MAC or BMC, or has a
            MAC that cannot be a port (nothing was changed).
        IronicUnavailable: Ironic cannot be read (nothing was changed).
    """
    register_secrets(desired)
    refused = refusals(desired)
    snap = IronicSnapshot.read(ironic)
    plans = []
    for i, d in enumerate(desired):
        if i in refused:
            plans.append(NodePlan(d, error=refused[i]))
            continue
        found = snap.candidates(d)
        named = snap.named(d)
        if named and found and named not in found:
            plans.append(NodePlan(d, error=AmbiguousMatch(
                node=d.name, candidates=f"name {d.name!r} is node {named}, but BMC/MAC match "
                                        f"{', '.join(sorted(found))}")))
            continue
        if len(found) > 1:
            plans.append(NodePlan(d, error=AmbiguousMatch(
                node=d.name or d.key, candidates=", ".join(sorted(found)))))
            continue
        uuid = next(iter(found), None) or named
        if uuid is None:
            plans.append(NodePlan(d, new_ports=list(d.macs)))
            continue
        node = snap.nodes[uuid]
        have = snap.macs_of.get(uuid, set())
        plans.append(NodePlan(d, match=node, patch=_diff(d, node, opts),
                              new_ports=[m for m in d.macs if m not in have]))
    return plans


# --- apply -------------------------------------------------------------------------------


def _create(ironic: Ironic, d: DesiredNode, opts: EnrollOptions) -> dict[str, Any]:
    info = dict(d.driver_info)
    if d.password is not None and d.password_field:
        info[d.password_field] = d.password.reveal()
    attrs: dict[str, Any] = {"driver": d.driver, "driver_info": info,
                             "properties": d.properties, "extra": _extra(d),
                             "resource_class": d.resource_class or opts.resource_class}
    if d.name:
        attrs["name"] = d.name
    if d.conductor_group or opts.conductor_group:
        attrs["conductor_group"] = d.conductor_group or opts.conductor_group
    return ironic.create_node(**attrs)


def _reveal(patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**op, "value": op["value"].reveal()} if hasattr(op.get("value"), "reveal") else op
            for op in patch]


def describe(p: NodePlan) -> tuple[str, ...]:
    """Return the changes a plan makes: patched fields and ports to create."""
    changes = [op["path"].lstrip("/") for op in p.patch]
    changes += [f"port {m}" for m in p.new_ports]
    return tuple(changes)


def apply_one(ironic: Ironic, p: NodePlan, opts: EnrollOptions) -> dict[str, Any]:
    """Create or update one node and its ports; returns the node. Raises MetalctlError."""
    d = p.desired
    if p.error:
        raise p.error
    if p.match is None:
        node = _create(ironic, d, opts)
    else:
        node = p.match
        if p.patch:
            node = ironic.update_node(node["uuid"], _reveal(p.patch))
    for mac in p.new_ports:
        ironic.create_port(node["uuid"], mac)
    return node


def _steps(opts: EnrollOptions) -> list[tuple[str, set[str], str]]:
    """(verb, states it applies to, state it must end in), in order."""
    steps = []
    if opts.manage:
        steps.append(("manage", {"enroll"}, "manageable"))
    if opts.inspect:
        steps.append(("inspect", {"manageable", "inspect failed"}, "manageable"))
    if opts.provide:
        steps.append(("provide", {"manageable"}, "available"))
    return steps


def _settle(ironic: Ironic, uuids: set[str], opts: EnrollOptions) -> dict[str, dict[str, Any]]:
    """Wait until none of ``uuids`` is in transition, polling with ONE list call per round.

    Per-node GET polling from many threads is what loads an Ironic API most during
    a batch; one list per interval leaves the API to the conductor's work.
    """
    def states() -> dict[str, dict[str, Any]]:
        return {n["uuid"]: n for n in ironic.states() if n["uuid"] in uuids}

    def settled(nodes: dict[str, dict[str, Any]]) -> bool:
        return not any(n.get("target_provision_state") for n in nodes.values())

    try:
        return poll.wait_for(states, ready=settled, timeout_s=opts.budget.deadline_s,
                             interval_s=opts.poll_interval_s,
                             what=f"Ironic: {len(uuids)} node(s) in transition")
    except WaitTimeout as exc:
        # the nodes as they are: the caller reports each one still in transition
        return exc.last


def _transitions(ironic: Ironic, nodes: dict[str, dict[str, Any]], opts: EnrollOptions
                 ) -> dict[str, MetalctlError]:
    """Run manage/inspect/provide over all nodes, batch by batch; failures by uuid.

    ``nodes`` is updated in place with the latest view of each node.
    """
    failures: dict[str, MetalctlError] = {}
    pending = {u for u, n in nodes.items() if n.get("target_provision_state")}
    if pending:  # left mid-transition by an earlier, interrupted run
        for uuid, state in _settle(ironic, pending, opts).items():
            nodes[uuid] = {**nodes[uuid], **state}
    for verb, sources, target in _steps(opts):
        todo = [u for u, n in nodes.items()
                if u not in failures and n["provision_state"] in sources]
        for out in fleet.run(todo, lambda u, v=verb: ironic.set_provision_state(u, v),
                             concurrency=opts.budget.concurrency):
            if not out.ok:
                failures[out.item] = _as_metalctl(out.error)
        started = {u for u in todo if u not in failures}
        if not started:
            continue
        settled = _settle(ironic, started, opts)
        for uuid in started:
            node = nodes[uuid] = {**nodes[uuid], **settled.get(uuid, {})}
            if node.get("target_provision_state"):
                failures[uuid] = IronicError(
                    reason=f"'{verb}' still {node['provision_state']} after "
                           f"{opts.budget.deadline_s:g}s")
            elif node["provision_state"] != target:
                failures[uuid] = IronicError(
                    reason=f"'{verb}' left the node {node['provision_state']}: "
                           f"{node.get('last_error') or 'no error recorded'}")
    return failures


def _as_metalctl(err: BaseException | None) -> MetalctlError:
    if isinstance(err, MetalctlError):
        return err
    LOG.warning("unexpected %s: %s", type(err).__name__, err)
    return IronicError(reason=logredact.scrub(f"unexpected {type(err).__name__}: {err}"))


def enroll(
    desired: Sequence[DesiredNode],
    ironic: Ironic,
    opts: EnrollOptions | None = None,
    *,
    store: Store | None = None,
    on_result: Callable[[EnrollResult], None] | None = None,
) -> list[EnrollResult]:
    """Plan and apply enrollment for ``desired``; one result per node.

    Nodes and ports are written concurrently (``budget.concurrency``), then the
    provision-state steps run as batches. A node whose write or transition fails
    is reported ``failed`` with the reason; the others carry on.

    Raises:
        IronicUnavailable: Ironic could not be read to plan (nothing changed).
    """
    opts = opts or EnrollOptions()
    plans = plan(ironic, desired, opts)
    if store is not None:  # the other addresses of a system enrolled once (merge_aliases)
        for d in desired:
            for alias in d.extra.get("metalctl_aliases") or ():
                store.add_event(Event(alias, "enroll", "alias", now(), {"of": d.key}))
    results: list[EnrollResult] = []
    written: dict[str, tuple[NodePlan, dict[str, Any]]] = {}

    def finish(res: EnrollResult) -> None:
        if store is not None:
            _record(store, res)
        results.append(res)
        if on_result:
            on_result(res)

    def failed(p: NodePlan, err: BaseException | None, node: dict[str, Any] | None) -> None:
        node = node or p.match or {}
        finish(EnrollResult(p.desired.key, node.get("name") or p.desired.name, Action.FAILED,
                            node.get("uuid"), node.get("provision_state"), describe(p),
                            _error_text(err), p.desired.origin))

    for out in fleet.run(plans, lambda p: apply_one(ironic, p, opts),
                         concurrency=opts.budget.concurrency):
        if out.ok and out.value is not None:
            written[out.value["uuid"]] = (out.item, out.value)
        else:
            failed(out.item, out.error, None)
    nodes = {u: n for u, (_, n) in written.items()}
    try:
        failures = _transitions(ironic, nodes, opts)
    except MetalctlError as exc:  # Ironic went away between the phases
        failures = {u: exc for u in written}
    for uuid, (p, _) in written.items():
        node = nodes[uuid]
        if uuid in failures:
            failed(p, failures[uuid], node)
        else:
            finish(EnrollResult(p.desired.key, node.get("name"), p.action, uuid,
                                node.get("provision_state"), describe(p), None,
                                p.desired.origin))
    return sorted(results, key=lambda r: (r.name or "", r.key))


def _error_text(err: BaseException | None) -> str:
    """The reason reported and stored for a failed node, credentials masked."""
    if isinstance(err, IronicUnavailable):
        return logredact.scrub(f"{err} (re-run to converge)")
    return logredact.scrub(describe_error(err))


def register_secrets(desired: Sequence[DesiredNode]) -> None:
    """Register every credential enrollment sends, for masking wherever a peer echoes it.

    The password travels as a Secret, but files may carry more in ``driver_info``
    (``ipmi_kg_key``, ``*_token``...): all of them are masked in logs, errors,
    events and output (see :mod:`metalctl.logredact`).
    """
    values: list[Any] = []
    for d in desired:
        if d.password is not None:
            values.append(d.password)
        values += [v for k, v in d.driver_info.items()
                   if logredact.is_secret_field(k) and isinstance(v, str)]
    logredact.register(values)


def _record(store: Store, res: EnrollResult) -> None:
    store.add_event(Event(res.key, "enroll", res.action.value, now(),
                          {"changes": list(res.changes), "uuid": res.uuid,
                           "provision_state": res.provision_state}, res.error))
    if res.action is not Action.FAILED:
        store.set_state(res.key, Lifecycle.ENROLLED, name=res.name, ironic_uuid=res.uuid)
