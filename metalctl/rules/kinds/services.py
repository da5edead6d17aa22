"""Kinds about units, services, processes and sockets, and generic probe/fix commands."""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.kinds import STR, STRS, gather_probe, register
from metalctl.rules.plan import (
    CHANGE,
    COMPLIANT,
    DEFERRED,
    MANUAL,
    CheckOutcome,
    Context,
    RulePlan,
    Workspace,
    expand,
    outcome,
)


def _gather_units(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    for unit in [*c.get("enable", []), *c.get("disable", [])]:
        spec.units.update(expand(unit))


@register("units", body={"enable": STRS, "disable": STRS}, gather=_gather_units)
def k_units(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check systemd units are enabled or disabled as listed; plan the systemctl commands."""
    cmds = []
    for unit in c.get("enable", []):
        if facts.units.get(unit, "absent") != "enabled":
            cmds.append(f"systemctl enable {unit}")  # started by the libvirtd handler
    for unit in c.get("disable", []):
        if facts.units.get(unit, "absent") not in ("disabled", "masked", "absent"):
            cmds.append(f"systemctl disable --now {unit}")
    if not cmds:
        return outcome(rule, COMPLIANT)
    plan.commands += [(rule.id, x) for x in cmds]
    return outcome(rule, CHANGE, "", actual="; ".join(cmds))


@register(
    "command",
    body={"probe": STR, "expect": STR, "fix": STR},
    required=("probe", "expect"),
    gather=gather_probe,
)
def k_command(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check a probe's output matches ``expect``; plan the ``fix`` command, else manual work."""
    out = facts.probes.get(rule.id, "")
    if re.search(c["expect"], out):
        return outcome(rule, COMPLIANT, "", c["expect"], out[:200])
    if c.get("fix") in (None, "false"):
        return outcome(rule, MANUAL, rule.remediation or "no automatic fix", c["expect"], out[:200])
    plan.commands.append((rule.id, c["fix"]))
    return outcome(rule, CHANGE, "", c["expect"], out[:200])


@register("selinux_runtime")
def k_selinux_runtime(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check SELinux is enforcing in the running kernel (deferred to reboot when disabled)."""
    if not facts.selinux_enabled:
        plan.reboot_required.append(f"{rule.id}: SELinux disabled in the running kernel")
        return outcome(
            rule,
            DEFERRED,
            "SELinux is disabled in the running kernel; enforcing after "
            "the reboot (relabel scheduled)",
            "Enforcing",
            facts.getenforce or "Disabled",
        )
    if facts.getenforce == "Enforcing":
        return outcome(rule, COMPLIANT, "", "Enforcing", facts.getenforce)
    plan.commands.append((rule.id, "setenforce 1"))
    return outcome(rule, CHANGE, "", "Enforcing", facts.getenforce)


def _gather_service(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    for name in expand(c["name"]):
        spec.units.add(f"{name}.socket")


@register("service", body={"name": STR}, required=("name",), gather=_gather_service)
def k_service(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check a daemon is running, or socket-activated under systemd; otherwise restart it
    through the libvirtd handler."""
    name = c["name"]
    if name in facts.processes:
        return outcome(rule, COMPLIANT, "", "running", "running")
    # a socket-activated daemon exits when idle (Debian's libvirtd runs with --timeout
    # 120, RHEL's modular daemons likewise) and systemd starts it on the next connection:
    # not running is then its normal state (its sockets are judged by the listening rules)
    if facts.init == "systemd" and facts.units.get(f"{name}.socket") == "enabled":
        return outcome(rule, COMPLIANT, "", "running or socket-activated",
                       f"socket-activated ({name}.socket enabled), idle")
    if "libvirtd" not in plan.handlers:
        plan.handlers.append("libvirtd")
    return outcome(rule, CHANGE, "", "running", "not running")


@register(
    "listening",
    body={
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "address": STR,
        "listening": {"type": "boolean"},
    },
    required=("port",),
)
def k_listening(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check a port is (or is not) listening, on the given address when set."""
    port = str(c["port"])
    socks = sorted(s for s in facts.listening if s.rsplit(":", 1)[-1] == port)
    want = bool(c.get("listening", True))
    where = c.get("address")
    ok = (bool(socks) == want) and (
        not want or not where or any(s.startswith(f"{where}:") for s in socks)
    )
    expected = f"{where or '*'}:{port} listening" if want else f"nothing on :{port}"
    if ok:
        return outcome(rule, COMPLIANT, "", expected, ", ".join(socks) or "none")
    # fixed by (re)starting the daemon with its new configuration; checked again after
    if "libvirtd" not in plan.handlers:
        plan.handlers.append("libvirtd")
    return outcome(rule, CHANGE, "", expected, ", ".join(socks) or "none")
