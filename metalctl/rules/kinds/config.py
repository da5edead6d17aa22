"""Kinds that set keys in shell-style (``KEY=value``) and INI files
(``/etc/selinux/config``, ``dnf.conf``, ``*.repo``).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from metalctl.rules import edit
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec
from metalctl.rules.kinds import KEY_VALUE, MAPPING, STR, register, register_file_kind
from metalctl.rules.plan import CHANGE, COMPLIANT, ERROR, Check, CheckOutcome


@register_file_kind(
    "shell_kv",
    body={
        **KEY_VALUE,
        "quote": {"type": "boolean"},
        "must_exist": {"type": "boolean"},
        # schedule a relabel and report a reboot when SELinux is off
        "relabel_if_selinux_off": {"type": "boolean"},
    },
    required=tuple(KEY_VALUE),
)
def k_shell_kv(ck: Check) -> CheckOutcome:
    """Check a ``key=value`` in a shell-style file; set it when it differs."""
    c, path = ck.body, ck.body["file"]
    if not ck.facts.file(path).exists and c.get("must_exist", path.startswith("/etc/selinux")):
        return ck.outcome(ERROR, f"{path} missing")
    text = ck.ws.text(path)
    have = edit.get_shell(text, c["key"])
    if have == str(c["value"]):
        return ck.outcome(COMPLIANT, "", c["value"], have)
    ck.ws.put(path, edit.set_shell(text, c["key"], str(c["value"]), quote=c.get("quote", False)))
    if c.get("relabel_if_selinux_off") and not ck.facts.selinux_enabled:
        # SELinux off in the running kernel: files created meanwhile carry no labels
        if not ck.facts.exists.get("/.autorelabel"):
            ck.plan.commands.append((ck.rule.id, "touch /.autorelabel"))
        ck.plan.reboot_required.append(f"{ck.rule.id}: SELinux was disabled; relabel scheduled")
    return ck.outcome(CHANGE, "", f"{c['key']}={c['value']}", f"{c['key']}={have}")


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


@register_file_kind("ini_set", body={"section": STR, "values": MAPPING},
                    required=("section", "values"))
def k_ini_set(ck: Check) -> CheckOutcome:
    """Check options in one section of an INI file; set those that differ."""
    path = ck.body["file"]
    text = ck.ws.text(path)
    drift = []
    for key, value in ck.body["values"].items():
        have = edit.get_ini(text, ck.body["section"], key)
        if not _ini_same(have, str(value)):
            drift.append(f"[{ck.body['section']}] {key}: {have} -> {value}")
            text = edit.set_ini(text, ck.body["section"], key, str(value))
    if not drift:
        return ck.outcome(COMPLIANT)
    ck.ws.put(path, text)
    return ck.outcome(CHANGE, "", actual="; ".join(drift))


def _gather_glob(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.globs.add(c["glob"])


@register(
    "ini_all",
    body={"glob": STR, "values": MAPPING, "only_enabled": {"type": "boolean"}},
    required=("glob", "values"),
    gather=_gather_glob,
)
def k_ini_all(ck: Check) -> CheckOutcome:
    """Check options in every section of INI files matching a glob; set those that differ."""
    drift = []
    for path in sorted(p for p in ck.facts.files if fnmatch.fnmatch(p, ck.body["glob"])):
        text = ck.ws.text(path)
        new = text
        for section in edit.ini_sections(text):
            if ck.body.get("only_enabled") and edit.get_ini(text, section, "enabled") == "0":
                continue
            for key, value in ck.body["values"].items():
                have = edit.get_ini(new, section, key)
                if not _ini_same(have, str(value)):
                    drift.append(f"{path} [{section}] {key}: {have} -> {value}")
                    new = edit.set_ini(new, section, key, str(value))
        if new != text:
            ck.ws.put(path, new)
    if not drift:
        return ck.outcome(COMPLIANT)
    return ck.outcome(CHANGE, "", actual="; ".join(drift))
