"""The provision stage: every node to ``installed``, ``failed`` or ``timeout``.

``provision(nodes, inputs, opts, store=..., on_result=...)`` has the stage shape of
docs/architecture.md. It runs in two phases so that bad input never costs a power action:

1. **prepare** every node: its stored profile plan, its provisioning MAC, its kickstart
   rendered from the template and validated by pykickstart for the target OS (plus
   metalctl's ``bootloader --append`` checks). One bad kickstart is an ``InputError``
   naming the template, its line and the node, and no machine is touched.
2. **install** each node (bounded by ``opts.concurrency``) through one of two paths,
   then follow it to its end:

   * ``via="pxe"``: the install is registered with metalctl's boot service
     (:mod:`.bootservice`: per-MAC iPXE script, one-time-token kickstart, callbacks);
     ``inputs.power`` sets a one-time network boot and power-cycles the machine through
     its BMC; the stage follows the boot service's events.
   * ``via="ironic"``: Ironic is the source of truth for the deploy
     (:mod:`.via_ironic`: ``ipxe`` boot and ``anaconda`` deploy interfaces,
     ``instance_info``, ``active``); the stage follows Ironic's provision states. The
     kickstart still calls back to metalctl's boot service, which is how the host keys
     arrive on this path too.

   A node is ``installed`` once its install ended, its host keys are in metalctl's
   known_hosts (trust on first boot, over the token-authenticated callback) and the
   installed OS answered SSH with exactly those keys.

Resumable: a node already ``installed`` is skipped (``opts.redo`` reinstalls it); an
install still active in the boot service (or deploying in Ironic) is followed, not
started again, so a killed run picks its nodes up where they were; a failed or timed-out
install starts over.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from metalctl import fleet, poll
from metalctl.credentials import Secret
from metalctl.errors import (
    HostError,
    InputError,
    MetalctlError,
    SshHostKeyMismatch,
    SshHostKeyUnknown,
    WaitTimeout,
)
from metalctl.model.hardware import NicFacts
from metalctl.model.mac import mac_problem
from metalctl.model.node import DiscoveryRecord, Event, Lifecycle
from metalctl.provision import knownhosts, via_ironic
from metalctl.provision.bootservice import TOKEN_PLACEHOLDER, BootService
from metalctl.provision.bootstate import (
    ACTIVE,
    FAILED,
    INSTALLED,
    TIMEOUT,
    BootFiles,
    InstallRecord,
)
from metalctl.provision.hostkeys import HostKey
from metalctl.provision.kickstart import (
    Callback,
    KickstartNode,
    KickstartSite,
    TargetOS,
    render_checked,
    variables_for,
)
from metalctl.store import Store, now

LOG = logging.getLogger(__name__)
STAGE = "provision"

# what one install reports, in the order an install goes through them
INSTALL_STEPS = ("added", "power", "boot-script", "kickstart-fetched", "started", "pre",
                 "post", "hostkeys", "end", "error", "timeout", "ironic-active", "ssh")


# --- inputs, options, results ------------------------------------------------------------


@dataclass(frozen=True)
class NodeInstall:
    """One node as the stage installs it (resolved from the store in phase 1)."""

    key: str
    name: str
    mac: str
    record: DiscoveryRecord
    ironic_uuid: str | None = None
    address: str | None = None  # static "ip/prefix" planned for the installed OS


class PowerControl(Protocol):
    """Sets a one-time network boot and power-cycles one machine through its BMC."""

    def network_boot_once(self, node: NodeInstall) -> str:
        """Do it; return a short note for the events (never a secret).

        Raises:
            MetalctlError: the BMC refused or did not answer (the node fails with it).
        """


@dataclass(frozen=True)
class IronicDeploy:
    """What Ironic's ``anaconda`` deploy interface needs, as URLs its conductor and the
    machine can reach (``instance_info`` and ``driver_info``)."""

    image_source: str        # the liveimg (tarball) or a repository
    kernel: str              # the installer kernel
    ramdisk: str             # the installer initramfs
    stage2: str              # anaconda's stage2
    deploy_kernel: str       # only for the ipxe boot interface's validation
    deploy_ramdisk: str
    boot_interface: str = "ipxe"
    deploy_interface: str = "anaconda"
    root_gb: int | None = None  # instance_info.root_gb (default: the smallest disk)
    boot_mode: str | None = None  # bios | uefi (default: what discovery read)


@dataclass
class ProvisionInputs:
    """What every node is installed with.

    Attributes:
        template: kickstart template name in ``kickstart/`` (or ``template_dirs``).
        target: the target OS (pykickstart's handler for validation).
        site: the site's kickstart settings (:func:`.kickstart.load_site`).
        boot: metalctl's boot service: in this process (started), or the state of a
            ``metalctl serve`` elsewhere (not started, same ``state_dir`` and URL).
        boot_files: the installer's kernel, initrd, stage2 and arguments (``via=pxe``).
        known_hosts: metalctl's known_hosts, where delivered host keys go.
        power: one-time network boot + power cycle (``via=pxe``).
        ironic: the Ironic client (``via=ironic``), from :mod:`metalctl.ironic`.
        ironic_deploy: the anaconda deploy's URLs (``via=ironic``).
        addresses: per node name, a static ``ip/prefix`` for the installed OS; without
            one the NIC uses DHCP and the host is reached where its installer called
            back from (dnsmasq pins the address to the MAC).
        macs: per node name, the provisioning MAC (default: the first NIC the BMC lists
            that can be a port).
        template_dirs: where templates are looked up (default the shipped ``kickstart/``).
        ssh_key: the private key matching the site's ``ssh_keys``, to prove the install.
    """

    template: str
    target: TargetOS
    site: KickstartSite
    boot: BootService
    known_hosts: Path
    boot_files: BootFiles | None = None
    power: PowerControl | None = None
    ironic: Any = None
    ironic_deploy: IronicDeploy | None = None
    addresses: Mapping[str, str] = field(default_factory=dict)
    macs: Mapping[str, str] = field(default_factory=dict)
    template_dirs: Sequence[Path] | None = None
    ssh_key: Path | None = None


@dataclass(frozen=True)
class ProvisionOptions:
    """How the stage runs.

    Attributes:
        via: ``pxe`` (metalctl's boot service and the BMC) or ``ironic``.
        check: render and validate only; nothing is registered or powered.
        deadline_s: from the install's start to its ``end`` callback.
        ssh_wait_s: after ``end``, time for the installed OS to answer SSH.
        poll_s: how often an install is looked at.
        concurrency: installs at once (each keeps a TCG machine or a real one busy).
        redo: reinstall nodes that are already ``installed`` (never implied).
        ssh_user, ssh_port: how later stages reach the installed host.
    """

    via: str = "pxe"
    check: bool = False
    #: False: a node without a profile plan (its BMC gave no CPU topology) is installed
    #: without the profile's kernel arguments, and planned from its in-band facts after
    require_plan: bool = True
    deadline_s: float = 1800.0
    ssh_wait_s: float = 600.0
    poll_s: float = 2.0
    concurrency: int = 4
    redo: bool = False
    ssh_user: str = "root"
    ssh_port: int = 22

    def __post_init__(self) -> None:
        if self.via not in ("pxe", "ironic"):
            raise InputError("options", "via", f"{self.via!r} is neither pxe nor ironic")
        for name in ("deadline_s", "ssh_wait_s", "poll_s"):
            if getattr(self, name) <= 0:
                raise InputError("options", name, "must be positive")
        if self.concurrency < 1:
            raise InputError("options", "concurrency", "must be at least 1")


@dataclass
class ProvisionResult:
    """One node's outcome.

    ``status``: ``installed``, ``failed``, ``timeout``, ``skipped`` (already installed),
    or ``checked`` (``--check``: ``kickstart`` holds the masked kickstart).
    ``timings``: seconds per install step, from the previous step (``kickstart-fetched``:
    from power-on to the installer asking for its kickstart).
    """

    node: str
    status: str
    reason: str | None = None
    address: str | None = None
    via: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    host_keys: list[str] = field(default_factory=list)  # fingerprints
    kickstart: str | None = None
    warnings: list[str] = field(default_factory=list)
    key: str = ""  # the node's key in the store (the stage contract)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = self.key or self.node

    @property
    def ok(self) -> bool:
        return self.status in ("installed", "skipped", "checked")

    @property
    def evidence(self) -> dict[str, Any]:
        """The stage contract's evidence (``extra``: what a caller added, such as the plan
        a run derived after the install)."""
        return {"status": self.status, "address": self.address, "via": self.via,
                "timings": self.timings, "host_keys": self.host_keys, **self.extra}

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "status": self.status, "reason": self.reason,
                "address": self.address, "via": self.via, "timings": self.timings,
                "host_keys": self.host_keys,
                **({"kickstart": self.kickstart} if self.kickstart is not None else {}),
                **({"warnings": self.warnings} if self.warnings else {})}


# --- phase 1: resolve and render -----------------------------------------------------------

#: the plan of a node whose topology is only known after install (``require_plan=False``)
NO_PLAN: dict[str, Any] = {"profile": "none", "plan": {"kernel_args": [], "tuned": {}}}


def provisioning_mac(record: DiscoveryRecord, override: str | None = None) -> str:
    """The MAC the machine network-boots from: the override, else the first NIC the BMC
    listed that can be a port (not a BMC host interface, not multicast or zero).

    Raises:
        InputError: no usable MAC, or an invalid override.
    """
    where = f"node {record.name or record.key}"
    if override:
        mac = override.strip().lower().replace("-", ":")
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac) or mac_problem(mac):
            raise InputError(where, "mac", f"{override!r} is not a unicast MAC address")
        return mac
    nics: tuple[NicFacts, ...] = record.hardware.nics
    for nic in nics:
        mac = (nic.mac or "").lower()
        if nic.source == "host-interface" or not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}",
                                                               mac):
            continue
        if mac_problem(mac) is None:
            return mac
    raise InputError(where, "mac", "the BMC lists no NIC that can network-boot; give one "
                                   "with --mac NODE=MAC")


def install_name(row: dict[str, Any]) -> str:
    """The name a node is installed under (a store row): its own (from enrollment), else
    the BMC's system name, else its key. The installed host keeps it (kickstart,
    ``/etc/metalctl-install``) and the SSH stages know the host by it."""
    return row["name"] or (row["record"] or {}).get("name") or row["key"]


def _resolve(store: Store, ref: str, inputs: ProvisionInputs) -> tuple[NodeInstall, dict[str, Any]]:
    row = store.find(ref)
    if row is None:
        raise InputError("nodes", ref, "no such node in the store (discover and enroll first)")
    record = DiscoveryRecord.from_dict(row["record"])
    name = install_name(row)
    plan = store.get_data(row["key"], "plan")
    node = NodeInstall(key=row["key"], name=name,
                       mac=provisioning_mac(record, inputs.macs.get(name) or
                                            inputs.macs.get(ref)),
                       record=record, ironic_uuid=row["ironic_uuid"],
                       address=inputs.addresses.get(name) or inputs.addresses.get(ref))
    return node, {"state": row["state"], "plan": plan}


@dataclass
class _Prepared:
    node: NodeInstall
    state: str
    kickstart: str = ""          # rendered, TOKEN_PLACEHOLDER where the token goes
    masked: str = ""
    warnings: list[str] = field(default_factory=list)


def _callback_url(inputs: ProvisionInputs, name: str) -> str:
    return f"{inputs.boot.url}/callback/{name}"


def _render(prep: _Prepared, plan: Mapping[str, Any], inputs: ProvisionInputs) -> None:
    node = prep.node
    ks_node = KickstartNode(name=node.name, mac=node.mac, address=node.address)
    variables = variables_for(plan, inputs.site, ks_node,
                              callback=Callback(_callback_url(inputs, node.name),
                                                Secret(TOKEN_PLACEHOLDER)))
    rendered, warns = render_checked(inputs.template, variables, inputs.target,
                                     template_dirs=inputs.template_dirs)
    prep.kickstart, prep.masked = rendered.text, rendered.masked()
    prep.warnings.extend(warns)


def _names_in_store(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every stored node by the name it is (or would be) installed under, case-folded
    (host names, and so known_hosts, ignore case)."""
    named: dict[str, list[dict[str, Any]]] = {}
    for row in store.nodes():
        named.setdefault(install_name(row).casefold(), []).append(row)
    return named


