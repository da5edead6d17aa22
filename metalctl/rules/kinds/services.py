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
    lsm_state,
    manual,
    outcome,
)

AA_STATUS = ("if command -v aa-status >/dev/null 2>&1; then "
             "if aa-status --enabled 2>/dev/null; then echo enabled; else echo 'not enabled'; fi; "
             "else echo absent; fi")


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
        seen, fix = lsm_state("selinux", facts)
        relabel = "a relabel is scheduled (/.autorelabel)" if facts.exists.get("/.autorelabel") \
            else "no relabel scheduled"
        return outcome(
            rule,
            DEFERRED,
            f"SELinux is disabled in the running kernel ({seen}); {relabel}",
            "Enforcing",
            facts.getenforce or "Disabled",
            fix=fix,
        )
    if facts.getenforce == "Enforcing":
        return outcome(rule, COMPLIANT, "", "Enforcing", facts.getenforce)
    plan.commands.append((rule.id, "setenforce 1"))
    return outcome(rule, CHANGE, "", "Enforcing", facts.getenforce)


def _gather_aa(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.probes["aa-status"] = AA_STATUS


@register("apparmor_runtime", gather=_gather_aa)
def k_apparmor_runtime(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """AppArmor enforcing in the running kernel: among the active LSMs
    (``/sys/kernel/security/lsm``), its module enabled, and ``aa-status --enabled``
    agreeing. A profile file proves nothing: libvirt ships one whatever the kernel."""
    lsms = ",".join(facts.lsms) if facts.lsms is not None else "unreadable"
    module = facts.apparmor_module or "absent (no AppArmor in this kernel)"
    aa = facts.probes.get("aa-status", "").strip() or "not run"
    seen = f"LSMs {lsms}; apparmor module enabled: {module}; aa-status: {aa}"
    expected = "apparmor among the active LSMs, module enabled Y, aa-status enabled"
    if facts.lsms is not None and "apparmor" not in facts.lsms:
        if not facts.apparmor_module:
            fix = ("boot a kernel built with AppArmor (CONFIG_SECURITY_APPARMOR) with "
                   "apparmor=1 security=apparmor, then install the apparmor package")
        else:
            fix = ("add apparmor to the kernel's lsm= (or apparmor=1 security=apparmor) "
                   "in the bootloader and reboot")
        return manual(rule, expected, f"apparmor not in the running kernel's LSMs ({seen})",
                      fix)
    if facts.apparmor_module != "Y":
        return manual(rule, expected, f"apparmor module not enabled ({seen})",
                      "boot with apparmor=1 security=apparmor (the running kernel has it "
                      "disabled)" if facts.apparmor_module else
                      "boot a kernel built with AppArmor, with apparmor=1 security=apparmor")
    if aa != "enabled":
        return manual(rule, expected, f"aa-status: {aa} ({seen})",
                      "install the apparmor package (aa-status, the profile loader) and "
                      "start apparmor.service" if aa == "absent" else
                      "mount securityfs and start apparmor.service (aa-status reports it "
                      "not enabled)")
    return outcome(rule, COMPLIANT, "/sys/kernel/security/lsm, aa-status", expected, seen)


def service_probe(name: str) -> str:
    """Read-only: the daemon's systemd service and socket (state, MainPID and its command
    name), else the pid file its init script writes (/run/NAME.pid) and that pid's name."""
    return (f"n={name}; if [ -d /run/systemd/system ]; then "
            "for u in $n.service $n.socket; do "
            "systemctl show -p Id -p ActiveState -p SubState -p MainPID $u 2>/dev/null; "
            "p=$(systemctl show -p MainPID --value $u 2>/dev/null); "
            '[ "${p:-0}" != 0 ] && echo "MainPIDComm=$(cat /proc/$p/comm 2>/dev/null)"; '
            "echo; done; fi; "
            "for f in /run/$n.pid /var/run/$n.pid; do if [ -r $f ]; then p=$(cat $f); "
            'echo "pidfile=$f pid=$p comm=$(cat /proc/$p/comm 2>/dev/null)"; break; fi; done; '
            "true")


def _gather_service(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    for name in expand(c["name"]):
        spec.probes[f"service:{name}"] = service_probe(name)


def _units(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show`` blocks by unit id."""
    out: dict[str, dict[str, str]] = {}
    for block in text.split("\n\n"):
        kv = dict(ln.split("=", 1) for ln in block.splitlines() if "=" in ln)
        if kv.get("Id"):
            out[kv["Id"]] = kv
    return out


@register("service", body={"name": STR}, required=("name",), gather=_gather_service)
def k_service(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """The host's own daemon runs: its systemd service is active with a MainPID of that
    name, or its socket unit listens (socket activation: the daemon exits when idle and
    systemd starts it on the next connection); without systemd, the pid file of its init
    script names a live process of that name. Any other process of that name (a private
    daemon of another program, a session daemon) does not count."""
    name = c["name"]
    out = facts.probes.get(f"service:{name}", "")
    units = _units(out)
    svc, sock = units.get(f"{name}.service", {}), units.get(f"{name}.socket", {})
    pidfile = next((ln for ln in out.splitlines() if ln.startswith("pidfile=")), "")
    if svc.get("ActiveState") == "active" and svc.get("MainPID", "0") != "0" and \
            svc.get("MainPIDComm", name) == name:
        return outcome(rule, COMPLIANT, "systemctl show", "running",
                       f"{name}.service active, MainPID {svc['MainPID']}")
    if sock.get("ActiveState") == "active":
        return outcome(rule, COMPLIANT, "systemctl show", "running or socket-activated",
                       f"socket-activated: {name}.socket {sock.get('SubState', 'active')}, "
                       "service idle")
    if pidfile.endswith(f"comm={name}"):
        return outcome(rule, COMPLIANT, pidfile.split()[0], "running",
                       pidfile.replace("pidfile=", ""))
    if units:
        seen = "; ".join(f"{u} {kv.get('ActiveState', '?')}" for u, kv in sorted(units.items()))
    else:
        seen = pidfile.replace("pidfile=", "pid file ") + " (not that daemon)" if pidfile \
            else f"no pid file /run/{name}.pid"
    if name in facts.processes:
        seen += f"; a process named {name} runs, but not as the host's service"
    if "libvirtd" not in plan.handlers:
        plan.handlers.append("libvirtd")
    return outcome(rule, CHANGE, "", "running", f"not running ({seen})")


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
