"""BIOS intent -> vendor attributes -> Redfish (or Ironic's BIOS interface).

Vendor maps are data (``profiles/bios/*.yaml``): each intent names one or more
attributes and the value per intent value, plus ``requires`` rules (HPE's
``WorkloadProfile=Custom``, Dell's ``SysProfile=Custom``) that must travel in the
same request. Before anything is written, every attribute is checked against
what the BMC itself lists (current attributes and, when served, its Attribute
Registry's allowable values and read-only flags): a name or value the BMC does
not know fails the whole request, and nothing is written.

Writing follows DSP0266: PATCH ``Bios/Settings`` (``@Redfish.Settings``) with
``@Redfish.SettingsApplyTime`` OnReset when the BMC supports it; the values are
current only after a reset. ``apply`` resets only with ``reboot=True`` and then
verifies the current values; otherwise it reports ``pending-reboot``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests
import sushy
from sushy import exceptions as sushy_exc

from metalctl import data as datafiles
from metalctl.bmc import probe
from metalctl.bmc import redfish as rf
from metalctl.budget import Budget
from metalctl.credentials import CredentialSet
from metalctl.data.paths import data_dir
from metalctl.errors import BiosError, MetalctlError
from metalctl.model.node import DiscoveryRecord, Protocol

LOG = logging.getLogger(__name__)

class Outcome(str, Enum):
    UNCHANGED = "unchanged"
    APPLIED = "applied"
    PENDING = "pending-reboot"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"


@dataclass(frozen=True)
class VendorMap:
    vendor: str
    manufacturers: tuple[str, ...]
    intents: dict[str, list[dict[str, Any]]]
    requires: tuple[dict[str, Any], ...] = ()
    verified: bool = True
    path: str = ""

    def attributes(self, intent: dict[str, Any]) -> dict[str, str]:
        """Vendor attributes for a vendor-neutral intent (unmapped intents raise)."""
        out: dict[str, str] = {}
        for key, value in intent.items():
            if key not in self.intents:
                raise BiosError(node=self.vendor,
                                reason=f"intent {key!r} has no mapping in {self.path}")
            for setting in self.intents[key]:
                values = {_norm(k): v for k, v in setting["values"].items()}
                if _norm(value) not in values:
                    raise BiosError(node=self.vendor,
                                    reason=f"{self.path}: intent {key}={value!r} has no value "
                                           f"for {setting['attribute']}")
                attr, val = setting["attribute"], str(values[_norm(value)])
                if out.get(attr, val) != val:
                    raise BiosError(node=self.vendor,
                                    reason=f"{self.path}: intents disagree on {attr}: "
                                           f"{out[attr]} vs {val}")
                out[attr] = val
        for rule in self.requires:
            if set(rule["when_any"]) & set(out):
                for attr, val in rule["set"].items():
                    out.setdefault(attr, str(val))
        return out


def _norm(v: Any) -> str:
    return str(v).lower()


@dataclass
class BiosLibrary:
    """Vendor maps from ``dirs`` (a site's first) and the shipped profiles/bios."""

    dirs: list[Path] = field(default_factory=list)

    def maps(self) -> list[VendorMap]:
        return _load_maps(tuple([*self.dirs, data_dir("profiles") / "bios"]))

    def for_manufacturer(self, manufacturer: str | None, node: str = "?") -> VendorMap:
        text = (manufacturer or "").lower()
        for m in self.maps():
            if text and any(pat in text for pat in m.manufacturers):
                return m
        known = ", ".join(sorted({m.vendor for m in self.maps()}))
        raise BiosError(node=node, reason=f"no BIOS attribute map for manufacturer "
                                          f"{manufacturer!r} (known vendor maps: {known}); "
                                          "add one under profiles/bios/")


@lru_cache(maxsize=8)
def _load_maps(dirs: tuple[Path, ...]) -> list[VendorMap]:
    """Every vendor map in ``dirs`` (first one per vendor wins), schema ``bios-map``.

    Raises:
        InputError: a map file that does not validate (file, field, line).
    """
    seen: dict[str, VendorMap] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            data = datafiles.load(path, "bios-map")
            intents = {k: v if isinstance(v, list) else [v] for k, v in data["intents"].items()}
            m = VendorMap(vendor=data["vendor"],
                          manufacturers=tuple(s.lower() for s in data["match"]["manufacturer"]),
                          intents=intents, requires=tuple(data.get("requires") or ()),
                          verified=data.get("verified", True), path=str(path))
            seen.setdefault(m.vendor, m)
    return list(seen.values())


# --- state and diff --------------------------------------------------------------------


@dataclass
class BiosState:
    current: dict[str, Any]
    pending: dict[str, Any]
    registry: dict[str, dict[str, Any]] | None = None  # name -> {read_only, allowed}


@dataclass
class DiffRow:
    attribute: str
    desired: str
    current: str | None
    pending: str | None
    status: str  # ok | drift | pending | unsupported


def diff(desired: dict[str, str], state: BiosState) -> list[DiffRow]:
    rows = []
    for attr, want in sorted(desired.items()):
        if attr not in state.current:
            rows.append(DiffRow(attr, want, None, None, "unsupported"))
            continue
        cur = _str(state.current.get(attr))
        pend = _str(state.pending[attr]) if attr in state.pending else None
        if cur == want and (pend is None or pend == want):
            status = "ok"
        elif pend == want:
            status = "pending"
        else:
            status = "drift"
        rows.append(DiffRow(attr, want, cur, pend, status))
    return rows


def _str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def validate_against(desired: dict[str, str], state: BiosState, node: str) -> None:
    """Refuse names/values the BMC does not know, before anything is written."""
    problems = []
    for attr, value in sorted(desired.items()):
        if attr not in state.current:
            problems.append(f"{attr} is not an attribute of this BMC")
            continue
        entry = (state.registry or {}).get(attr)
        if entry:
            if entry.get("read_only"):
                problems.append(f"{attr} is read-only")
            allowed = entry.get("allowed")
            if allowed and value not in allowed:
                problems.append(f"{attr}={value} not allowed (allowed: {', '.join(allowed)})")
    if problems:
        raise BiosError(node=node, reason="; ".join(problems) + " (nothing written)")


# --- Redfish backend -------------------------------------------------------------------


@dataclass
class ApplyResult:
    node: str
    outcome: Outcome
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[DiffRow] = field(default_factory=list)
    error: str | None = None
    via: str = "redfish"


class RedfishBios:
    """BIOS of one Redfish ComputerSystem, through sushy."""

    def __init__(self, record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                 budget: Budget) -> None:
        if record.protocol != Protocol.REDFISH or not record.system_id:
            raise BiosError(node=record.name or record.address,
                            reason="BIOS settings need Redfish; this node's BMC speaks "
                                   f"{record.protocol.value} only")
        self.record, self.verify, self.budget = record, verify, budget
        self.label = record.name or f"{record.address}{record.system_id}"
        self.base_url = record.endpoint.url  # type: ignore[union-attr]  # Redfish: set
        with probe.warnings_silenced(verify):
            self.root, _ = rf.login(self.base_url, record.address, creds, verify, budget)
            try:
                self.system = self.root.get_system(record.system_id)
                self.bios = self.system.bios
            except sushy_exc.MissingAttributeError:
                raise BiosError(node=self.label,
                                reason="the BMC exposes no Bios resource") from None
            except (sushy_exc.SushyError, requests.exceptions.RequestException) as exc:
                raise rf.translate(exc, record.address) from None

    def _call(self, fn: Any) -> Any:
        with probe.warnings_silenced(self.verify):
            try:
                return fn()
            except (sushy_exc.SushyError, requests.exceptions.RequestException) as exc:
                raise rf.translate(exc, self.record.address) from None

    def state(self) -> BiosState:
        def read() -> BiosState:
            # fresh resources: sushy caches the pending-settings sub-resource
            self.system = self.root.get_system(self.record.system_id)
            self.bios = self.system.bios
            current = dict(self.bios.attributes or {})
            try:
                pending = dict(self.bios.pending_attributes or {})
            except (sushy_exc.SushyError, AttributeError):
                pending = {}
            # some BMCs (sushy-tools among them) echo every attribute as "pending":
            # only values that differ from current are really pending
            pending = {k: v for k, v in pending.items() if current.get(k) != v}
            return BiosState(current=current, pending=pending, registry=self._registry())
        return self._call(read)

    def _registry(self) -> dict[str, dict[str, Any]] | None:
        try:
            reg = self.bios.get_attribute_registry()
        except Exception:  # noqa: BLE001 - a registry is optional (DSP0266); absence is fine
            return None
        if reg is None or not getattr(reg, "registry_entries", None):
            return None
        out = {}
        for a in reg.registry_entries.attributes or []:
            allowed = [v.get("ValueName") for v in (a.allowable_values or [])
                       if isinstance(v, dict)]
            out[a.name] = {"read_only": bool(a.read_only), "allowed": [v for v in allowed if v]}
        return out

    def write(self, changes: dict[str, str]) -> None:
        def patch() -> None:
            apply_time = None
            try:
                if sushy.APPLY_TIME_ON_RESET in (self.bios.supported_apply_times or []):
                    apply_time = sushy.APPLY_TIME_ON_RESET
            except AttributeError:
                apply_time = None
            self.bios.set_attributes(changes, apply_time=apply_time)
        self._call(patch)

    def reboot(self) -> None:
        def reset() -> None:
            self.system.refresh(force=True)
            if self.system.power_state == sushy.POWER_STATE_ON:
                self.system.reset_system(sushy.RESET_FORCE_RESTART)
            else:
                self.system.reset_system(sushy.RESET_ON)
        self._call(reset)


def apply(backend: RedfishBios, desired: dict[str, str], reboot: bool = False,
          settle_s: float = 600.0, poll_s: float = 5.0) -> ApplyResult:
    """Write what differs, optionally reset, then verify the current values."""
    label = backend.label
    state = backend.state()
    validate_against(desired, state, label)
    changes = {a: v for a, v in desired.items()
               if _str(state.current.get(a)) != v or (a in state.pending
                                                      and _str(state.pending[a]) != v)}
    if not changes:
        return ApplyResult(label, Outcome.UNCHANGED, rows=diff(desired, state))
    record = {a: {"from": _str(state.current.get(a)), "to": v} for a, v in changes.items()}
    backend.write(changes)
    after = backend.state()
    if _all_current(desired, after):
        # some BMCs (and the lab emulator) apply at once
        return ApplyResult(label, Outcome.APPLIED, record, diff(desired, after))
    if not reboot:
        return ApplyResult(label, Outcome.PENDING, record, diff(desired, after))
    backend.reboot()
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        try:
            after = backend.state()
        except MetalctlError as exc:  # the BMC may be busy while the host POSTs
            LOG.debug("%s: BIOS not readable yet: %s", label, exc)
            continue
        if _all_current(desired, after):
            return ApplyResult(label, Outcome.APPLIED, record, diff(desired, after))
    return ApplyResult(label, Outcome.FAILED, record, diff(desired, after),
                       error=f"values not current {settle_s:.0f} s after the reset")


def _all_current(desired: dict[str, str], state: BiosState) -> bool:
    return all(_str(state.current.get(a)) == v for a, v in desired.items())


# --- through Ironic's BIOS interface -------------------------------------------------------


def apply_ironic(ironic: Any, uuid: str, label: str, desired: dict[str, str],
                 timeout_s: float = 900.0, poll_s: float = 3.0) -> ApplyResult:
    """Apply through Ironic: a manual clean step ``bios.apply_configuration`` with
    ``disable_ramdisk`` (the redfish BIOS interface needs no agent), from and back to
    ``manageable``. Ironic reboots the node and verifies the values itself; metalctl
    then reads Ironic's refreshed BIOS cache and diffs it.
    """
    node = ironic.node(uuid)
    if node.get("provision_state") != "manageable":
        raise BiosError(node=label, reason=f"Ironic node is {node.get('provision_state')}; "
                                           "BIOS apply through Ironic needs manageable")
    current = ironic.bios_settings(uuid)
    state = BiosState(current=current, pending={})
    validate_against(desired, state, label)
    changes = {a: {"from": _str(current.get(a)), "to": v} for a, v in desired.items()
               if _str(current.get(a)) != v}
    if not changes:
        return ApplyResult(label, Outcome.UNCHANGED, rows=diff(desired, state), via="ironic")
    step = {"interface": "bios", "step": "apply_configuration",
            "args": {"settings": [{"name": a, "value": v} for a, v in desired.items()]}}
    ironic.set_provision_state(uuid, "clean", cleansteps=[step], disable_ramdisk=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        node = ironic.node(uuid)
        ps = node.get("provision_state")
        if ps == "manageable" and not node.get("target_provision_state"):
            break
        if ps == "clean failed":
            return ApplyResult(label, Outcome.FAILED, changes, via="ironic",
                               error=f"clean step failed: {node.get('last_error')}")
    else:
        return ApplyResult(label, Outcome.FAILED, changes, via="ironic",
                           error=f"still {node.get('provision_state')} after {timeout_s:.0f} s")
    after = BiosState(current=ironic.bios_settings(uuid), pending={})
    rows = diff(desired, after)
    if all(r.status == "ok" for r in rows):
        return ApplyResult(label, Outcome.APPLIED, changes, rows, via="ironic")
    return ApplyResult(label, Outcome.FAILED, changes, rows, via="ironic",
                       error="Ironic finished but the values differ")