def _check_unique_name(node: NodeInstall, named: Mapping[str, list[dict[str, Any]]]) -> None:
    """Refuse a name another stored node also has: installs, callbacks, known_hosts lines
    and the host name are keyed by it, so two machines would take each other's trust.

    Raises:
        InputError: naming both nodes and what tells them apart.
    """
    other = next((r for r in named.get(node.name.casefold(), []) if r["key"] != node.key),
                 None)
    if other is None:
        return
    other_bmc = (other["record"] or {}).get("address", "?")
    raise InputError(f"node {node.name}", "name", (
        f"{node.key} (BMC {node.record.address}) and {other['key']} (BMC {other_bmc}) "
        "would both be installed as this name (their BMCs report the same system name); "
        "names key installs, callbacks and known_hosts, so nothing was powered. Name them "
        "apart: enroll them with a name_template that differs per machine (the rack's "
        "ironic.name_template, or `metalctl enroll --name-template`, e.g. "
        "'{vendor}-{serial}' or '{system}-{octets}')"))


def prepare(nodes: Sequence[str], inputs: ProvisionInputs, opts: ProvisionOptions,
            store: Store) -> list[_Prepared]:
    """Phase 1 for every node; raises on the first bad input, before any action.

    Raises:
        InputError: an unknown node, a node without a plan, no provisioning MAC, two
            nodes with one name or one MAC, a template that does not render or a
            kickstart pykickstart refuses (the message names the template, its line and
            the node).
    """
    out: list[_Prepared] = []
    seen_macs: dict[str, str] = {}
    named = _names_in_store(store)
    for ref in nodes:
        node, row = _resolve(store, ref, inputs)
        if node.mac in seen_macs and seen_macs[node.mac] != node.name:
            raise InputError(f"node {node.name}", "mac",
                             f"{node.mac} is also {seen_macs[node.mac]}'s provisioning MAC")
        seen_macs[node.mac] = node.name
        _check_unique_name(node, named)
        prep = _Prepared(node, row["state"])
        installed = Lifecycle(row["state"]).rank >= Lifecycle.INSTALLED.rank
        if installed and not opts.redo and not opts.check:
            out.append(prep)  # skipped later; nothing to render
            continue
        plan = row["plan"]
        if plan is None and opts.require_plan:
            raise InputError(f"node {node.name}", "plan",
                             "no profile plan stored; run `metalctl profile derive "
                             f"{node.name} -p PROFILE` first")
        if plan is None:
            plan = NO_PLAN
            prep.warnings.append("no profile plan: installed without the profile's kernel "
                                 "arguments; plan it from the installed host's facts")
        _render(prep, plan, inputs)
        out.append(prep)
    return out


