"""Kinds that set keys in libvirt's own config files (``key = value``, quoted strings, lists).

libvirtd.conf syntax: libvirt.org/daemons.html; the editor is :mod:`metalctl.rules.edit`."""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules import edit
from metalctl.rules.catalogue import Rule
from metalctl.rules.kinds import KEY_VALUE, MAPPING, TEMPLATE, register_file_kind
from metalctl.rules.plan import (
    CHANGE,
    COMPLIANT,
    DEFERRED,
    ERROR,
    Check,
    CheckOutcome,
    Workspace,
    lsm_active,
    lsm_state,
    outcome,
)


@register_file_kind(
    "libvirt_kv",
    body={
        **KEY_VALUE,
        "requires_active_lsm": {"type": "boolean"},
        "lsm": {"anyOf": [{"enum": ["selinux", "apparmor"]}, TEMPLATE]},
    },
    required=tuple(KEY_VALUE),
)
def k_libvirt_kv(ck: Check) -> CheckOutcome:
    """Check one libvirt daemon setting; set it, or defer when its LSM is not active."""
    path = ck.body["file"]
    absent = not ck.facts.file(path).exists and path not in ck.ws.texts
    if path.startswith("/etc/libvirt/") and absent:
        return ck.outcome(ERROR, f"{path} missing (libvirt not installed?)")
    lsm = str(ck.body.get("lsm", ck.body["value"]))
    if ck.body.get("requires_active_lsm") and not lsm_active(lsm, ck.facts):
        seen, fix = lsm_state(lsm, ck.facts)
        ck.plan.reboot_required.append(f"{ck.rule.id}: {lsm} not active in the running kernel"
                                    + ("" if "reboot" in fix else f" ({fix})"))
        return ck.outcome(
            DEFERRED,
            f"{lsm} is not active in the running kernel ({seen}); libvirtd refuses to start "
            f"with {ck.body['key']} = {ck.body['value']} then, so harden does not set it",
            ck.body["value"],
            edit.get_kv(ck.ws.text(path), ck.body["key"]),
            fix=f"{fix}; then metalctl harden --rule {ck.rule.id}",
        )
    return _set_libvirt(ck.rule, path, {ck.body["key"]: ck.body["value"]}, ck.ws)


@register_file_kind("libvirt_kv_set", body={"values": MAPPING}, required=("values",))
def k_libvirt_kv_set(ck: Check) -> CheckOutcome:
    """Check several settings of a libvirt config file; set those that differ."""
    if not ck.facts.file(ck.body["file"]).exists:
        return ck.outcome(ERROR, f"{ck.body['file']} missing (libvirt not installed?)")
    return _set_libvirt(ck.rule, ck.body["file"], ck.body["values"], ck.ws)


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
