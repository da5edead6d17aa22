"""BIOS settings as data: what a BMC holds (current, pending, its registry's allowed
values) and how that compares with what a profile wants. Pure; the I/O is in
:mod:`metalctl.bmc.bios`, the vendor maps in :mod:`metalctl.profile.bios`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metalctl.errors import BiosError


@dataclass
class BiosState:
    """Current and pending attributes, and the registry entries when the BMC serves them."""

    current: dict[str, Any]
    pending: dict[str, Any]
    registry: dict[str, dict[str, Any]] | None = None  # name -> {read_only, allowed}


@dataclass
class DiffRow:
    """One attribute: wanted, current and pending values and what that means."""

    attribute: str
    desired: str
    current: str | None
    pending: str | None
    status: str  # ok | drift | pending | unsupported


def diff(desired: dict[str, str], state: BiosState) -> list[DiffRow]:
    """Each desired attribute against the BMC's state (ok, pending, drift, unsupported)."""
    rows = []
    for attr, want in sorted(desired.items()):
        if attr not in state.current:
            rows.append(DiffRow(attr, want, None, None, "unsupported"))
            continue
        cur = as_text(state.current.get(attr))
        pend = as_text(state.pending[attr]) if attr in state.pending else None
        if cur == want and (pend is None or pend == want):
            status = "ok"
        elif pend == want:
            status = "pending"
        else:
            status = "drift"
        rows.append(DiffRow(attr, want, cur, pend, status))
    return rows


def as_text(v: Any) -> str | None:
    """Return a BIOS value as text (booleans as ``true``/``false``), None kept."""
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
