"""The adapter table: one small function per stage, from "these nodes are ready for
stage S" to that stage's library call, reporting one :class:`StepResult` per node.

Stages are called through their public entry points with the store, so each records its
own events and lifecycle transition exactly as when run alone. Provision and hand-off
need inputs only a caller can build (the boot service, the Nova site): they come in
:class:`StageInputs`; without them a node fails that stage with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from metalctl import discover as discover_stage
from metalctl import enroll as enroll_stage
from metalctl.audit import formats as audit_formats
from metalctl.audit.run import AuditOptions
from metalctl.audit.run import audit as audit_hosts
from metalctl.budget import DISCOVERY, ENROLLMENT
from metalctl.credentials import CredentialSet
from metalctl.errors import MetalctlError, describe
from metalctl.handoff import handoff as handoff_hosts
from metalctl.harden import HardenOptions
from metalctl.harden import harden as harden_hosts
from metalctl.hosts import HostSpec
from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.profile import bios
from metalctl.profile import run as profile_run
from metalctl.profile import stage as profile_stage
from metalctl.profile.library import ProfileLibrary
from metalctl.provision.stage import ProvisionResult, install_name
from metalctl.provision.stage import provision as provision_nodes
from metalctl.rules.catalogue import Rule
from metalctl.run.rackfile import Rack
from metalctl.run.scheduler import Adapter, Emit, StepResult
from metalctl.store import Store

LOG = logging.getLogger(__name__)


@dataclass
class StageInputs:
    """What the adapters need beyond the rack file, built once per run.

    Attributes:
        credentials: BMC credential sets by name (the rack names them).
        verify: BMC TLS verification (True, a CA bundle path, or False).
        ironic: the Ironic client (:class:`metalctl.ironic.Ironic`), or a callable that
            connects on first use (a run that stops before enroll never needs Ironic).
        profiles / bios_lib: where profiles and vendor BIOS maps are read.
        provision: ``(ProvisionInputs, ProvisionOptions)`` for the provision stage
            (:mod:`metalctl.provision.stage`).
        handoff: ``(HandoffInputs, HandoffOptions)`` for the hand-off stage.
        rules: the hardening rules harden applies and audit checks.
        harden / audit: their options (SSH policy, site, PKI); a host's known_hosts comes
            from its install record when the options give none.
        settle_s: how long BIOS settings may take to become current.
    """

    credentials: Mapping[str, CredentialSet]
    verify: bool | str = True
    ironic: Any = None
    profiles: ProfileLibrary = field(default_factory=ProfileLibrary)
    bios_lib: bios.BiosLibrary = field(default_factory=bios.BiosLibrary)
    provision: tuple[Any, Any] | None = None
    handoff: tuple[Any, Any] | None = None
    rules: list[Rule] | None = None
    harden: HardenOptions | None = None
    audit: AuditOptions | None = None
    settle_s: float = 600.0
    #: stages run again on nodes already past them (``--from``): provision reinstalls
    redo: frozenset[str] = frozenset()
    #: where the run writes its reports (each audit's HTML page goes beside them)
    report_dir: Path | None = None

    def ironic_client(self) -> Any:
        if callable(self.ironic) and not hasattr(self.ironic, "nodes"):
            self.ironic = self.ironic()
        return self.ironic

    def credential_set(self, names: tuple[str, ...] | str) -> CredentialSet:
        """Sets named ``a+b`` are tried in order (what discovery records as the name)."""
        parts = names.split("+") if isinstance(names, str) else list(names)
        return CredentialSet("+".join(parts),
                             tuple(e for n in parts for e in self.credentials[n].entries))


def table(rack: Rack, inputs: StageInputs, store: Store) -> list[Adapter]:
    """Every stage's adapter, in pipeline order (discover is the source of nodes)."""
    power = ("bmc_power",)
    return [
        Adapter("discover", lambda keys, emit: discover(rack, inputs, store, emit),
                recheck=True),
        Adapter("enroll", lambda keys, emit: enroll(rack, inputs, store, keys, emit),
                batch=True, recheck=True, recheck_below=Lifecycle.INSTALLED),
        Adapter("profile", lambda keys, emit: profile(rack, inputs, store, keys, emit),
                pools=("profile", *power) if rack.reboot else ("profile",)),
        Adapter("provision", lambda keys, emit: provision(rack, inputs, store, keys, emit),
                pools=("provision", *power)),
        # the profile after install: the plan made real and verified on the live host,
        # on every run until hand-off (the host may have rebooted since)
        Adapter("verify", lambda keys, emit: verify(rack, inputs, store, keys, emit),
                recheck=True, recheck_below=Lifecycle.HANDED_OFF),
        Adapter("harden", lambda keys, emit: harden(inputs, store, keys, emit)),
        # read-only and the gate for hand-off: re-checked on every run
        Adapter("audit", lambda keys, emit: audit(rack, inputs, store, keys, emit),
                recheck=True),
        Adapter("handoff", lambda keys, emit: handoff(inputs, store, keys, emit)),
    ]


# --- discover: the source of nodes -----------------------------------------------------------


