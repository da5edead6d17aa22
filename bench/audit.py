"""Audit benchmark, side by side in one run on the same SSH hosts.

    .venv/bin/python bench/audit.py        (also run by bash bench/run.sh)

Starts 10 SSH test hosts (network namespaces, own /etc, their own sshd) and prints:

* per host: metalctl's audit (one SSH connection, every fact in one round trip, local
  evaluation) against a one-session-per-check scan of the same rules (how InSpec-style
  remote scanning behaves: a connection and a command per control), with SSH
  connections counted on both sides;
* fleet: audit wall time for 10 hosts over 1 host (target <= 2x: bounded by the
  slowest host, not by the sum).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from metalctl import hosts, ssh
from metalctl.audit import run as audit
from metalctl.rules import catalogue as rules_mod
from metalctl.rules import engine
from metalctl_lab.hosts import HostLab

HOSTS = int(os.environ.get("METALCTL_BENCH_AUDIT_HOSTS", "10"))
NET = 203


def cpu_seconds() -> float:
    """Machine-wide busy CPU time (all processes: metalctl, every host's sshd and shell)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def per_check_scan(host: hosts.HostSpec, rules, opts: audit.AuditOptions) -> float:
    """One connection + one gathering round trip per rule (InSpec-style)."""
    target = hosts.ssh_target(host, opts)
    t = time.perf_counter()
    for rule in rules:
        conn = ssh.connect(target)
        try:
            hosts.gather_facts(conn, target, engine.gather_spec([rule]), host.name)
        finally:
            conn.close()
    return time.perf_counter() - t


def main() -> int:
    rules = [r for r in rules_mod.load() if "bmc" not in r.platforms]
    with tempfile.TemporaryDirectory(prefix="metalctl-bench-audit-") as d:
        lab = HostLab(Path(d), net=NET)
        try:
            for i in range(1, HOSTS + 1):
                lab.start(i)
            fleet = [hosts.HostSpec(name=f"h{i}", ssh=f"root@{lab.address(i)}",
                                    mgmt_address=lab.address(i))
                     for i in range(1, HOSTS + 1)]
            opts = audit.AuditOptions(site=hosts.load_site(None), key_file=lab.client_key,
                                      known_hosts=lab.known_hosts)
            audit.audit(fleet[:1], rules, opts)  # warm-up (page cache, sshd first start)
            label = f"root@{fleet[0].target_host}:22"
            c0 = ssh.STATS.connections.get(label, 0)
            t = time.perf_counter()
            one = audit.audit(fleet[:1], rules, opts)
            t_one = time.perf_counter() - t
            sessions_metalctl = ssh.STATS.connections.get(label, 0) - c0
            c1 = ssh.STATS.connections.get(label, 0)
            t_per_check = per_check_scan(fleet[0], rules, opts)
            sessions_per_check = ssh.STATS.connections.get(label, 0) - c1
            cpu0, t = cpu_seconds(), time.perf_counter()
            report_fleet = audit.audit(fleet, rules, opts)
            t_fleet, cpu_fleet = time.perf_counter() - t, cpu_seconds() - cpu0
        finally:
            lab.down()
    report = {
        "rules": len(rules), "hosts": HOSTS,
        "one_host": {"metalctl_s": round(t_one, 3), "ssh_sessions": sessions_metalctl,
                     "per_check_s": round(t_per_check, 3),
                     "per_check_ssh_sessions": sessions_per_check,
                     "speedup": round(t_per_check / t_one, 1)},
        "fleet": {"one_host_s": round(t_one, 3), "ten_hosts_s": round(t_fleet, 3),
                  "ratio": round(t_fleet / t_one, 2),
                  # every host runs on this machine's CPUs: busy CPU / cores is the floor
                  "cpu_busy_s": round(cpu_fleet, 3), "cores": os.cpu_count(),
                  "cpu_floor_s": round(cpu_fleet / (os.cpu_count() or 1), 3),
                  "errors": [h.host for h in report_fleet.hosts if h.error],
                  "sessions_per_host": sorted({h.ssh_sessions for h in report_fleet.hosts})},
        "results_per_host": len(one.hosts[0].results),
    }
    print(json.dumps(report, indent=2))
    o, f = report["one_host"], report["fleet"]
    print(f"audit, one host, {len(rules)} rules: {o['metalctl_s']} s with {o['ssh_sessions']} "
          f"SSH session vs {o['per_check_s']} s with {o['per_check_ssh_sessions']} sessions "
          f"one-per-check = {o['speedup']}x")
    print(f"audit fleet: {HOSTS} hosts {f['ten_hosts_s']} s vs 1 host {f['one_host_s']} s = "
          f"{f['ratio']}x (target <= 2x); sessions per host {f['sessions_per_host']}; "
          f"the 10 hosts share this machine's {f['cores']} cores: {f['cpu_busy_s']} CPU-s "
          f"busy, floor {f['cpu_floor_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
