"""``metalctl run``'s own cost per node, 50 nodes against 500 (flat = ratio ~1.0).

    .venv/bin/python bench/pipeline.py        (also the last step of bash bench/run.sh)

Cheap peers only: 10 sushy-tools BMCs (fake driver) x 50 systems on 127.31.0.0/16 and a
standalone Ironic; the pipeline runs discover -> enroll (``manage: false``: Ironic's own
power checks are Ironic's cost, not metalctl's). Each size runs in a fresh process so its
peak RSS is its own; Ironic is emptied between sizes. Printed per node, side by side:
metalctl's CPU seconds (user+sys of the metalctl process only), peak RSS growth over the
process after imports, and the scheduler's own loop CPU time (deciding and recording
each step, not waiting for stages).
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

#: METALCTL_BENCH_SMOKE=1: the smallest sizes, for the test that keeps the bench working
SMOKE = os.environ.get("METALCTL_BENCH_SMOKE") == "1"
SIZES = (4, 8) if SMOKE else (50, 500)
PER_BMC = 2 if SMOKE else 50


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(n: int, lab_dir: Path, work: Path) -> dict:
    """One run of the pipeline over ``n`` nodes (in this fresh process)."""
    from metalctl import credentials
    from metalctl import run as pipeline
    from metalctl.ironic import Ironic, IronicConfig
    from metalctl.store import Store
    from metalctl_lab.spec import LabState

    state = LabState.load(lab_dir)
    assert state is not None
    bmcs = n // PER_BMC
    rack_path = work / f"rack-{n}.yaml"
    rack_path.write_text(
        f"name: bench-{n}\nbmc:\n  ranges: ['127.31.1.1-{bmcs}']\n  credentials: [lab]\n"
        f"  protocols: [redfish]\nironic:\n  manage: false\nuntil: enroll\n"
        "concurrency: {discover: 64, enroll: 32}\n")
    rack = pipeline.load_rack(rack_path)
    creds = credentials.resolve("lab", Path(str(state.credentials_file)), interactive=False)
    ironic = Ironic(IronicConfig(url=state.ironic_url)).connect()
    inputs = pipeline.StageInputs(credentials={"lab": creds}, verify=str(state.ca_bundle),
                                  ironic=ironic)
    base = rss_kib()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with Store(work / f"store-{n}.db").open() as store:
        report = pipeline.run(rack, pipeline.RunOptions(inputs=inputs), store=store)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "ok": report.counts().get("ok", 0), "counts": report.counts(),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 3),
            "rss_growth_kib": peak - base, "overhead_s": round(report.scheduler_overhead_s, 4)}


def main() -> int:
    from metalctl.ironic import Ironic, IronicConfig
    from metalctl_lab import rack

    spec = rack.RackSpec(octet=31, redfish_bmcs=max(SIZES) // PER_BMC,
                         systems_per_bmc=PER_BMC, ipmi_bmcs=0, libvirt_domains=0, dead=0,
                         db=os.environ.get("METALCTL_BENCH_DB", "postgresql"))
    with tempfile.TemporaryDirectory(prefix="metalctl-bench-pipeline-") as tmp:
        lab_dir, work = Path(tmp) / "lab", Path(tmp)
        os.chmod(tmp, 0o755)  # PostgreSQL (Ironic's database) runs as its own user
        state = rack.up(spec, lab_dir, install=False)
        try:
            ir = Ironic(IronicConfig(url=state.ironic_url)).connect()
            rows = []
            for n in SIZES:
                for node in ir.nodes():
                    ir.client.node.delete(node["uuid"])
                out = subprocess.run([sys.executable, __file__, "--child", str(n),
                                      str(lab_dir), str(work)], capture_output=True,
                                     text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            rack.down(lab_dir)
    small, big = rows
    for r in rows:
        if r["ok"] != r["n"]:
            print(f"WARNING: {r['n']} nodes: {r['counts']}", file=sys.stderr)

    def per(r: dict, k: str) -> float:
        return r[k] / r["n"]

    print(f"pipeline (discover -> enroll, fake Redfish + Ironic): {small['n']} vs {big['n']} "
          "nodes, per node")
    print(f"{'':28}{small['n']:>12}{big['n']:>12}{'ratio':>8}")
    for label, key, scale, unit in (("metalctl CPU", "cpu_s", 1000, "ms"),
                                    ("peak RSS growth", "rss_growth_kib", 1, "KiB"),
                                    ("scheduler overhead", "overhead_s", 1000, "ms"),
                                    ("wall time", "wall_s", 1000, "ms")):
        a, b = per(small, key) * scale, per(big, key) * scale
        print(f"{label + ' (' + unit + ')':28}{a:12.2f}{b:12.2f}{(b / a if a else 0):8.2f}x")
    print(json.dumps({"pipeline": rows}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main())