def discover(rack: Rack, inputs: StageInputs, store: Store, emit: Emit) -> None:
    """Sweep the rack's ranges; every system found joins the run as soon as it is read.

    A node of the store inside the ranges that did not answer this time joins failed,
    with its address's outcome.
    """
    creds = inputs.credential_set(rack.credentials)
    opts = discover_stage.DiscoverOptions(
        protocols=tuple(Protocol(p) for p in rack.protocols), redfish_scheme=rack.redfish_scheme,
        verify=inputs.verify,
        budget=replace(DISCOVERY, concurrency=rack.concurrency["discover"]))
    found: set[str] = set()
    failed: dict[str, str] = {}

    def done(probe: discover_stage.Probe, records: list[DiscoveryRecord]) -> None:
        for rec in records:
            if rec.ok:
                found.add(rec.key)
                emit(rec)
            else:
                failed[rec.address] = rec.reason or rec.status.value

    discover_stage.discover(list(rack.targets), creds, opts, store=store, on_result=done)
    for node in store.nodes():
        address = node["record"].get("address")
        if node["key"] not in found and address in failed:
            emit(StepResult(node["key"], False, f"BMC {address} did not answer: "
                                                f"{failed[address]}", name=node["name"]))


# --- enroll ------------------------------------------------------------------------------------


def enroll(rack: Rack, inputs: StageInputs, store: Store, keys: list[str], emit: Emit) -> None:
    """Enroll the batch; matching against Ironic first is what makes a re-run create
    nothing twice. A BMC address of a system enrolled under another address ends as
    that node's alias."""
    opts = enroll_stage.EnrollOptions(
        manage=rack.ironic.get("manage", True), verify_ca=inputs.verify,
        resource_class=rack.ironic.get("resource_class", "baremetal"),
        conductor_group=rack.ironic.get("conductor_group"),
        budget=replace(ENROLLMENT, concurrency=max(1, min(len(keys),
                                                          rack.concurrency["enroll"]))),
        **({"name_template": rack.ironic["name_template"]}
           if "name_template" in rack.ironic else {}))
    rows = store.nodes()  # one read of the store per batch
    records = [r for r in (DiscoveryRecord.from_dict(n["record"]) for n in rows)
               if r.status is Status.OK]
    enrolled = {n["key"] for n in rows if n["ironic_uuid"]}
    names = {r.credentials for r in records if r.credentials}
    sets = {n: inputs.credential_set(n) for n in names
            if all(p in inputs.credentials for p in n.split("+"))}
    # the whole store, so names (index) and alias merging are the same as `metalctl enroll`
    desired = enroll_stage.desired_from_records(records, sets, opts, prefer=enrolled)
    wanted = set(keys)
    batch = [d for d in desired if d.key in wanted]
    for d in desired:
        for alias in d.extra.get("metalctl_aliases") or ():
            if alias in wanted:
                emit(StepResult(alias, True, f"alias of {d.key}", final=True))

    if batch:
        enroll_stage.enroll(batch, inputs.ironic_client(), opts, store=store, on_result=emit)


# --- profile -------------------------------------------------------------------------------


def profile(rack: Rack, inputs: StageInputs, store: Store, keys: list[str], emit: Emit) -> None:
    """The profile stage (:mod:`metalctl.profile.run`) with the rack's selection rules."""
    profile_run.profile(keys, profile_inputs(rack, inputs),
                        profile_run.ProfileOptions(bios=rack.bios, reboot=rack.reboot,
                                                   settle_s=inputs.settle_s),
                        store=store, on_result=emit)


def profile_inputs(rack: Rack, inputs: StageInputs) -> profile_run.ProfileInputs:
    def creds(node: profile_stage.NodeRef) -> CredentialSet | None:
        names = node.record.credentials if node.record else None
        return inputs.credential_set(names) if names else None

    return profile_run.ProfileInputs(select=rack.select_profile, profiles=inputs.profiles,
                                     bios_lib=inputs.bios_lib, credentials=creds,
                                     verify=inputs.verify)


# --- provision ----------------------------------------------------------------------------


def provision(rack: Rack, inputs: StageInputs, store: Store, keys: list[str],
              emit: Emit) -> None:
    """Install one node (never an installed one: the stage skips those itself)."""
    if inputs.provision is None:
        _missing(keys, emit, "provision needs its inputs (boot service, boot files, power): "
                             "pass StageInputs.provision")
        return
    pinputs, popts = inputs.provision
    if "provision" in inputs.redo:  # --from provision: the one way to reinstall
        popts = replace(popts, redo=True)
    # a node whose BMC gave no CPU topology is planned after install (the verify step)
    popts = replace(popts, require_plan=False)

    def done(r: ProvisionResult) -> None:
        # "checked" (check mode) installs nothing: it must not move the node on
        emit(r if r.status != "checked" else StepResult(r.key, False, "check mode"))

    provision_nodes(keys, pinputs, popts, store=store, on_result=done)


def _missing(keys: list[str], emit: Emit, why: str) -> None:
    """Each node fails the stage with ``why`` (a library caller's inputs lack it)."""
    for key in keys:
        emit(StepResult(key, False, why))


