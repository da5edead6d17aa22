"""The host side of the hand-off, over one SSH session: read what is there, write
nova.conf through the rules engine's apply script (atomic write, backup under
/var/backups/metalctl, a re-run that finds the same text writes nothing), start
nova-compute under its distribution's service name, and read its log.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from metalctl import ssh
from metalctl.credentials import MASK
from metalctl.errors import HostDropped, HostError
from metalctl.handoff.novaconf import NovaConf
from metalctl.rules import apply as rules_apply
from metalctl.rules.plan import FileChange, RulePlan

#: nova-compute's service name per distribution family (RDO's packaging on RHEL)
SERVICE = {"rhel": "openstack-nova-compute", "debian": "nova-compute"}


@dataclass
class HostState:
    """What the host has before the hand-off touches it."""

    family: str            # rhel | debian
    init: str              # systemd | sysv
    nova_group: bool       # the nova package's group exists (file owner root:nova)
    compute_id: str | None  # state_path/compute_id: the node identity Nova knows it by
    running: bool
    log_size: int          # nova-compute's log before we start it (read from here on)
    libvirt_memory_mb: int | None
    conf: str | None       # the current nova.conf, None when absent (secrets inside)

    @property
    def service(self) -> str:
        return SERVICE[self.family]


def _section(out: str, name: str) -> str:
    m = re.search(rf"^### {name}\n(.*?)(?=^### |\Z)", out, re.S | re.M)
    return m.group(1).strip() if m else ""


def read_state(conn: Any, target: ssh.SshTarget, conf_path: str, state_path: str,
               log_path: str, label: str) -> HostState:
    """Everything the hand-off needs to know about the host, in one round trip.

    Raises:
        HostError: the read script failed (HostDropped: the session ended).
    """
    q = shlex.quote
    script = f"""
echo '### os'; ( . /etc/os-release; echo "$ID $ID_LIKE" )
echo '### init'; [ -d /run/systemd/system ] && echo systemd || echo sysv
echo '### group'; getent group nova >/dev/null && echo yes || echo no
echo '### compute_id'; cat {q(state_path + '/compute_id')} 2>/dev/null; echo
echo '### running'
if [ -d /run/systemd/system ]; then
  for s in nova-compute openstack-nova-compute; do systemctl is-active --quiet $s && echo yes; done
else
  for s in nova-compute openstack-nova-compute; do
    [ -x /etc/init.d/$s ] && /etc/init.d/$s status >/dev/null 2>&1 && echo yes; done
fi
echo '### log'; stat -c %s {q(log_path)} 2>/dev/null || echo 0
echo '### memory'; virsh -c qemu:///system nodeinfo 2>/dev/null | awk '/Memory size/ {{print $3}}'
echo '### conf'; [ -f {q(conf_path)} ] && base64 -w0 {q(conf_path)} && echo || echo absent
"""
    out = ssh.run_script(conn, target, script)
    words = _section(out, "os").split()
    family = "rhel" if {"rhel", "fedora", "centos"} & set(words) else "debian"
    conf = _section(out, "conf")
    memory = _section(out, "memory")
    return HostState(
        family=family, init=_section(out, "init") or "sysv",
        nova_group=_section(out, "group") == "yes",
        compute_id=_section(out, "compute_id") or None,
        running="yes" in _section(out, "running"),
        log_size=int(_section(out, "log") or 0),
        libvirt_memory_mb=int(memory) // 1024 if memory.isdigit() else None,
        conf=None if conf in ("absent", "") else base64.b64decode(conf).decode("utf-8",
                                                                               "replace"))


def mask(text: str, conf: NovaConf) -> str:
    """``text`` (a nova.conf read from a host) with the secrets ``conf`` knows masked."""
    for secret in conf.secrets():
        value = secret.reveal()
        if len(value) >= 3:
            text = text.replace(value, MASK).replace(quote(value, safe=""), MASK)
    return text


def plan_file(state: HostState, conf: NovaConf, conf_path: str) -> RulePlan:
    """The rules-engine plan that writes nova.conf (empty when it is already right)."""
    plan = RulePlan(host="")
    new = conf.reveal()
    if state.conf != new:
        # Debian/RDO packaging: root:nova 0640; without the nova group, root only
        group, mode = ("nova", "0640") if state.nova_group else ("root", "0600")
        old = mask(state.conf, conf) if state.conf is not None else None
        plan.files[conf_path] = FileChange(conf_path, old, new, mode, "root", group)
    return plan


def diff(state: HostState, conf: NovaConf, conf_path: str) -> str:
    """The change as a unified diff with every secret masked (``--check``)."""
    plan = plan_file(state, conf, conf_path)
    change = plan.files.get(conf_path)
    if change is None:
        return ""
    shown = FileChange(change.path, change.old, conf.masked(), change.mode)
    return shown.diff()


def write(conn: Any, target: ssh.SshTarget, plan: RulePlan, init: str, label: str) -> list[str]:
    """Carry the plan out (one round trip); returns the steps the host reported done.

    Raises:
        HostDropped: the session ended mid-apply (re-run converges).
        HostError: a step failed.
    """
    result = ssh.exec_script(conn, target, rules_apply.script(plan, init))
    done = rules_apply.completed(result.stdout)
    if result.exited == -1:
        raise HostDropped(host=label, reason=f"connection lost writing nova.conf after "
                                             f"{len(done)} step(s); re-run to converge")
    if result.exited != 0:
        raise HostError(host=label, reason=f"writing nova.conf failed (exit {result.exited}):"
                                           f" {result.stderr.strip()[-300:]}")
    return done


def start_service(conn: Any, target: ssh.SshTarget, state: HostState, restart: bool,
                  label: str) -> None:
    """Enable nova-compute and (re)start it under its distribution's service name.

    Raises:
        HostError: the service manager failed (its output is in the message).
    """
    svc = state.service
    action = "restart" if restart else "start"
    if state.init == "systemd":
        command = f"systemctl enable --quiet {svc} && systemctl {action} {svc}"
    else:
        command = (f"update-rc.d {svc} defaults >/dev/null 2>&1 || true; "
                   f"/etc/init.d/{svc} {action}")
    result = ssh.exec_script(conn, target, command + "\n")
    if result.exited != 0:
        raise HostError(host=label, reason=f"{svc} {action} failed (exit {result.exited}): "
                                           f"{(result.stderr or result.stdout).strip()[-300:]}")


def read_log(conn: Any, target: ssh.SshTarget, log_path: str, offset: int) -> str:
    """nova-compute's log from byte ``offset`` on (what this run's start wrote)."""
    q = shlex.quote
    return ssh.run_script(conn, target, f"tail -c +{offset + 1} {q(log_path)} 2>/dev/null "
                                        "| tail -c 1048576 || true\n")