# --- phase 2: install and follow -------------------------------------------------------------


def _timings(events: Sequence[tuple[str, float]], start: float,
             then: Sequence[tuple[str, float]] = ()) -> dict[str, float]:
    """Seconds from the previous step to each step (first occurrence of each), in the
    order the steps happened (an event may be recorded after a later one); ``then``:
    steps metalctl itself took after the boot service's (SSH)."""
    out: dict[str, float] = {}
    last = start
    for stage, at in [*sorted(events, key=lambda e: e[1]), *then]:
        if stage in out or stage not in INSTALL_STEPS or stage == "added":
            continue
        out[stage] = round(max(0.0, at - last), 2)
        last = at
    return out


class _Install:
    """One node's install: start (or resume), follow, prove over SSH, record."""

    def __init__(self, prep: _Prepared, inputs: ProvisionInputs, opts: ProvisionOptions,
                 store: Store | None, clock: Callable[[], float],
                 on_step: Callable[[str, str], None] | None = None) -> None:
        self.prep, self.node = prep, prep.node
        self.on_step = on_step
        self.inputs, self.opts, self.store, self.clock = inputs, opts, store, clock
        self.recorded: set[tuple[str, float]] = set()
        self.start_at = clock()

    # -- store events --------------------------------------------------------------------

    def event(self, action: str, changes: dict[str, Any] | None = None,
              error: str | None = None) -> None:
        if self.store is not None:
            self.store.add_event(Event(self.node.key, STAGE, action, now(), changes or {},
                                       error))

    def _mirror(self) -> list[tuple[str, float]]:
        """Copy the boot service's new events of this install into the store."""
        events = [(e.stage, e.at, e.detail) for e in self.inputs.boot.events(self.node.name)]
        for stage, at, detail in events:
            if (stage, at) in self.recorded:
                continue
            self.recorded.add((stage, at))
            if stage in ("added",):
                continue
            self.event(stage, {"detail": detail[:500]} if detail else {})
            if self.on_step is not None:
                self.on_step(self.node.name, stage)
        return [(s, a) for s, a, _ in events]

    # -- the whole install ---------------------------------------------------------------

    def run(self) -> ProvisionResult:
        via = self.opts.via
        try:
            state = self._pxe() if via == "pxe" else via_ironic.deploy(self)
            if state != INSTALLED:
                record = self.inputs.boot.install(self.node.name)
                reason = (record.error if record is not None and record.error else None)
                return self._result(state, reason or self.reason)
            return self._finish()
        except MetalctlError as exc:
            self.event("failed", error=str(exc))
            return self._result(FAILED, str(exc))

    reason: str | None = None

    def _pxe(self) -> str:
        boot, name = self.inputs.boot, self.node.name
        existing = boot.install(name)
        resumable = (existing is not None and existing.state in (ACTIVE, INSTALLED)
                     and existing.mac == self.node.mac and not self.opts.redo)
        if resumable and existing is not None:
            LOG.info("%s: following its install from %s", name,
                     time.strftime("%H:%M:%S", time.localtime(existing.created_at)))
            self.event("resumed", {"install_state": existing.state})
            self.start_at = existing.created_at
        else:
            if self.inputs.boot_files is None or self.inputs.power is None:
                raise InputError("provision", "via pxe", "needs boot files and a BMC power "
                                                         "control")
            boot.add_install(name, self.node.mac, self.prep.kickstart, self.inputs.boot_files,
                             self.opts.deadline_s, replace=True)
            self.event("started", {"via": "pxe", "mac": self.node.mac,
                                   "template": self.inputs.template})
            requested = boot.state.now()
            note = self.inputs.power.network_boot_once(self.node)
            # dated when requested: the machine may fetch its boot script before a slow
            # BMC has answered the power request
            boot.state.event(name, "power", f"{note[:180]} (the BMC answered in "
                                            f"{boot.state.now() - requested:.1f} s)",
                             at=requested)
        return self.follow_boot_service()

    def follow_boot_service(self, *, ironic_state: Callable[[], str | None] | None = None) -> str:
        """Poll the boot service until the install ends; mirror its events.

        The install's own deadline is the boot service's; two polls past it, this
        expires it there (a ``timeout`` end), then reads that end.
        """
        boot, name = self.inputs.boot, self.node.name

        def ended() -> str | None:
            self._mirror()
            record = self._install()
            if record.state in (INSTALLED, FAILED, TIMEOUT):
                return record.state
            failed = ironic_state() if ironic_state is not None else None
            if failed:
                self.reason = failed
                return FAILED
            return None

        while True:
            grace_s = self._install().deadline_at + self.opts.poll_s * 2 - self.clock()
            try:
                return poll.wait_for(ended, timeout_s=grace_s, interval_s=self.opts.poll_s,
                                     what=f"{name}: install", clock=self.clock)
            except WaitTimeout:
                boot.state.expire()

    def _install(self) -> InstallRecord:
        record = self.inputs.boot.install(self.node.name)
        if record is None:
            raise MetalctlError(f"{self.node.name}: the boot service lost the install")
        return record

    def _address(self) -> str:
        if self.node.address:
            return self.node.address.split("/", 1)[0]
        # the address the install was bound to: the only one its callbacks came from
        record = self.inputs.boot.install(self.node.name)
        if record is not None and record.bound_address:
            return record.bound_address
        raise MetalctlError(f"{self.node.name}: no static address planned and the "
                            "installer's address is unknown")

    def _finish(self) -> ProvisionResult:
        record = self.inputs.boot.install(self.node.name)
        keys: tuple[HostKey, ...] = record.hostkeys if record else ()
        if not keys:
            raise MetalctlError(f"{self.node.name}: the install ended without delivering "
                                "its SSH host keys (the %post hostkeys callback)")
        address = self._address()
        hosts = [address] + ([self.node.name] if self.node.name != address else [])
        replaced = knownhosts.trust(self.inputs.known_hosts, hosts, keys,
                                    port=self.opts.ssh_port)
        if replaced:
            self.event("hostkeys-replaced", {"lines": len(replaced),
                                             "why": "reinstalled: new host keys"})
        self._prove_ssh(address)
        events = self._mirror()
        timings = _timings(events, self.start_at, then=[("ssh", self.clock())])
        data = {"address": address, "ssh_user": self.opts.ssh_user,
                "ssh_port": self.opts.ssh_port, "known_hosts": str(self.inputs.known_hosts),
                "host_keys": [k.to_dict() for k in keys], "via": self.opts.via,
                "mac": self.node.mac, "template": self.inputs.template,
                "os": self.inputs.target.name, "finished_at": now(), "timings": timings}
        if self.store is not None:
            self.store.put_data(self.node.key, "install", data)
            self.event("installed", {"address": address, "timings": timings,
                                     "host_keys": [k.fingerprint for k in keys]})
            # the host is known by the name its install used (its kickstart and
            # /etc/metalctl-install): an unenrolled node takes it, so harden, audit and
            # hand-off find the node by its host name
            named = self.node.name if self.node.name != self.node.key else None
            self.store.set_state(self.node.key, Lifecycle.INSTALLED, name=named)
        return ProvisionResult(self.node.name, INSTALLED, None, address, self.opts.via,
                               timings, [k.fingerprint for k in keys],
                               warnings=self.prep.warnings)

    def _prove_ssh(self, address: str) -> None:
        """The installed OS answers SSH with the delivered keys (strict checking)."""
        from metalctl import ssh

        target = ssh.SshTarget(host=address, port=self.opts.ssh_port, user=self.opts.ssh_user,
                               key_file=self.inputs.ssh_key,
                               known_hosts=self.inputs.known_hosts, connect_timeout_s=10.0,
                               command_timeout_s=30.0)

        def marker() -> str:
            try:
                conn = ssh.connect(target)
            except (SshHostKeyMismatch, SshHostKeyUnknown) as exc:
                # not a HostError to wait out: the wait ends here
                raise MetalctlError(f"{self.node.name}: {exc}: not the host the install "
                                    "delivered keys for") from None
            try:  # a HostError here: sshd up while the first boot still settles
                return ssh.run_script(conn, target, "cat /etc/metalctl-install 2>/dev/null "
                                                    "|| echo no-marker")
            finally:
                conn.close()

        try:
            out = poll.wait_for(marker, timeout_s=self.opts.ssh_wait_s,
                                interval_s=min(3.0, self.opts.poll_s * 2),
                                transient=(HostError,), clock=self.clock,
                                what=f"{self.node.name}: SSH on {address}")
        except WaitTimeout as exc:
            last = str(exc.error) if exc.error is not None else "no answer"
            raise MetalctlError(f"{self.node.name}: installed, but {address} did not answer "
                                f"SSH within {self.opts.ssh_wait_s:.0f} s ({last})") from None
        if f"node={self.node.name}" not in out:
            raise MetalctlError(f"{self.node.name}: {address} answers SSH but its "
                                "/etc/metalctl-install does not name this node")
        self.boot_event("ssh", f"{address}:{self.opts.ssh_port}")

    def boot_event(self, stage: str, detail: str) -> None:
        self.inputs.boot.state.event(self.node.name, stage, detail[:200])

    def _result(self, state: str, reason: str | None) -> ProvisionResult:
        events = self._mirror()
        timings = _timings(events, self.start_at)
        if state == TIMEOUT and not reason:
            # install steps only: refused requests (an attacker's) are not progress
            steps = [s for s, _ in events if s in INSTALL_STEPS and s not in ("timeout",
                                                                                "added")]
            reason = (f"no end callback within {self.opts.deadline_s:.0f} s; last step: "
                      f"{steps[-1] if steps else 'none'}")
        self.event(state, {"timings": timings}, error=reason)
        return ProvisionResult(self.node.name, state, reason, None, self.opts.via, timings,
                               warnings=self.prep.warnings)


