"""Verify what the scheduler will see: Placement's inventories against the plan.

"Service up" alone proves nothing: with a ``cpu_dedicated_set`` naming a CPU the host
lacks, nova-compute 34 stays ``up``, logs ``Invalid '[compute] cpu_dedicated_set'
config`` on every resource update, and Placement keeps the old inventory (LAB.md). So
the provider is found through the hypervisor (its id is the provider's uuid; its
``hypervisor_hostname`` is libvirt's host name, not ``[DEFAULT] host``) and compared:

* ``PCPU`` total = |cpu_dedicated_set|;
* ``VCPU`` total = |cpu_shared_set|, allocation_ratio = ``cpu_allocation_ratio`` (or
  ``initial_cpu_allocation_ratio``, 4.0 in nova 34, which applies to a new provider);
* ``MEMORY_MB`` reserved = ``reserved_host_memory_mb``; total against libvirt's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metalctl import cpulist
from metalctl.errors import WaitTimeout
from metalctl.handoff.model import Mismatch
from metalctl.handoff.nova_api import NovaApi
from metalctl.handoff.novaconf import NovaConf
from metalctl.poll import wait_for

INITIAL_CPU_ALLOCATION_RATIO = 4.0  # nova 34 [DEFAULT] initial_cpu_allocation_ratio
RESERVED_HOST_MEMORY_MB = 512       # nova 34 [DEFAULT] reserved_host_memory_mb
#: libvirt's memory total moves while a host runs (page cache, balloon: LAB.md saw
#: 7514 -> 9178 MiB in one session), and nova reads it once per resource update
MEMORY_TOLERANCE = 0.25
#: how often Placement is read while nova-compute reports its first inventories
POLL_S = 0.5


def expected(conf: NovaConf) -> dict[str, dict[str, Any]]:
    """The inventories the rendered configuration must produce (resource class ->
    field -> value)."""
    def one(section: str, option: str) -> str | None:
        values = conf.get(section, option)
        return values[-1] if values else None

    out: dict[str, dict[str, Any]] = {}
    dedicated = one("compute", "cpu_dedicated_set")
    shared = one("compute", "cpu_shared_set")
    if dedicated:
        out["PCPU"] = {"total": len(cpulist.parse(dedicated))}
    if shared:
        ratio = one("DEFAULT", "cpu_allocation_ratio") or \
            one("DEFAULT", "initial_cpu_allocation_ratio") or INITIAL_CPU_ALLOCATION_RATIO
        out["VCPU"] = {"total": len(cpulist.parse(shared)), "allocation_ratio": float(ratio)}
    reserved = one("DEFAULT", "reserved_host_memory_mb")
    out["MEMORY_MB"] = {"reserved": int(reserved) if reserved else RESERVED_HOST_MEMORY_MB}
    return out


def compare(want: dict[str, dict[str, Any]], inventories: dict[str, dict[str, Any]],
            libvirt_memory_mb: int | None) -> list[Mismatch]:
    """Every value Placement reports differently from ``want`` (and a MEMORY_MB total far
    from libvirt's)."""
    out = []
    for rc, fields in want.items():
        inv = inventories.get(rc)
        for name, value in fields.items():
            actual = inv.get(name) if inv else None
            if actual is None or (float(actual) != float(value)):
                out.append(Mismatch(rc, name, value, actual if inv else "no inventory"))
    if "VCPU" not in want and "VCPU" in inventories:
        out.append(Mismatch("VCPU", "total", "no inventory", inventories["VCPU"]["total"]))
    total = (inventories.get("MEMORY_MB") or {}).get("total")
    if libvirt_memory_mb and total and \
            abs(total - libvirt_memory_mb) > MEMORY_TOLERANCE * libvirt_memory_mb:
        out.append(Mismatch("MEMORY_MB", "total", f"about {libvirt_memory_mb} (libvirt)", total))
    return out


def wait_inventories(api: NovaApi, provider: str, want: dict[str, dict[str, Any]],
                     libvirt_memory_mb: int | None, timeout_s: float,
                     complaint: Callable[[], str | None]
                     ) -> tuple[dict, list[Mismatch], str | None]:
    """Poll the provider's inventories until they match ``want``, nova-compute complains
    about its configuration (``complaint`` returns its log line), or time runs out.

    Returns:
        The last inventories, the mismatches (empty: verified) and the log line.
    """
    def read() -> tuple[dict, list[Mismatch], str | None]:
        inventories = api.inventories(provider)
        mismatches = compare(want, inventories, libvirt_memory_mb)
        return inventories, mismatches, complaint() if mismatches else None

    try:
        return wait_for(read, timeout_s=timeout_s, interval_s=POLL_S,
                        what=f"resource provider {provider}: inventories as planned",
                        ready=lambda seen: not seen[1] or bool(seen[2]))
    except WaitTimeout as exc:
        return exc.last  # what was seen at the deadline: the mismatches say the rest
