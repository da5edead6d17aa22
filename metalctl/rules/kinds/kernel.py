"""Kinds about the running kernel: ``sysctl``, ``cmdline`` and ``audit_rules``.

What harden may change here depends on who owns the kernel. A host that shares a
kernel it does not own (a container or namespace on another machine: the lab's SSH
test hosts are namespaces on the machine that runs the tests) must never write a
kernel-global setting: ``kernel.*``, ``fs.*``, ``vm.*`` written there change that
machine for every tenant. Such a host is recognised by :meth:`Context.shared_kernel`
(detected in the gather: not the initial PID namespace, a container marker, a user
namespace; or named by the site's ``sysctl.shared_kernel_hosts``). Its kernel-global
keys are persisted and reported ``deferred``; only ``net.*`` keys of a network
namespace of its own (which is all a namespace sees of ``net.*``) are applied there.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from metalctl.rules import edit
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.kinds import SCALAR, STRS, register
from metalctl.rules.plan import (
    CHANGE,
    COMPLIANT,
    DEFERRED,
    NOTAPPLICABLE,
    Check,
    CheckOutcome,
    Context,
)

SYSCTL_FILE = "/etc/sysctl.d/50-metalctl.conf"
SYSCTL_HEADER = ("# Written by metalctl harden (the sysctl rules of hardening/rules): read at\n"
                 "# boot by systemd-sysctl / procps, in the order of /etc/sysctl.d.\n")
READ_ONLY = "read-only"  # the sysctl probe's mark of a key this host cannot write
AUDIT_FILE = "/etc/audit/rules.d/50-metalctl.rules"
AUDIT_HEADER = "## Written by metalctl harden (the audit_rules rules of hardening/rules)\n"


def _probe(name: str, command: str):  # noqa: ANN202 - a Gather
    def gather(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
        spec.probes[name] = command

    return gather


def _gather_sysctl(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    # the key itself, not ``sysctl -a``: probes are cut at 8000 bytes, and ``-a`` prints
    # a thousand keys (those sorting late were reported "not present in this kernel")
    # and whether it can be written here (containers mount /proc/sys read-only)
    key = shlex.quote(c["key"])
    path = shlex.quote("/proc/sys/" + c["key"].replace(".", "/"))
    spec.probes[f"sysctl:{c['key']}"] = (f"sysctl {key} 2>/dev/null; [ -w {path} ] || "
                                         f"echo {READ_ONLY}")
    spec.content.add(SYSCTL_FILE)


def applies_here(key: str, facts: HostFacts, ctx: Context) -> str | None:
    """None when writing ``key`` changes only this host; else why it must not be written."""
    if READ_ONLY in facts.probes.get(f"sysctl:{key}", "").splitlines():
        return f"{key} is read-only on this host (/proc/sys mounted read-only)"
    shared = ctx.shared_kernel(facts)
    if not shared:
        return None
    if key.startswith("net.") and facts.own_netns:
        return None  # a namespace sees only its own net.* keys
    return (f"{key} is kernel-global and this host shares a kernel it does not own "
            f"({'; '.join(shared)})")


@register(
    "sysctl",
    body={"key": {"type": "string", "pattern": "^[a-z0-9_.-]+$"}, "value": SCALAR,
          "allowed": {"type": "array", "items": SCALAR}},
    required=("key",),
    one_of=("value", "allowed"),
    gather=_gather_sysctl,
)
def k_sysctl(ck: Check) -> CheckOutcome:
    """The running value decides; harden persists the wanted value in ``SYSCTL_FILE`` and
    applies it with ``sysctl -w`` where the setting belongs to the host (else deferred)."""
    key = ck.body["key"]
    values = dict(
        line.split(" = ", 1)
        for line in ck.facts.probes.get(f"sysctl:{key}", "").splitlines()
        if " = " in line
    )
    have = values.get(key)
    if have is None:
        return ck.outcome(NOTAPPLICABLE, f"{key} not present in this kernel")
    have = have.strip()
    want = [str(v) for v in (ck.body["allowed"] if "allowed" in ck.body else [ck.body["value"]])]
    expected = " or ".join(want)
    persisted = edit.get_sysctl(ck.ws.text(SYSCTL_FILE), key)
    if have in want:
        if persisted is None or persisted in want:
            return ck.outcome(COMPLIANT, "sysctl", expected, have)
        # our own file would put the wrong value back at the next boot
        ck.ws.put(SYSCTL_FILE, edit.set_sysctl(ck.ws.text(SYSCTL_FILE), key, have), mode="644")
        return ck.outcome(CHANGE, f"{SYSCTL_FILE} had {key} = {persisted}", expected, have)
    target = persisted if persisted in want else want[0]
    if persisted != target:
        text = ck.ws.text(SYSCTL_FILE) or SYSCTL_HEADER
        ck.ws.put(SYSCTL_FILE, edit.set_sysctl(text, key, target), mode="644")
    # what the host shows, not what harden would do: "persisted" only when the file says so
    on_disk = edit.get_sysctl(ck.facts.text(SYSCTL_FILE), key)
    seen = (f"{SYSCTL_FILE} sets {key} = {on_disk}" if on_disk is not None
            else f"not persisted in {SYSCTL_FILE}")
    why_not = applies_here(key, ck.facts, ck.ctx)
    if why_not:
        ck.plan.reboot_required.append(f"{ck.rule.id}: {key} = {target} persisted in "
                                       f"{SYSCTL_FILE}, not applied: applies when the "
                                       "kernel's owner boots with it")
        return ck.outcome(DEFERRED, f"running {key} = {have}; {seen}; not applicable from "
                          f"this host: {why_not}", expected, have,
                          fix=f"set {key} = {target} on the machine that owns this kernel "
                              "(rebooting this host does not change it)")
    ck.plan.commands.append((ck.rule.id, "sysctl -q -w " + shlex.quote(f"{key}={target}")))
    return ck.outcome(CHANGE, f"running {key} = {have}; {seen}", expected, have,
                      fix=f"sysctl -w {key}={target} and persist it in /etc/sysctl.d "
                          f"(metalctl harden --rule {ck.rule.id} does both)")


def bootloader_command(family: str, remove: list[str], add: list[str]) -> str:
    """The exact command that persists kernel arguments (run by hand, then reboot)."""
    if family == "rhel":
        parts = ["grubby --update-kernel=ALL"]
        if remove:
            parts.append("--remove-args=" + shlex.quote(" ".join(remove)))
        if add:
            parts.append("--args=" + shlex.quote(" ".join(add)))
        return " ".join(parts)
    edits = [f"s/(^|[\" ]){re.escape(a)}([\" ]|$)/\\1\\2/g" for a in remove]
    edits += [f"s/^(GRUB_CMDLINE_LINUX=\"[^\"]*)\"/\\1 {a}\"/" for a in add]
    script = "; ".join(edits)
    return (f"sed -i -E {shlex.quote('/^GRUB_CMDLINE_LINUX/{' + script + '}')} "
            "/etc/default/grub && update-grub")


@register(
    "cmdline",
    body={"absent": STRS, "any_of": STRS},
    one_of=("absent", "any_of"),
    gather=_probe("cmdline", "cat /proc/cmdline"),
)
def k_cmdline(ck: Check) -> CheckOutcome:
    """``/proc/cmdline`` has one of ``any_of`` or none of ``absent``. Kernel arguments need
    the bootloader and a reboot: deferred, with the exact command (never run by harden:
    the bootloader also carries the profile's arguments, and a wrong edit leaves a host
    that does not boot, with no SSH to recover it)."""
    args = ck.facts.probes.get("cmdline", "").split()
    if "absent" in ck.body:
        bad = [a for a in args if a in ck.body["absent"]]
        if not bad:
            return ck.outcome(COMPLIANT, "/proc/cmdline", f"none of {ck.body['absent']}", "absent")
        expected, actual, command = f"none of {ck.body['absent']}", " ".join(bad), \
            bootloader_command(ck.facts.family, bad, [])
    else:
        found = [a for a in args if any(a == x or a.startswith(x) for x in ck.body["any_of"])]
        if found:
            return ck.outcome(COMPLIANT, "/proc/cmdline", f"one of {ck.body['any_of']}",
                              " ".join(found))
        expected, actual, command = f"one of {ck.body['any_of']}", "absent", \
            bootloader_command(ck.facts.family, [], [ck.body["any_of"][0]])
    ck.plan.reboot_required.append(f"{ck.rule.id}: kernel arguments: {command}, then reboot")
    shared = ck.ctx.shared_kernel(ck.facts)
    fix = (f"the command line is that of the machine that owns this kernel "
           f"({'; '.join(shared)}): there, {command}, then reboot it" if shared
           else f"{command}, then reboot")
    return ck.outcome(DEFERRED, f"/proc/cmdline has {actual}; needs the bootloader and a "
                      f"reboot: {command}, then reboot", expected, actual, fix=fix)


# --- audit rules -------------------------------------------------------------------------


def _gather_audit(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.globs.add("/etc/audit/rules.d/*.rules")
    spec.content.add(AUDIT_FILE)
    spec.probes["auditctl-l"] = "auditctl -l 2>&1 || echo 'auditctl: exit' $?"


def audit_rule_key(line: str) -> tuple[str, ...]:
    """A rule in one spelling whatever wrote it (``auditctl -l`` prints watches its own
    way): ``-w`` path without its trailing slash, ``-p`` permissions sorted, ``-F key=``
    as ``-k``."""
    words = line.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        w, arg = words[i], words[i + 1] if i + 1 < len(words) else ""
        if w == "-w":
            out += [w, arg.rstrip("/") or "/"]
        elif w == "-p":
            out += [w, "".join(sorted(arg))]
        elif w == "-F" and arg.startswith("key="):
            out += ["-k", arg[4:]]
        else:
            out += [w, arg]
        i += 2
    return tuple(out)


def _keys(text: str) -> set[tuple[str, ...]]:
    return {audit_rule_key(ln) for ln in text.splitlines() if ln.strip().startswith("-")}


@register("audit_rules", body={"rules": {**STRS, "minItems": 1}}, required=("rules",),
          gather=_gather_audit)
def k_audit_rules(ck: Check) -> CheckOutcome:
    """Audit rules persisted under ``/etc/audit/rules.d`` and loaded in the kernel.

    Missing ones are appended to ``AUDIT_FILE`` and loaded with ``augenrules --load``
    (``auditctl -R`` without it) when auditd runs and the kernel answers; otherwise they
    are deferred with the reason (they load when auditd starts).
    """
    persisted = _keys(ck.ws.text(AUDIT_FILE))
    for path, f in ck.facts.files.items():
        if path.startswith("/etc/audit/rules.d/") and path != AUDIT_FILE and f.content:
            persisted |= _keys(f.content)
    unpersisted = [r for r in ck.body["rules"] if audit_rule_key(r) not in persisted]
    if unpersisted:
        text = ck.ws.text(AUDIT_FILE) or AUDIT_HEADER
        ck.ws.put(AUDIT_FILE, text + "".join(r + "\n" for r in unpersisted), mode="640")
    listed = ck.facts.probes.get("auditctl-l", "")
    expected = "; ".join(ck.body["rules"])
    missing = f"{len(unpersisted)} of {len(ck.body['rules'])} rule(s) not persisted under " \
        "/etc/audit/rules.d" if unpersisted else "persisted under /etc/audit/rules.d"
    then = f"then metalctl harden --rule {ck.rule.id} " + \
        ("persists and loads them" if unpersisted else "loads them")
    fix = None
    if "auditd" not in ck.facts.processes:
        installed = "auditd" in ck.facts.binaries
        why = "auditd is not running" + ("" if installed else " (not installed)")
        fix = (("start auditd (systemctl enable --now auditd; service auditd start without "
                "systemd), " if installed else "install auditd (apt-get install auditd / "
                "dnf install audit) and start it, ") + then)
    elif re.search(r"^(Error|auditctl: exit)", listed, re.MULTILINE):
        why = "the kernel's audit is not reachable from this host: " + \
            listed.strip().splitlines()[0][:160]
        fix = ("the kernel's audit belongs to the machine that owns this kernel: load the "
               "rules there (auditctl -l answers nothing here)")
    else:
        why = ""
    if why:
        state = f"persisted in {AUDIT_FILE}" if not unpersisted else \
            f"{len(unpersisted)} rule(s) written to {AUDIT_FILE}"
        ck.plan.reboot_required.append(
            f"{ck.rule.id}: audit rules {state}; loaded when auditd runs")
        return ck.outcome(DEFERRED, f"{missing}; not loaded: {why}", expected,
                          "not loaded", fix=fix)
    unloaded = [r for r in ck.body["rules"] if audit_rule_key(r) not in _keys(listed)]
    if not unloaded and not unpersisted:
        return ck.outcome(COMPLIANT, "auditctl -l", expected, "loaded and persisted")
    if unloaded:
        ck.plan.commands.append((ck.rule.id, "if command -v augenrules >/dev/null 2>&1; then "
                                       f"augenrules --load; else auditctl -R {AUDIT_FILE}; fi"))
    return ck.outcome(CHANGE, f"{missing}; {len(unloaded)} not loaded (auditctl -l)",
                      expected,
                      f"not loaded: {'; '.join(unloaded)}" if unloaded else "not persisted")
