"""Kinds that set keys in shell-style (``KEY=value``) and INI files
(``/etc/selinux/config``, ``dnf.conf``, ``*.repo``).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from metalctl.rules import edit
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.kinds import MAPPING, SCALAR, STR, gather_file, register
from metalctl.rules.plan import (
    CHANGE,
    COMPLIANT,
    ERROR,
    CheckOutcome,
    Context,
    RulePlan,
    Workspace,
    outcome,
)


@register(
    "shell_kv",
    body={
        "file": STR,
        "key": STR,
        "value": SCALAR,
        "quote": {"type": "boolean"},
        "must_exist": {"type": "boolean"},
        # schedule a relabel and report a reboot when SELinux is off
        "relabel_if_selinux_off": {"type": "boolean"},
    },
    required=("file", "key", "value"),
    gather=gather_file,
)
def k_shell_kv(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check a ``key=value`` in a shell-style file; set it when it differs."""
    path = c["file"]
    if not facts.file(path).exists and c.get("must_exist", path.startswith("/etc/selinux")):
        return outcome(rule, ERROR, f"{path} missing")
    text = ws.text(path)
    have = edit.get_shell(text, c["key"])
    if have == str(c["value"]):
        return outcome(rule, COMPLIANT, "", c["value"], have)
    ws.put(path, edit.set_shell(text, c["key"], str(c["value"]), quote=c.get("quote", False)))
    if c.get("relabel_if_selinux_off") and not facts.selinux_enabled:
        # SELinux off in the running kernel: files created meanwhile carry no labels
        if not facts.exists.get("/.autorelabel"):
            plan.commands.append((rule.id, "touch /.autorelabel"))
        plan.reboot_required.append(f"{rule.id}: SELinux was disabled; relabel scheduled")
    return outcome(rule, CHANGE, "", f"{c['key']}={c['value']}", f"{c['key']}={have}")


_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


def _ini_same(have: str | None, want: str) -> bool:
    """dnf reads 1/True/yes alike (ComplianceAsCode PR #14986): compare booleans as such."""
    if have is None:
        return False
    h, w = have.strip().lower(), want.strip().lower()
    if w in _TRUE:
        return h in _TRUE
    if w in _FALSE:
        return h in _FALSE
    return have.strip() == want


@register(
    "ini_set",
    body={"file": STR, "section": STR, "values": MAPPING},
    required=("file", "section", "values"),
    gather=gather_file,
)
def k_ini_set(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check options in one section of an INI file; set those that differ."""
    path = c["file"]
    text = ws.text(path)
    drift = []
    for key, value in c["values"].items():
        have = edit.get_ini(text, c["section"], key)
        if not _ini_same(have, str(value)):
            drift.append(f"[{c['section']}] {key}: {have} -> {value}")
            text = edit.set_ini(text, c["section"], key, str(value))
    if not drift:
        return outcome(rule, COMPLIANT)
    ws.put(path, text)
    return outcome(rule, CHANGE, "", actual="; ".join(drift))


def _gather_glob(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.globs.add(c["glob"])


@register(
    "ini_all",
    body={"glob": STR, "values": MAPPING, "only_enabled": {"type": "boolean"}},
    required=("glob", "values"),
    gather=_gather_glob,
)
def k_ini_all(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check options in every section of INI files matching a glob; set those that differ."""
    drift = []
    for path in sorted(p for p in facts.files if fnmatch.fnmatch(p, c["glob"])):
        text = ws.text(path)
        new = text
        for section in edit.ini_sections(text):
            if c.get("only_enabled") and edit.get_ini(text, section, "enabled") == "0":
                continue
            for key, value in c["values"].items():
                have = edit.get_ini(new, section, key)
                if not _ini_same(have, str(value)):
                    drift.append(f"{path} [{section}] {key}: {have} -> {value}")
                    new = edit.set_ini(new, section, key, str(value))
        if new != text:
            ws.put(path, new)
    if not drift:
        return outcome(rule, COMPLIANT)
    return outcome(rule, CHANGE, "", actual="; ".join(drift))
