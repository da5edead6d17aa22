"""A derived profile plan as two rich tables (the plan, and its per-NUMA-node split)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from metalctl import cpulist
from metalctl.output.render import markup_safe


def print_plan(data: dict[str, Any], notes: Console | None = None) -> None:
    """Print ``plan.to_dict()`` plus its ``bios`` section; notes go to ``notes`` (stderr)."""
    console = Console(emoji=False, highlight=False,
                      width=None if sys.stdout.isatty() else 200)
    t = Table(title=f"{data['node']}: profile {data['profile']} ({data['facts_source']} facts)",
              show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value", overflow="fold")
    t.add_row("host CPUs (reserved)", data["host_cpus"] or "-")
    t.add_row("isolated CPUs", data["isolated_cpus"] or "-")
    if data["pmd_cpus"]:
        t.add_row("OVS-DPDK PMD CPUs", data["pmd_cpus"])
    if data["offline_cpus"]:
        t.add_row("offline (SMT off)", data["offline_cpus"])
    t.add_row("kernel arguments", " ".join(data["kernel_args"]) or "-")
    if data["tuned"].get("profile"):
        t.add_row("tuned", data["tuned"]["profile"] + "".join(
            f"  {k}={v}" for k, v in (data["tuned"].get("variables") or {}).items()))
    for section, opts in data["nova"].items():
        for key, value in opts.items():
            t.add_row(markup_safe(f"nova [{section}] {key}"),
                      markup_safe(json.dumps(value) if not isinstance(value, str) else value))
    t.add_row("flavor extra specs", " ".join(f"{k}={v}"
                                             for k, v in data["flavor_extra_specs"].items()))
    for v in data["vfs"]:
        t.add_row(f"VFs {v['nic']}", f"{v['vfs']} of {v['max_vfs']} (NUMA {v['numa_node']}, "
                                     f"{v['physical_network']})")
    if data["dpdk"]:
        t.add_row("OVS-DPDK socket-mem", data["dpdk"]["socket_mem"])
    bios_section = data["bios"]
    if "attributes" in bios_section:
        t.add_row(f"BIOS ({bios_section['vendor']})",
                  " ".join(f"{k}={v}" for k, v in bios_section["attributes"].items()))
    else:
        t.add_row("BIOS intent", " ".join(f"{k}={v}" for k, v in bios_section["intent"].items())
                  + f"  ({bios_section.get('error')})")
    if data["workload"]:
        w = data["workload"]["request"]
        t.add_row("workload fit", f"{data['workload']['guests_per_host']} guest(s) per host of "
                  + ", ".join(f"{k}={v}" for k, v in w.items()))
    console.print(t)
    n = Table(title="per NUMA node", header_style="bold")
    for h in ("node", "host", "PMD", "guest", "memory MiB", "hugepages", "DPDK pages", "VFs"):
        n.add_column(h, overflow="fold")
    for p in data["numa"]:
        n.add_row(str(p["node"]), cpulist.format(p["host_cpus"]) or "-",
                  cpulist.format(p["pmd_cpus"]) or "-", cpulist.format(p["guest_cpus"]) or "-",
                  str(p["memory_mib"]), str(p["hugepages"]), str(p["dpdk_reserved_pages"]),
                  str(p["vfs"]))
    console.print(n)
    for note in data["notes"]:
        (notes or Console(stderr=True)).print(f"note: {note}")


