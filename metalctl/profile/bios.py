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
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from metalctl import data as datafiles
from metalctl import poll
from metalctl.bmc.bios import RedfishBios
from metalctl.data.paths import data_dir
from metalctl.errors import BiosError, MetalctlError, WaitTimeout
from metalctl.model.bios import BiosState, DiffRow, as_text, diff, validate_against

LOG = logging.getLogger(__name__)

class BiosOutcome(str, Enum):
    """What applying BIOS attributes did to one node."""
    UNCHANGED = "unchanged"
    APPLIED = "applied"
    PENDING = "pending-reboot"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"


@dataclass(frozen=True)
class VendorMap:
    """One vendor's BIOS attribute map: vendor-neutral intents -> vendor attributes."""
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
        """Return the vendor maps of the extra directories and the shipped ones."""
        return _load_maps(tuple([*self.dirs, data_dir("profiles") / "bios"]))

    def for_manufacturer(self, manufacturer: str | None, node: str = "?") -> VendorMap:
        """Return the vendor map whose manufacturer patterns match ``manufacturer``.

        Raises:
            BiosError: no map matches.
        """
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


# --- Redfish backend -------------------------------------------------------------------


@dataclass
class ApplyResult:
    """The BIOS outcome of one node: attributes changed, per-attribute rows, error."""
    node: str
    outcome: BiosOutcome
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[DiffRow] = field(default_factory=list)
    error: str | None = None
    via: str = "redfish"


def apply(backend: RedfishBios, desired: dict[str, str], reboot: bool = False,
          settle_s: float = 600.0, poll_s: float = 5.0) -> ApplyResult:
    """Write what differs, optionally reset, then verify the current values."""
    label = backend.label
    state = backend.state()
    validate_against(desired, state, label)
    changes = {a: v for a, v in desired.items()
               if as_text(state.current.get(a)) != v or (a in state.pending
                                                      and as_text(state.pending[a]) != v)}
    if not changes:
        return ApplyResult(label, BiosOutcome.UNCHANGED, rows=diff(desired, state))
    record = {a: {"from": as_text(state.current.get(a)), "to": v} for a, v in changes.items()}
    backend.write(changes)
    after = backend.state()
    if _all_current(desired, after):
        # some BMCs (and the lab emulator) apply at once
        return ApplyResult(label, BiosOutcome.APPLIED, record, diff(desired, after))
    if not reboot:
        return ApplyResult(label, BiosOutcome.PENDING, record, diff(desired, after))
    backend.reboot()
    try:
        # the BMC may be busy while the host POSTs: an unreadable BIOS is "not yet"
        after = poll.wait_for(backend.state, ready=lambda s: _all_current(desired, s),
                              transient=(MetalctlError,), sleep_first=True,
                              timeout_s=settle_s, interval_s=poll_s,
                              what=f"{label}: BIOS values after the reset")
    except WaitTimeout as exc:
        after = exc.last if exc.last is not None else after
        return ApplyResult(label, BiosOutcome.FAILED, record, diff(desired, after),
                           error=f"values not current {settle_s:.0f} s after the reset")
    return ApplyResult(label, BiosOutcome.APPLIED, record, diff(desired, after))


def _all_current(desired: dict[str, str], state: BiosState) -> bool:
    return all(as_text(state.current.get(a)) == v for a, v in desired.items())


# --- through Ironic's BIOS interface -------------------------------------------------------


def _clean_ended(node: dict[str, Any]) -> bool:
    state = node.get("provision_state")
    return state == "clean failed" or (state == "manageable"
                                       and not node.get("target_provision_state"))


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
    changes = {a: {"from": as_text(current.get(a)), "to": v} for a, v in desired.items()
               if as_text(current.get(a)) != v}
    if not changes:
        return ApplyResult(label, BiosOutcome.UNCHANGED, rows=diff(desired, state), via="ironic")
    step = {"interface": "bios", "step": "apply_configuration",
            "args": {"settings": [{"name": a, "value": v} for a, v in desired.items()]}}
    ironic.set_provision_state(uuid, "clean", cleansteps=[step], disable_ramdisk=True)
    try:
        # first read after a pause, as before: just after the request the node can read as
        # manageable with no target, which would look like the end of the cleaning
        node = poll.wait_for(lambda: ironic.node(uuid), ready=_clean_ended, sleep_first=True,
                             timeout_s=timeout_s, interval_s=poll_s,
                             what=f"{label}: Ironic clean step bios.apply_configuration")
    except WaitTimeout as exc:
        node = exc.last or node
        return ApplyResult(label, BiosOutcome.FAILED, changes, via="ironic",
                           error=f"still {node.get('provision_state')} after {timeout_s:.0f} s")
    if node.get("provision_state") == "clean failed":
        return ApplyResult(label, BiosOutcome.FAILED, changes, via="ironic",
                           error=f"clean step failed: {node.get('last_error')}")
    after = BiosState(current=ironic.bios_settings(uuid), pending={})
    rows = diff(desired, after)
    if all(r.status == "ok" for r in rows):
        return ApplyResult(label, BiosOutcome.APPLIED, changes, rows, via="ironic")
    return ApplyResult(label, BiosOutcome.FAILED, changes, rows, via="ironic",
                       error="Ironic finished but the values differ")
