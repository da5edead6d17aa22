"""Kinds that set keys in libvirt's own config files (``key = value``, quoted strings, lists).

libvirtd.conf syntax: libvirt.org/daemons.html; the editor is :mod:`metalctl.rules.edit`."""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules import edit
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import HostFacts
from metalctl.rules.kinds import MAPPING, SCALAR, STR, TEMPLATE, gather_file, register
from metalctl.rules.plan import (
    CHANGE,
    COMPLIANT,
    DEFERRED,
    ERROR,
    CheckOutcome,
    Context,
    RulePlan,
    Workspace,
    lsm_active,
    lsm_state,
    outcome,
)


@register(
    "libvirt_kv",
    body={
        "file": STR,
        "key": STR,
        "value": SCALAR,
        "requires_active_lsm": {"type": "boolean"},
        "lsm": {"anyOf": [{"enum": ["selinux", "apparmor"]}, TEMPLATE]},
    },
    required=("file", "key", "value"),
    gather=gather_file,
)
def k_libvirt_kv(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check one libvirt daemon setting; set it, or defer when its LSM is not active."""
    path = c["file"]
    if path.startswith("/etc/libvirt/") and not facts.file(path).exists and path not in ws.texts:
        return outcome(rule, ERROR, f"{path} missing (libvirt not installed?)")
    lsm = str(c.get("lsm", c["value"]))
    if c.get("requires_active_lsm") and not lsm_active(lsm, facts):
        seen, fix = lsm_state(lsm, facts)
        plan.reboot_required.append(f"{rule.id}: {lsm} not active in the running kernel"
                                    + ("" if "reboot" in fix else f" ({fix})"))
        return outcome(
            rule,
            DEFERRED,
            f"{lsm} is not active in the running kernel ({seen}); libvirtd refuses to start "
            f"with {c['key']} = {c['value']} then, so harden does not set it",
            c["value"],
            edit.get_kv(ws.text(path), c["key"]),
            fix=f"{fix}; then metalctl harden --rule {rule.id}",
        )
    return _set_libvirt(rule, path, {c["key"]: c["value"]}, ws)


@register(
    "libvirt_kv_set",
    body={"file": STR, "values": MAPPING},
    required=("file", "values"),
    gather=gather_file,
)
def k_libvirt_kv_set(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check several settings of a libvirt config file; set those that differ."""
    if not facts.file(c["file"]).exists:
        return outcome(rule, ERROR, f"{c['file']} missing (libvirt not installed?)")
    return _set_libvirt(rule, c["file"], c["values"], ws)


def _set_libvirt(rule: Rule, path: str, values: dict[str, Any], ws: Workspace) -> CheckOutcome:
    text = ws.text(path)
    drift = []
    for key, value in values.items():
        want = edit.libvirt_value(value)
        have = edit.get_kv(text, key)
        if _norm(have) != _norm(want):
            drift.append((key, want, have))
            text = edit.set_kv(text, key, want)
    if not drift:
        return outcome(rule, COMPLIANT, "", *(_pair(values, ws.text(path))))
    ws.put(path, text)
    return outcome(
        rule,
        CHANGE,
        "",
        "; ".join(f"{k} = {w}" for k, w, _ in drift),
        "; ".join(f"{k} = {h if h is not None else '(unset)'}" for k, _, h in drift),
    )


def _pair(values: dict[str, Any], text: str) -> tuple[str, str]:
    return (
        "; ".join(f"{k} = {edit.libvirt_value(v)}" for k, v in values.items()),
        "; ".join(f"{k} = {edit.get_kv(text, k)}" for k in values),
    )


def _norm(raw: str | None) -> str | None:
    return None if raw is None else re.sub(r"\s+", "", raw)