def verify(rack: Rack, inputs: StageInputs, store: Store, keys: list[str],
           emit: Emit) -> None:
    """The profile stage after install (:func:`metalctl.profile.run.installed`): the plan
    (derived from the host's facts when the BMC gave none), made real on the host and
    verified against it; its checks are the step's evidence."""
    from metalctl.ssh import SshTarget  # noqa: PLC0415

    for _name, (key, host) in _hosts(store, keys, emit).items():
        ssh = _for_node(inputs.harden or HardenOptions(), store, key)  # harden's policy
        target = SshTarget.parse(host.ssh, key_file=ssh.key_file, known_hosts=ssh.known_hosts,
                                 sudo=ssh.sudo)
        emit(profile_run.installed(store, key, profile_inputs(rack, inputs), target))


def _name(store: Store, key: str) -> str:
    row = store.node(key)
    return install_name(row) if row is not None else key


def host_of(store: Store, key: str) -> HostSpec | None:
    """The installed host of a node, from what provision stored (``install`` data)."""
    row = store.node(key)
    data = store.get_data(key, "install")
    if row is None or not data or not data.get("address"):
        return None
    user = data.get("ssh_user") or "root"
    port = data.get("ssh_port") or 22
    address = data["address"]
    host = f"[{address}]" if ":" in address else address
    return HostSpec(name=_name(store, key), ssh=f"{user}@{host}:{port}", mgmt_address=address,
                    key=key)


def _known_hosts(store: Store, key: str) -> Path | None:
    data = store.get_data(key, "install") or {}
    value = data.get("known_hosts")
    return Path(value) if value else None


def _for_node(opts: Any, store: Store, key: str) -> Any:
    """SSH options (harden, audit, hand-off) for one node: without a known_hosts of
    their own, the one its install recorded (the host keys delivered at install)."""
    return opts if opts.known_hosts else replace(opts, known_hosts=_known_hosts(store, key))


def _peers(store: Store) -> tuple[str, ...]:
    """The site's compute hosts as the store knows them: every node with a name that got
    past enrollment. Hosts hardened in one run (one at a time, as each is ready) still
    allow each other's libvirt client certificates: live migration between them works."""
    return tuple(sorted(n["name"] for n in store.nodes() if n["name"] and n["state"]
                        not in (Lifecycle.DISCOVERED.value,)))


def _hosts(store: Store, keys: list[str], emit: Emit) -> dict[str, tuple[str, HostSpec]]:
    """Hosts of ``keys`` by host name; nodes without an install record fail here."""
    out = {}
    for key in keys:
        host = host_of(store, key)
        if host is None:
            emit(StepResult(key, False, "no installed host recorded (provision first)"))
        else:
            out[host.name] = (key, host)
    return out


# --- harden, audit, hand-off over SSH ---------------------------------------------------------


def harden(inputs: StageInputs, store: Store, keys: list[str], emit: Emit) -> None:
    from metalctl.rules.catalogue import load as load_rules  # noqa: PLC0415

    for name, (key, host) in _hosts(store, keys, emit).items():
        opts = replace(_for_node(inputs.harden or HardenOptions(), store, key),
                       peers=_peers(store))
        try:
            harden_hosts([host], inputs.rules or load_rules(), opts, store=store,
                         on_result=emit)
        except MetalctlError as exc:  # no site PKI: refused before the host is touched
            emit(StepResult(key, False, describe(exc), name=name))


def audit(rack: Rack, inputs: StageInputs, store: Store, keys: list[str], emit: Emit) -> None:
    """Scan the host; the rack's gate decides whether it may be handed off."""
    from metalctl.rules.catalogue import load as load_rules  # noqa: PLC0415

    gate = str(rack.audit.get("gate", "high"))
    for _name, (key, host) in _hosts(store, keys, emit).items():
        opts = replace(_for_node(inputs.audit or AuditOptions(), store, key),
                       peers=_peers(store))
        report = audit_hosts([host], inputs.rules or load_rules(),
                             replace(opts, bmc=False, gate=gate), store=store)
        if inputs.report_dir is not None:  # the audit's own page, linked from the run's
            name = f"audit-{report.scan_id}.html"
            inputs.report_dir.mkdir(parents=True, exist_ok=True)
            (inputs.report_dir / name).write_text(audit_formats.html_report(report))
            report.hosts[0].report_file = name
        emit(report.hosts[0])  # after waivers: the gate judges what is left


def handoff(inputs: StageInputs, store: Store, keys: list[str], emit: Emit) -> None:
    """Hand the host to Nova (the stage records ``handed-off``)."""
    if inputs.handoff is None:
        _missing(keys, emit, "hand-off needs its inputs (the site's Nova file): pass "
                             "StageInputs.handoff")
        return
    hsite, hopts = inputs.handoff
    for _name, (key, host) in _hosts(store, keys, emit).items():
        # Nova or Placement down (HandoffUnavailable, a PeerUnavailable) is raised, not
        # reported per node: the scheduler stops the run and it exits 4, as `handoff` does
        handoff_hosts([host], hsite, _for_node(hopts, store, key), store=store,
                      on_result=emit)