def provision(nodes: Sequence[str], inputs: ProvisionInputs,
              opts: ProvisionOptions | None = None, *, store: Store | None = None,
              on_result: Callable[[ProvisionResult], None] | None = None,
              on_step: Callable[[str, str], None] | None = None,
              clock: Callable[[], float] = time.time) -> list[ProvisionResult]:
    """Install ``nodes`` (names, keys or Ironic UUIDs of stored nodes); one result each.

    ``on_step(node, step)`` is called as each install step is seen (``power``,
    ``boot-script``, ``kickstart-fetched``, ``pre``, ``post``, ``hostkeys``, ``end``,
    ``ssh``), from the worker following that node: the CLI's progress line per node.

    Raises:
        InputError: bad input for any node (nothing was registered or powered).
    """
    opts = opts or ProvisionOptions()
    if store is None:
        raise InputError("provision", "store", "the stage reads plans from the store")
    if opts.via == "ironic" and not opts.check and (inputs.ironic is None or
                                                    inputs.ironic_deploy is None):
        raise InputError("provision", "via ironic", "needs an Ironic client and the "
                                                    "anaconda deploy's URLs")
    prepared = prepare(nodes, inputs, opts, store)
    results: list[ProvisionResult] = []

    keys = {p.node.name: p.node.key for p in prepared}

    def done(result: ProvisionResult) -> None:
        result.key = keys.get(result.node) or result.key
        results.append(result)
        if on_result is not None:
            on_result(result)

    todo = []
    for prep in prepared:
        if opts.check:
            done(ProvisionResult(prep.node.name, "checked", via=opts.via,
                                 kickstart=prep.masked, warnings=prep.warnings))
        elif (Lifecycle(prep.state).rank >= Lifecycle.INSTALLED.rank and not opts.redo):
            data = store.get_data(prep.node.key, "install") or {}
            done(ProvisionResult(prep.node.name, "skipped", "already installed",
                                 data.get("address"), data.get("via")))
        else:
            todo.append(prep)

    def work(prep: _Prepared) -> ProvisionResult:
        return _Install(prep, inputs, opts, store, clock, on_step).run()

    def finished(outcome: fleet.TaskOutcome[_Prepared, ProvisionResult]) -> None:
        if outcome.ok and outcome.value is not None:
            done(outcome.value)
        else:
            done(ProvisionResult(outcome.item.node.name, FAILED,
                                 f"{type(outcome.error).__name__}: {outcome.error}",
                                 via=opts.via))

    for _ in fleet.run(todo, work, concurrency=opts.concurrency, on_done=finished):
        pass
    order = {p.node.name: i for i, p in enumerate(prepared)}
    return sorted(results, key=lambda r: order.get(r.node, 0))
