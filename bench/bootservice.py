"""Boot service benchmark: 1,000 simulated nodes boot at once on loopback (127.98.1.x).

    .venv/bin/python bench/bootservice.py [--nodes 1000] [--window-s 10]

The service runs in its own process (as ``metalctl serve`` does) on 127.98.1.1 with
2 x NODES active installs in a fresh state directory; the simulated nodes are asyncio
clients on 127.98.1.2 in this process. Each node does what a PXE-booting machine and
an attacker next to it would:

1. ``GET /boot/<mac>.ipxe`` and takes its kickstart ticket from the script (200);
2. ``GET /ks/<node>`` with a wrong ticket (403, nothing served);
3. ``GET /ks/<node>`` with its ticket (200, an 8 KiB kickstart);
4. ``GET /ks/<node>`` with the same ticket again (403: used up);

and NODES/10 unknown MACs ask for a script (200, local disk). Two phases:

* **burst**: every node starts at the same instant (the worst case: nothing real boots
  this synchronously; PXE ROMs, DHCP and kernel loads spread a rack over seconds);
* **paced**: the nodes start evenly over ``--window-s`` (a rack powered on by its BMCs).

Printed per phase: requests, wrong answers (must be 0), throughput, and p50/p99/max
latency per request kind and overall (connect to last byte), with the CPU time of the
service and of the simulated nodes, and the kernel's CPU pressure (on a shared machine,
the share of time something waited for a CPU). Target: p99 < 100 ms.
Every request has a 10 s timeout, every phase a 120 s cap; the server process is
stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER, CLIENT = "127.98.1.1", "127.98.1.2"
REQUEST_TIMEOUT_S = 10.0
PHASE_CAP_S = 120.0
KICKSTART = ("# bench kickstart\n" + "part / --fstype=xfs --grow\n" * 300)[:8192]


def serve(state_dir: str, nodes: int) -> None:
    """The server process: register installs, print the port, serve until stdin closes."""
    from metalctl.provision.bootservice import BootService
    from metalctl.provision.bootstate import BootFiles

    files = BootFiles("http://127.98.1.1/vmlinuz", "http://127.98.1.1/initrd.img")
    svc = BootService(SERVER, 0, Path(state_dir), max_connections=256)
    for phase in ("b", "p"):
        for i in range(nodes):
            svc.add_install(f"{phase}{i:04d}", mac(phase, i), KICKSTART, files, 3600)
    svc.start()
    print(svc.port, flush=True)
    sys.stdin.read()  # the parent closing the pipe (or dying) stops the service
    svc.stop()


def mac(phase: str, i: int) -> str:
    return f"52:54:{'0b' if phase == 'b' else '0a'}:00:{i >> 8:02x}:{i & 0xff:02x}"


async def fetch(port: int, method: str, path: str) -> tuple[int, bytes, float]:
    t0 = time.perf_counter()

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(SERVER, port, local_addr=(CLIENT, 0))
        writer.write(f"{method} {path} HTTP/1.0\r\nHost: {SERVER}\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    status, body = await asyncio.wait_for(go(), REQUEST_TIMEOUT_S)
    return status, body, (time.perf_counter() - t0) * 1000.0


async def node(port: int, phase: str, i: int, delay_s: float, lat: dict, wrong: list) -> None:
    await asyncio.sleep(delay_s)
    name, hyp = f"{phase}{i:04d}", mac(phase, i).replace(":", "-")

    def record(kind: str, got: int, want: int, ms: float) -> None:
        lat.setdefault(kind, []).append(ms)
        if got != want:
            wrong.append(f"{name} {kind}: {got} != {want}")

    status, script, ms = await fetch(port, "GET", f"/boot/{hyp}.ipxe")
    record("boot-script", status, 200, ms)
    m = re.search(rb"\?ticket=([A-Za-z0-9_-]+)", script)
    if not m:
        wrong.append(f"{name}: no ticket in the boot script")
        return
    token = m.group(1).decode()
    status, _, ms = await fetch(port, "GET", f"/ks/{name}?ticket={secrets.token_urlsafe(32)}")
    record("ks-bad-token", status, 403, ms)
    status, body, ms = await fetch(port, "GET", f"/ks/{name}?ticket={token}")
    record("ks-good-token", status, 200, ms)
    if len(body) != len(KICKSTART):
        wrong.append(f"{name}: kickstart of {len(body)} bytes")
    status, _, ms = await fetch(port, "GET", f"/ks/{name}?ticket={token}")
    record("ks-reused", status, 403, ms)


async def unknown(port: int, i: int, delay_s: float, lat: dict, wrong: list) -> None:
    await asyncio.sleep(delay_s)
    status, body, ms = await fetch(port, "GET", f"/boot/52-54-0f-00-{i >> 8:02x}-{i & 0xff:02x}"
                                                ".ipxe")
    lat.setdefault("unknown-mac", []).append(ms)
    if status != 200 or b"sanboot" not in body:
        wrong.append(f"unknown MAC {i}: {status}")


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time some task waited for a CPU, last 10 s)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
    except OSError:
        return "n/a"
    return line.split()[1].removeprefix("avg10=") + "%"


def cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default)."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def phase(port: int, tag: str, nodes: int, window_s: float, server_pid: int) -> dict:
    lat: dict[str, list[float]] = {}
    wrong: list[str] = []
    rng = random.Random(7)
    tasks = [node(port, tag, i, rng.uniform(0, window_s), lat, wrong) for i in range(nodes)]
    tasks += [unknown(port, i, rng.uniform(0, window_s), lat, wrong)
              for i in range(nodes // 10)]
    t0, server0, client0 = time.perf_counter(), cpu_s(server_pid), cpu_s()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True),
                                     PHASE_CAP_S)
    wall = time.perf_counter() - t0
    wrong += [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {"lat": lat, "wrong": wrong, "wall_s": wall, "pressure": cpu_pressure(),
            "server_cpu_s": cpu_s(server_pid) - server0, "client_cpu_s": cpu_s() - client0}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def report(name: str, res: dict) -> bool:
    everything = [ms for v in res["lat"].values() for ms in v]
    print(f"\n{name}: {len(everything)} requests in {res['wall_s']:.2f} s "
          f"({len(everything) / res['wall_s']:.0f} req/s), wrong answers: {len(res['wrong'])}")
    print(f"  CPU: boot service {res['server_cpu_s']:.2f} s "
          f"({1000 * res['server_cpu_s'] / len(everything):.2f} ms per request), "
          f"simulated nodes {res['client_cpu_s']:.2f} s; CPU pressure (others' load "
          f"included) {res['pressure']}")
    for line in res["wrong"][:5]:
        print(f"  wrong: {line}")
    print(f"  {'kind':<14} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, v in [*sorted(res["lat"].items()), ("all", everything)]:
        print(f"  {kind:<14} {len(v):>5} {pct(v, 50):>8.1f} {pct(v, 99):>8.1f} {max(v):>8.1f}")
    return not res["wrong"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--window-s", type=float, default=10.0)
    ap.add_argument("--serve", nargs=2, metavar=("STATE_DIR", "NODES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="metalctl-bench-boot-") as d:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--serve", d, str(args.nodes)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline())
            print(f"boot service pid {proc.pid} on {SERVER}:{port}: {2 * args.nodes} installs "
                  f"added in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, load "
                  f"{os.getloadavg()[0]:.2f}")
            burst = asyncio.run(phase(port, "b", args.nodes, 0.0, proc.pid))
            paced = asyncio.run(phase(port, "p", args.nodes, args.window_s, proc.pid))
        finally:
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    ok = report(f"burst ({args.nodes} nodes at once)", burst)
    ok = report(f"paced ({args.nodes} nodes over {args.window_s:.0f} s)", paced) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
