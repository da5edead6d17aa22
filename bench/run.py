"""metalctl benchmarks, measured side by side in one run on one emulated rack.

    .venv/bin/python bench/run.py [discovery,memory,enrollment]   (or: bash bench/run.sh)

Builds the bench rack (20 Redfish BMCs x 5 systems = 100 systems, 10 IPMI BMCs,
20 dead addresses in the scanned ranges) on 127.30.0.0/16 with a standalone
Ironic, then prints ratios:

* discovery: concurrent metalctl vs a sequential scan of the same ranges, and
  concurrent wall time vs the slowest single BMC;
* memory: peak RSS of discovery over 4x more addresses vs 1x (flat = ~1.0);
* enrollment: metalctl (concurrent, matching) vs one-by-one creation exactly as
  ``openstack baremetal create`` does it (ironicclient ``create_resources``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metalctl import discover, enroll
from metalctl.budget import Budget
from metalctl.credentials import resolve
from metalctl.ironic import Ironic, IronicConfig
from metalctl.netaddrs import parse_targets
from metalctl_lab import rack

#: Redfish BMCs answer each request after 50..250 ms (spread across BMCs; the last is the
#: slowest), a healthy-BMC range per reference/provisioning-anchors.md §4.3.
#: METALCTL_BENCH_SMOKE=1: the smallest rack, for the test that keeps the bench working
SMOKE = os.environ.get("METALCTL_BENCH_SMOKE") == "1"
SPEC = rack.RackSpec(octet=30, redfish_bmcs=2 if SMOKE else 20, systems_per_bmc=2 if SMOKE else 5,
                     ipmi_bmcs=1 if SMOKE else 10, libvirt_domains=0, dead=1 if SMOKE else 10,
                     latency_ms=(50.0, 250.0),
                     db=os.environ.get("METALCTL_BENCH_DB", "postgresql"))
ONE_BY_ONE_FULL_SAMPLE = 2 if SMOKE else 20
BUDGET = Budget(connect_timeout_s=2, read_timeout_s=20, attempts=2, concurrency=64)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_discovery(lab, creds):
    targets = parse_targets(lab.ranges)
    conc = discover.DiscoverOptions(verify=lab.ca_bundle, budget=BUDGET)
    seq = discover.DiscoverOptions(verify=lab.ca_bundle,
                                   budget=Budget(**{**BUDGET.__dict__, "concurrency": 1}))
    discover.discover(targets, creds, conc)  # warm-up: TLS, bcrypt, emulator caches
    recs_c, t_conc = timed(lambda: discover.discover(targets, creds, conc))
    recs_s, t_seq = timed(lambda: discover.discover(targets, creds, seq))
    # the slowest single BMC that answered, each measured alone (probe, login and all its
    # systems). A record's duration_s covers one system without the login, and a dead
    # address is no BMC at all: comparing with either once read "541x".
    answered = sorted({r.address for r in recs_s if r.status.value == "ok"})
    alone: dict[str, float] = {}
    for address in answered:
        recs, alone[address] = timed(
            lambda a=address: discover.discover(parse_targets([a]), creds, conc))
        assert recs, address
        assert all(r.status.value == "ok" for r in recs), recs
    slowest_addr = max(alone, key=alone.get)
    t_slowest = alone[slowest_addr]
    ok = sum(r.status.value == "ok" for r in recs_c)
    assert ok == sum(r.status.value == "ok" for r in recs_s)
    return {"addresses": sum(t.size for t in targets), "systems_found": ok,
            "concurrent_s": round(t_conc, 2), "sequential_s": round(t_seq, 2),
            "speedup_vs_sequential": round(t_seq / t_conc, 1),
            "slowest_bmc": slowest_addr, "slowest_bmc_alone_s": round(t_slowest, 2),
            "concurrent_over_slowest_bmc": round(t_conc / t_slowest, 2)}


MEM_CHILD = """
import resource, sys
from metalctl import discover
from metalctl.budget import Budget
from metalctl.credentials import resolve
from metalctl.netaddrs import parse_targets
creds = resolve("lab", __import__("pathlib").Path(sys.argv[1]), interactive=False)
recs = discover.discover(parse_targets(sys.argv[3:]), creds, discover.DiscoverOptions(
    verify=sys.argv[2], budget=Budget(connect_timeout_s=0.5, read_timeout_s=5, attempts=1,
                                      concurrency=64)))
