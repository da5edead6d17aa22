"""Registration: a reinstalled host's old records removed, the service record waited
for, the compute mapped into its cell, and nova-compute's own log read when it fails.

Anchors such as kolla-ansible only say "failed to register" after 20 retries; here a
failure quotes the line of nova-compute's log that says why.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from metalctl import poll, ssh
from metalctl.errors import HostError, WaitTimeout
from metalctl.handoff.nova_api import NovaApi
from metalctl.handoff.site import CellMapping

#: the line of a nova log that says why it gave up or misbehaves: a CRITICAL record, the
#: exception that closes an ERROR traceback, or the resource tracker's config complaint
#: (nova-compute 34 keeps running and "up" after each of these; LAB.md)
_FATAL = re.compile(r" (?:CRITICAL \S+ .*|ERROR \S+ (?:nova\.exception\.\S+|\w+(?:Error|"
                    r"Exception)\b|Invalid '\[compute\].*).*)$")
_INVALID = re.compile(r"Invalid '\[\w+\] \w+' config.*$")


def log_failure(text: str) -> str | None:
    """The first line of a nova-compute log that says why it failed (without the
    timestamp and pid), or None."""
    for line in text.splitlines():
        if m := _INVALID.search(line):
            return m.group(0).strip()
        if m := _FATAL.search(line):
            return m.group(0).strip()
    return None


#: between two looks at Nova's answers (each is one cheap GET)
POLL_S = 0.5
LOG_EVERY_S = 2.0


class RegistrationFailed(HostError):
    """nova-compute did not register; ``log_line`` is its own reason when it gave one."""


def remove_earlier_install(api: NovaApi, host: str, compute_id: str | None) -> list[str]:
    """A host Nova knows but which has no node identity (``compute_id``) was reinstalled:
    nova-compute would refuse to start next to its old records. Delete the old compute
    service (Nova deletes its compute nodes and their resource providers) and any
    provider left behind. Returns what was removed, as notes.
    """
    old = api.service(host)
    if old is None or compute_id:
        return []
    hypervisors = api.hypervisors(host)
    api.delete_service(old["id"])
    notes = [f"reinstalled: removed the earlier compute service {old['id']} of {host}"]
    for hv in hypervisors:
        if api.provider(hv["id"]) is not None:
            api.delete_provider(hv["id"])
        notes.append(f"reinstalled: removed the earlier resource provider {hv['id']} "
                     f"({hv['hypervisor_hostname']})")
    return notes


def wait_service(api: NovaApi, host: str, timeout_s: float, read_log: Callable[[], str],
                 started_at: float) -> dict[str, Any]:
    """Wait until Nova lists ``host``'s nova-compute ``up`` and, when ``started_at`` is
    set (a restart of a known service), reporting after it.

    Raises:
        RegistrationFailed: the log gave a reason, or the time ran out (with the log's
            last line).
    """
    next_log = 0.0

    def up() -> dict[str, Any] | None:
        nonlocal next_log
        svc = api.service(host)
        if svc and svc["state"] == "up" and (not started_at or _reported_since(svc, started_at)):
            return svc
        if time.monotonic() >= next_log:
            # the log costs a round trip to the host: read it every LOG_EVERY_S, not per poll
            _raise_failed(host, read_log())
            next_log = time.monotonic() + LOG_EVERY_S
        return None

    try:
        return poll.wait_for(up, timeout_s=timeout_s, interval_s=POLL_S,
                             what=f"host {host}: nova-compute up")
    except WaitTimeout:
        text = read_log()  # the log as it ends at the deadline
        line = _raise_failed(host, text)
        last = (text.strip().splitlines() or ["(its log is empty)"])[-1]
        raise RegistrationFailed(host=host, reason=f"nova-compute not up within "
                                 f"{timeout_s:g} s; its log ends: {last[-300:]}",
                                 log_line=line) from None


def _raise_failed(host: str, text: str) -> str | None:
    """Raise when nova-compute's log says it failed; else its configuration complaint
    (judged by verify), if any.

    Raises:
        RegistrationFailed: the log's failure line.
    """
    line = log_failure(text)
    if line and not _INVALID.search(line):
        raise RegistrationFailed(host=host, reason=f"nova-compute failed: {line}",
                                 log_line=line)
    return line


def _reported_since(svc: dict[str, Any], started_at: float) -> bool:
    """True when the record was updated after ``started_at`` (a wall-clock time): a
    restarted compute is listed ``up`` on its previous heartbeat for a minute."""
    from datetime import datetime, timezone  # noqa: PLC0415

    updated = svc.get("updated_at")
    if not updated:
        return False
    when = datetime.fromisoformat(updated.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp() >= started_at - 1


def map_into_cell(cell: CellMapping, opts: Any) -> str | None:
    """``discover_hosts`` on the controller over SSH (returns its output), or nothing
    for ``interval`` (the scheduler maps new computes itself).

    Raises:
        HostError: the controller could not be reached or the command failed.
    """
    if cell.method != "discover_hosts" or not cell.controller:
        return None
    target = ssh.SshTarget.parse(cell.controller, key_file=opts.key_file,
                                 known_hosts=opts.known_hosts, sudo=opts.sudo,
                                 connect_timeout_s=opts.connect_timeout_s)
    conn = ssh.connect(target)
    try:
        return ssh.run_script(conn, target, cell.command + "\n").strip()
    finally:
        conn.close()


def wait_hypervisor(api: NovaApi, host: str, timeout_s: float) -> dict[str, Any]:
    """Wait until the compute is mapped into a cell: its hypervisor is listed.

    Raises:
        RegistrationFailed: not listed within ``timeout_s``.
    """
    try:
        found = poll.wait_for(lambda: api.hypervisors(host), timeout_s=timeout_s,
                              interval_s=POLL_S, what=f"{host}: hypervisor listed",
                              ready=bool)
    except WaitTimeout:
        raise RegistrationFailed(host=host, reason=f"no hypervisor listed for {host} "
                                 f"within {timeout_s:g} s: not mapped into a cell "
                                 "(discover_hosts)", log_line=None) from None
    return found[0]
