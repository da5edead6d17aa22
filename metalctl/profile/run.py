"""The profile stage as a whole, for many nodes: select the profile, derive the plan
when the facts allow it, apply the BIOS part per the site's policy, and record
``profiled``. The run drives it (and only records what it reports); the verbs of
:mod:`metalctl.profile.stage` are its parts.

A node whose BMC gives no CPU topology (a fake or IPMI BMC) is profiled without a plan:
:func:`installed` derives it from the installed host's own facts after provision.

:func:`installed` is the stage's part after install (the run's ``verify`` step, on
every run until hand-off): the plan made real on the host (:mod:`.host`) and checked
against the live host (:func:`metalctl.profile.stage.verify`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metalctl.budget import ENROLLMENT, Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import FactsIncomplete, MetalctlError, describe
from metalctl.model.node import DiscoveryRecord, Event, Lifecycle
from metalctl.model.topology import Topology
from metalctl.profile import bios, derive, host
from metalctl.profile import stage as parts
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.ssh import SshTarget, connect, run_script
from metalctl.store import Store, now

#: the site's BIOS policy (rack file ``profiles.bios``)
BIOS_POLICIES = ("required", "if-supported", "skip")


@dataclass(frozen=True)
class ProfileInputs:
    """What every node is profiled against.

    Attributes:
        select: the profile's name for a node, from its BMC record and facts (the rack
            file's ``profiles.rules``).
        profiles / bios_lib: where profiles and vendor BIOS maps are read.
        credentials: a node's BMC credential set (None: none known).
        verify: Redfish TLS verification (True, a CA bundle path, or False).
    """

    select: Callable[[DiscoveryRecord | None, Topology | None], str]
    profiles: ProfileLibrary = field(default_factory=ProfileLibrary)
    bios_lib: bios.BiosLibrary = field(default_factory=bios.BiosLibrary)
    credentials: Callable[[parts.NodeRef], CredentialSet | None] = lambda _n: None
    verify: bool | str = True


@dataclass(frozen=True)
class ProfileOptions:
    """``bios``: ``required`` (a node whose BIOS cannot be set fails), ``if-supported``
    (such a node is profiled with the reason), ``skip`` (selection and plan only)."""

    bios: str = "required"
    reboot: bool = False
    settle_s: float = 600.0
    budget: Budget = ENROLLMENT


@dataclass
class ProfileResult:
    """One node's outcome (the stage contract: key, ok, reason, evidence)."""

    key: str
    ok: bool
    reason: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    name: str | None = None


def profile(keys: list[str], inputs: ProfileInputs, opts: ProfileOptions | None = None, *,
            store: Store, on_result: Callable[[ProfileResult], None] | None = None,
            ) -> list[ProfileResult]:
    """Profile each node of ``keys``; ``profiled`` is recorded for each that succeeds."""
    opts = opts or ProfileOptions()
    results = []
    for key in keys:
        result = _one(key, inputs, opts, store)
        if result.ok:
            store.set_state(key, Lifecycle.PROFILED)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def _one(key: str, inputs: ProfileInputs, opts: ProfileOptions, store: Store) -> ProfileResult:
    node = parts.resolve(store, key)
    topo = parts.facts_of(store, node)
    name = inputs.select(node.record, topo)
    prof = inputs.profiles.load(name)
    evidence: dict[str, Any] = {"profile": name}
    try:
        parts.plan(store, node, prof, topo, inputs.bios_lib)
        evidence["plan"] = "derived"
    except FactsIncomplete:
        evidence["plan"] = "after install (the BMC gives no CPU topology)"
    except MetalctlError as exc:
        return ProfileResult(key, False, describe(exc), evidence, node.label)
    if opts.bios == "skip":  # the site sets BIOS elsewhere: selection and plan only
        store.add_event(Event(key, parts.STAGE, "bios-skipped", now(), {"profile": name}))
        return ProfileResult(key, True, None, {**evidence, "bios": "skipped"}, node.label)
    bios_opts = parts.BiosOptions(credentials=inputs.credentials, verify=inputs.verify,
                                  budget=opts.budget, reboot=opts.reboot,
                                  bios_lib=inputs.bios_lib, settle_s=opts.settle_s,
                                  concurrency=1)
    result = parts.apply([node], prof, bios_opts, store=store)[0]
    evidence.update(bios=result.outcome.value, via=result.via, changes=sorted(result.changes))
    ok = result.outcome in (bios.BiosOutcome.APPLIED, bios.BiosOutcome.UNCHANGED)
    if result.outcome is bios.BiosOutcome.UNSUPPORTED and opts.bios == "if-supported":
        return ProfileResult(key, True, f"BIOS not set: {result.error}", evidence, node.label)
    return ProfileResult(key, ok, None if ok else result.error, evidence, node.label)


def installed(store: Store, key: str, inputs: ProfileInputs,
              target: SshTarget) -> ProfileResult:
    """The profile stage after install, over one SSH session: the plan from the host's
    in-band facts when the node has none (its profile selected on that real topology),
    the plan made real (:func:`metalctl.profile.host.realize`: ``realized`` event), then
    verified against the live host (``verified`` event). Records no lifecycle state.

    The result's evidence: ``plan`` (stored, or derived here), ``profile``, ``realized``
    (what changed) and ``checks`` (name, want, got, ok; ok None while pending a boot
    with the plan's kernel arguments). A failed check fails the node, its reason naming
    the check.
    """
    node = parts.resolve(store, key)
    evidence: dict[str, Any] = {}
    try:
        conn = connect(target)
    except MetalctlError as exc:
        return ProfileResult(key, False, describe(exc), evidence, node.label)
    try:
        stored = store.get_data(key, "plan")
        evidence["plan"] = "stored"
        if not stored:
            topo = _facts(store, node, conn, target)
            name = inputs.select(node.record, topo)
            parts.plan(store, node, inputs.profiles.load(name), topo, inputs.bios_lib,
                       after_install=True)
            stored = store.get_data(key, "plan") or {}
            evidence["plan"] = "derived from the installed host's facts"
        evidence["profile"] = stored["profile"]
        done = host.realize(conn, target, derive.ProfilePlan.from_dict(stored["plan"]))
        evidence["realized"] = done.to_dict()
        store.add_event(Event(key, parts.STAGE, "realized", now(), done.to_dict(),
                              "; ".join(done.errors) or None))
        if done.errors:
            return ProfileResult(key, False, f"plan not made real: {done.errors[0]}",
                                 evidence, node.label)
        _prof, checks = parts.verify(store, node, _facts(store, node, conn, target),
                                     inputs.profiles)
    except MetalctlError as exc:
        return ProfileResult(key, False, describe(exc), evidence, node.label)
    finally:
        conn.close()
    evidence["checks"] = [c.to_dict() for c in checks]
    failed = [c for c in checks if not c.ok and not c.pending]
    if failed:
        more = f" (and {len(failed) - 1} more check(s))" if len(failed) > 1 else ""
        return ProfileResult(key, False, f"profile verify: {failed[0].check}: want "
                                         f"{failed[0].expected}, got {failed[0].actual}{more}",
                             evidence, node.label)
    return ProfileResult(key, True, None, evidence, node.label)


def _facts(store: Store, node: parts.NodeRef, conn: Any, target: SshTarget) -> Topology:
    """The host's in-band facts over the open session, kept in the store."""
    topo = inband.parse(run_script(conn, target, inband.script()), host=target.host)
    parts.keep_facts(store, node, topo)
    return topo