print(len(recs), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_memory(lab):
    """Peak RSS scanning 1x vs 4x the addresses (the extra ones dead: pure scan state)."""
    out = {}
    for label, ranges in (("1x", [f"127.{SPEC.octet}.1.0/24"]),
                          ("4x", [f"127.{SPEC.octet}.0.0/22"])):
        proc = subprocess.run([sys.executable, "-c", MEM_CHILD, lab.credentials_file,
                               lab.ca_bundle, *ranges], capture_output=True, text=True,
                              check=True)
        n, rss_kib = proc.stdout.split()
        out[label] = {"addresses_scanned": int(n), "peak_rss_mib": round(int(rss_kib) / 1024, 1)}
    out["rss_ratio_4x_over_1x"] = round(out["4x"]["peak_rss_mib"] / out["1x"]["peak_rss_mib"],
                                        2)
    return out


def _wipe(ir):
    for n in ir.nodes():
        ir.client.node.delete(n["uuid"])


def bench_enrollment(lab, creds):
    from ironicclient.v1 import create_resources

    records = [r for r in discover.discover(parse_targets(lab.ranges), creds,
                                            discover.DiscoverOptions(verify=lab.ca_bundle,
                                                                     budget=BUDGET))
               if r.status.value == "ok"]
    ir = Ironic(IronicConfig(url=lab.ironic_url)).connect()
    opts = enroll.EnrollOptions(manage=False, verify_ca=lab.ca_bundle,
                                budget=Budget(concurrency=32, deadline_s=600))
    desired = enroll.desired_from_records(records, {"lab": creds}, opts)
    # one-by-one, as `openstack baremetal create nodes.json` does: POST node, then ports
    body = {"nodes": [{"driver": d.driver, "name": d.name, "resource_class": "baremetal",
                       "driver_info": {**d.driver_info,
                                       d.password_field: d.password.reveal()},
                       "properties": d.properties,
                       "ports": [{"address": m} for m in d.macs]} for d in desired]}
    _wipe(ir)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "nodes.json")
        path.write_text(json.dumps(body))
        os.chmod(path, 0o600)
        _, t_serial = timed(lambda: create_resources.create_resources(ir.client, [str(path)]))
    _wipe(ir)
    res, t_conc = timed(lambda: enroll.enroll(desired, ir, opts))
    assert all(r.action.value == "created" for r in res), [r.error for r in res if r.error][:3]
    _, t_rerun = timed(lambda: enroll.enroll(desired, ir, opts))
    _wipe(ir)
    # full enrollment (to 'manageable': Ironic verifies every BMC), one by one as an
    # operator script does it: `baremetal create` then `baremetal node manage --wait`
    # (ironicclient's default 2 s poll), on a sample; metalctl on all nodes
    sample = body["nodes"][:ONE_BY_ONE_FULL_SAMPLE]

    def one_by_one_full() -> None:
        for node in sample:
            ports = node["ports"]
            created = ir.client.node.create(**{k: v for k, v in node.items() if k != "ports"})
            for port in ports:
                ir.client.port.create(node_uuid=created.uuid, address=port["address"])
            ir.client.node.set_provision_state(created.uuid, "manage")
            ir.client.node.wait_for_provision_state(created.uuid, "manageable", timeout=600)

    _, t_serial_full = timed(one_by_one_full)
    _wipe(ir)
    full = enroll.EnrollOptions(verify_ca=lab.ca_bundle, budget=Budget(concurrency=32,
                                                                       deadline_s=600))
    res_full, t_full = timed(lambda: enroll.enroll(desired, ir, full))
    manageable = sum(r.provision_state == "manageable" for r in res_full)
    n = len(desired)
    serial_full_rate = len(sample) / t_serial_full
    return {"nodes": n, "ports": sum(len(d.macs) for d in desired),
            "create_only": {"one_by_one_s": round(t_serial, 2), "metalctl_s": round(t_conc, 2),
                            "one_by_one_nodes_per_s": round(n / t_serial, 1),
                            "metalctl_nodes_per_s": round(n / t_conc, 1),
                            "ratio": round(t_serial / t_conc, 1)},
            "to_manageable": {"one_by_one_sample": len(sample),
                              "one_by_one_s": round(t_serial_full, 2),
                              "one_by_one_nodes_per_s": round(serial_full_rate, 2),
                              "metalctl_s": round(t_full, 2),
                              "metalctl_nodes_per_s": round(n / t_full, 2),
                              "reached_manageable": manageable,
                              "ratio": round((n / t_full) / serial_full_rate, 1)},
            "idempotent_rerun_s": round(t_rerun, 2)}


def main() -> int:
    directory = Path(os.environ.get("METALCTL_BENCH_DIR", Path.cwd() / ".lab" / "bench"))
    print(f"bench: starting rack in {directory} ...", file=sys.stderr)
    only = set(sys.argv[1].split(",")) if len(sys.argv) > 1 else {"discovery", "memory",
                                                                   "enrollment"}
    lab = rack.up(SPEC, directory, install=False)
    try:
        creds = resolve("lab", Path(lab.credentials_file), interactive=False)
        report = {}
        if "discovery" in only:
            report["discovery"] = bench_discovery(lab, creds)
        if "memory" in only:
            report["memory"] = bench_memory(lab)
        if "enrollment" in only:
            report["enrollment"] = bench_enrollment(lab, creds)
        report["bench_process_peak_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    finally:
        rack.down(directory)
    print(json.dumps(report, indent=2))
    summarise(report)
    return 0


def summarise(report: dict) -> None:
    if "discovery" in report:
        d = report["discovery"]
        print(f"discovery: {d['speedup_vs_sequential']}x faster than sequential "
              f"(target >= 10x); {d['concurrent_over_slowest_bmc']}x the slowest BMC alone")
    if "memory" in report:
        m = report["memory"]
        print(f"memory: 4x addresses -> {m['rss_ratio_4x_over_1x']}x peak RSS (flat ~ 1.0)")
    if "enrollment" in report:
        e = report["enrollment"]
        print(f"enrollment to manageable: {e['to_manageable']['ratio']}x the one-by-one rate "
              f"(target >= 4x); create-only {e['create_only']['ratio']}x "
              f"(bounded by the one Ironic API process); re-run {e['idempotent_rerun_s']}s")


if __name__ == "__main__":
    sys.exit(main())
