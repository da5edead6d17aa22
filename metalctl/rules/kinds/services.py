"""Kinds about units, services, processes and sockets, and generic probe/fix commands."""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec
from metalctl.rules.kinds import STR, STRS, gather_probe, register
from metalctl.rules.plan import (
    CHANGE,
    COMPLIANT,
    DEFERRED,
    MANUAL,
    Check,
    CheckOutcome,
    expand,
    lsm_state,
)

AA_STATUS = ("if command -v aa-status >/dev/null 2>&1; then "
             "if aa-status --enabled 2>/dev/null; then echo enabled; else echo 'not enabled'; fi; "
             "else echo absent; fi")


def _gather_units(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    for unit in [*c.get("enable", []), *c.get("disable", [])]:
        spec.units.update(expand(unit))


@register("units", body={"enable": STRS, "disable": STRS}, gather=_gather_units)
def k_units(ck: Check) -> CheckOutcome:
    """Check systemd units are enabled or disabled as listed; plan the systemctl commands."""
    cmds = []
    for unit in ck.body.get("enable", []):
        if ck.facts.units.get(unit, "absent") != "enabled":
            cmds.append(f"systemctl enable {unit}")  # started by the libvirtd handler
    for unit in ck.body.get("disable", []):
        if ck.facts.units.get(unit, "absent") not in ("disabled", "masked", "absent"):
            cmds.append(f"systemctl disable --now {unit}")
    if not cmds:
        return ck.outcome(COMPLIANT)
    ck.plan.commands += [(ck.rule.id, x) for x in cmds]
    return ck.outcome(CHANGE, "", actual="; ".join(cmds))


@register(
    "command",
    body={"probe": STR, "expect": STR, "fix": STR},
    required=("probe", "expect"),
    gather=gather_probe,
)
def k_command(ck: Check) -> CheckOutcome:
    """Check a probe's output matches ``expect``; plan the ``fix`` command, else manual work."""
    out = ck.facts.probes.get(ck.rule.id, "")
    if re.search(ck.body["expect"], out):
        return ck.outcome(COMPLIANT, "", ck.body["expect"], out[:200])
    if ck.body.get("fix") in (None, "false"):
        return ck.outcome(MANUAL, ck.rule.remediation or "no automatic fix", ck.body["expect"],
                          out[:200])
    ck.plan.commands.append((ck.rule.id, ck.body["fix"]))
    return ck.outcome(CHANGE, "", ck.body["expect"], out[:200])


@register("selinux_runtime")
def k_selinux_runtime(ck: Check) -> CheckOutcome:
    """Check SELinux is enforcing in the running kernel (deferred to reboot when disabled)."""
    if not ck.facts.selinux_enabled:
        ck.plan.reboot_required.append(f"{ck.rule.id}: SELinux disabled in the running kernel")
        seen, fix = lsm_state("selinux", ck.facts)
        relabel = "a relabel is scheduled (/.autorelabel)" if ck.facts.exists.get("/.autorelabel") \
            else "no relabel scheduled"
        return ck.outcome(
            DEFERRED,
            f"SELinux is disabled in the running kernel ({seen}); {relabel}",
            "Enforcing",
            ck.facts.getenforce or "Disabled",
            fix=fix,
        )
    if ck.facts.getenforce == "Enforcing":
        return ck.outcome(COMPLIANT, "", "Enforcing", ck.facts.getenforce)
    ck.plan.commands.append((ck.rule.id, "setenforce 1"))
    return ck.outcome(CHANGE, "", "Enforcing", ck.facts.getenforce)


def _gather_aa(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.probes["aa-status"] = AA_STATUS


@register("apparmor_runtime", gather=_gather_aa)
def k_apparmor_runtime(ck: Check) -> CheckOutcome:
    """AppArmor enforcing in the running kernel: among the active LSMs
    (``/sys/kernel/security/lsm``), its module enabled, and ``aa-status --enabled``
    agreeing. A profile file proves nothing: libvirt ships one whatever the kernel."""
    lsms = ",".join(ck.facts.lsms) if ck.facts.lsms is not None else "unreadable"
    module = ck.facts.apparmor_module or "absent (no AppArmor in this kernel)"
    aa = ck.facts.probes.get("aa-status", "").strip() or "not run"
    seen = f"LSMs {lsms}; apparmor module enabled: {module}; aa-status: {aa}"
    expected = "apparmor among the active LSMs, module enabled Y, aa-status enabled"
    if ck.facts.lsms is not None and "apparmor" not in ck.facts.lsms:
        if not ck.facts.apparmor_module:
            fix = ("boot a kernel built with AppArmor (CONFIG_SECURITY_APPARMOR) with "
                   "apparmor=1 security=apparmor, then install the apparmor package")
        else:
            fix = ("add apparmor to the kernel's lsm= (or apparmor=1 security=apparmor) "
                   "in the bootloader and reboot")
        return ck.manual(expected, f"apparmor not in the running kernel's LSMs ({seen})",
                         fix)
    if ck.facts.apparmor_module != "Y":
        return ck.manual(expected, f"apparmor module not enabled ({seen})",
                         "boot with apparmor=1 security=apparmor (the running kernel has it "
                         "disabled)" if ck.facts.apparmor_module else
                         "boot a kernel built with AppArmor, with apparmor=1 security=apparmor")
    if aa != "enabled":
        return ck.manual(expected, f"aa-status: {aa} ({seen})",
                         "install the apparmor package (aa-status, the profile loader) and "
                         "start apparmor.service" if aa == "absent" else
                         "mount securityfs and start apparmor.service (aa-status reports it "
                         "not enabled)")
    return ck.outcome(COMPLIANT, "/sys/kernel/security/lsm, aa-status", expected, seen)


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
def k_service(ck: Check) -> CheckOutcome:
    """The host's own daemon runs: its systemd service is active with a MainPID of that
    name, or its socket unit listens (socket activation: the daemon exits when idle and
    systemd starts it on the next connection); without systemd, the pid file of its init
    script names a live process of that name. Any other process of that name (a private
    daemon of another program, a session daemon) does not count."""
    name = ck.body["name"]
    out = ck.facts.probes.get(f"service:{name}", "")
    units = _units(out)
    svc, sock = units.get(f"{name}.service", {}), units.get(f"{name}.socket", {})
    pidfile = next((ln for ln in out.splitlines() if ln.startswith("pidfile=")), "")
    if svc.get("ActiveState") == "active" and svc.get("MainPID", "0") != "0" and \
            svc.get("MainPIDComm", name) == name:
        return ck.outcome(COMPLIANT, "systemctl show", "running",
                          f"{name}.service active, MainPID {svc['MainPID']}")
    if sock.get("ActiveState") == "active":
        return ck.outcome(COMPLIANT, "systemctl show", "running or socket-activated",
                          f"socket-activated: {name}.socket {sock.get('SubState', 'active')}, "
                          "service idle")
    if pidfile.endswith(f"comm={name}"):
        return ck.outcome(COMPLIANT, pidfile.split()[0], "running",
                          pidfile.replace("pidfile=", ""))
    if units:
        seen = "; ".join(f"{u} {kv.get('ActiveState', '?')}" for u, kv in sorted(units.items()))
    else:
        seen = pidfile.replace("pidfile=", "pid file ") + " (not that daemon)" if pidfile \
            else f"no pid file /run/{name}.pid"
    if name in ck.facts.processes:
        seen += f"; a process named {name} runs, but not as the host's service"
    if "libvirtd" not in ck.plan.handlers:
        ck.plan.handlers.append("libvirtd")
    return ck.outcome(CHANGE, "", "running", f"not running ({seen})")


@register(
    "listening",
    body={
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "address": STR,
        "listening": {"type": "boolean"},
    },
    required=("port",),
)
def k_listening(ck: Check) -> CheckOutcome:
    """Check a port is (or is not) listening, on the given address when set."""
    port = str(ck.body["port"])
    socks = sorted(s for s in ck.facts.listening if s.rsplit(":", 1)[-1] == port)
    want = bool(ck.body.get("listening", True))
    where = ck.body.get("address")
    ok = (bool(socks) == want) and (
        not want or not where or any(s.startswith(f"{where}:") for s in socks)
    )
    expected = f"{where or '*'}:{port} listening" if want else f"nothing on :{port}"
    if ok:
        return ck.outcome(COMPLIANT, "", expected, ", ".join(socks) or "none")
    # fixed by (re)starting the daemon with its new configuration; checked again after
    if "libvirtd" not in ck.plan.handlers:
        ck.plan.handlers.append("libvirtd")
    return ck.outcome(CHANGE, "", expected, ", ".join(socks) or "none")
