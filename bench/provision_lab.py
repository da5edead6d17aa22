"""Two lab machines at once against one, power-off to handed-off: real PXE installs, side by side.

    .venv/bin/python bench/provision_lab.py        (also a step of bash bench/run.sh)

The lab of ``metalctl lab up`` on 127.32.0.0/16 with its provisioning network 10.210.0.0/24
(two libvirt machines that really network-boot under TCG, the stand-in installer, the
boot service in metalctl's process) and the lab's Nova on it (``lab up --nova``), driven
by ``inventory/rack.lab.yaml`` to hand-off. In one run of this script:

1. one machine, from power-off: ``metalctl run --only m0`` (enroll, profile, PXE install,
   harden, audit, hand-off with its canary; the other machine is discovered and goes no
   further);
2. both machines at once: ``metalctl run --from enroll`` (m1 from power-off; m0 again,
   reinstalled, already known to Ironic).

Printed: each round's wall time, each machine's time per stage and its install's steps
(power → boot script → kickstart fetched → %pre → host keys → end → SSH with the
delivered keys), the ratios two/one of the whole pipeline and of the provision
stage, and metalctl's own share: the CPU seconds of the ``metalctl run`` process and its
children (ssh clients, the validator) per machine, against the wall time. TCG is
CPU-bound and this machine has 2 cores, so ~2x is the floor the issue names; Cobbler's
anchor is 195 servers in 1.22x one server's time, on real hardware where the installer
waits on disks and the network, not on a shared CPU. ``--json FILE`` also writes the
figures.

Last, on the installed machine m0 (unless ``--no-nova``): what nova-compute costs inside
a TCG machine. The Nova venv is on the machine's read-only Nova disk (no copy since
issue 21; ``copy_s`` is now the wait for its mount); importing nova-compute's manager and
libvirt driver is timed there and on this host, warm (the second import, byte code
compiled), with the peak RSS and the machine's available memory.
``bench/lab_compute.py`` goes on to start nova-compute and a nested guest there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METALCTL = [sys.executable, "-m", "metalctl"]
OCTET, PROVNET, BOOT_PORT = 32, 210, 8080
STEPS = ("power", "boot-script", "kickstart-fetched", "pre", "hostkeys", "end", "ssh")
STAGES = ("enroll", "profile", "provision", "harden", "audit", "handoff")


def sh(args: list[str], env: dict[str, str], timeout: float = 1800) -> str:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode not in (0, 1):  # 1: a node failed (reported below)
        sys.exit(f"{shlex.join(args[2:])}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc.stdout


def lab_env(lab: Path) -> dict[str, str]:
    env = {**os.environ, "METALCTL_LAB_DIR": str(lab)}
    out = sh([*METALCTL, "lab", "env", "--dir", str(lab)], env)
    for line in out.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def rack_file(work: Path, nova: bool = True) -> Path:
    """The lab's rack file, on this bench's lab (its BMC range); without the lab's Nova
    (``--smoke``) it stops at audit and names no Nova site."""
    text = (REPO / "inventory" / "rack.lab.yaml").read_text()
    text = text.replace("ranges: [127.10.3.1]", f"ranges: [127.{OCTET}.3.1]")
    nova_line = "  nova: ${METALCTL_LAB_DIR}/nova-site.yaml\n"
    if f"127.{OCTET}.3.1" not in text or "until: handoff" not in text or \
            nova_line not in text:
        sys.exit("inventory/rack.lab.yaml changed: update bench/provision_lab.py")
    if not nova:
        text = text.replace(nova_line, "").replace("until: handoff", "until: audit")
    path = work / "rack.yaml"
    # waivers are named relative to the rack file
    path.write_text(text.replace("../hardening/", f"{REPO}/hardening/"))
    return path


def run(rack: Path, env: dict[str, str], *args: str) -> tuple[float, dict]:
    """One ``metalctl run``: its wall time and report; the report gains ``cpu_s``, the
    CPU seconds of the run's process and everything it waited for (ssh, validators)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = sh([*METALCTL, "run", str(rack), "-o", "json", *args], env)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(out)
    report["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, report


def rows_of(report: dict) -> list[dict]:
    rows = []
    for n in report["nodes"]:
        if "provision" not in n["steps"]:
            continue  # --only: the other machine went no further
        ev = (n.get("evidence") or {}).get("provision") or {}
        # the canary on the installed machine (nested TCG): seconds from create per step
        canary = ((n.get("evidence") or {}).get("handoff") or {}).get("canary") or {}
        rows.append({"node": n["node"], "status": n["status"], "stages": n["timings_s"],
                     "steps": ev.get("timings") or {}, "reason": n.get("reason"),
                     "canary": canary.get("timeline_s") or {}})
    return rows


def show(title: str, wall: float, rows: list[dict], cpu_s: float) -> None:
    per = cpu_s / max(1, len(rows))
    print(f"\n{title}: metalctl run wall {wall:.0f} s; metalctl's CPU {cpu_s:.1f} s "
          f"({per:.1f} s per machine, {100 * per / wall:.1f} % of the wall)")
    print(f"  {'node':<24} {'status':<7} " + " ".join(f"{s:>9}" for s in STAGES))
    for r in rows:
        print(f"  {r['node']:<24} {r['status']:<7} " +
              " ".join(f"{r['stages'].get(s, float('nan')):>9.1f}" for s in STAGES))
    print("  install steps, s: " + " ".join(STEPS))
    for r in rows:
        print(f"  {r['node']:<24} " + " ".join(f"{r['steps'].get(s, float('nan')):.1f}"
                                               for s in STEPS))
        if r["canary"]:
            print(f"    canary (nested TCG), s from create: {r['canary']}")
        if r["reason"]:
            print(f"    reason: {r['reason']}")


IMPORT = ("import resource, time; t = time.monotonic(); "
          "import nova.compute.manager, nova.virt.libvirt.driver; "
          "print(round(time.monotonic() - t, 2), "
          "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")


def nova_in_tcg(lab: Path, address: str) -> dict:
    """Time nova-compute's imports in the installed TCG machine and on this host.

    The machine has the Nova venv from the lab's read-only Nova disk, mounted at the
    venv's own path (:mod:`metalctl_lab.novadisk`): nothing is copied."""
    sys.path.insert(0, str(REPO))
    from metalctl_lab import nova_venv  # noqa: PLC0415

    venv = nova_venv.venv_dir()
    ssh = ["ssh", "-i", str(lab / "operator" / "id_ed25519"), "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={lab / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
           f"root@{address}"]
    t0 = time.monotonic()
    subprocess.run([*ssh, f"for i in $(seq 120); do mountpoint -q {venv} && exit 0; sleep 1; "
                          "done; exit 1"], check=True, timeout=300)
    copy_s = time.monotonic() - t0  # waiting for the mount (0 once booted)
    python = str(nova_venv.nova_bin("python"))
    free = subprocess.run([*ssh, "free -m | awk '/^Mem:/{print $2, $7}'"], capture_output=True,
                          text=True, check=True).stdout.split()
    out = {"copy_s": round(copy_s, 1), "vm_memory_mib": int(free[0]),
           "vm_available_mib": int(free[1])}
    for where, cmd in (("tcg", [*ssh, shlex.join([python, "-c", IMPORT])]),
                       ("host", [python, "-c", IMPORT])):
        runs = []
        for _ in range(2):  # the first compiles what has no byte code there
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                  check=False)
            if proc.returncode != 0:
                return {**out, "error": f"{where}: {proc.stderr.strip()[-400:]}"}
            runs.append([float(x) for x in proc.stdout.split()[-2:]])
        out[where] = {"import_s": runs[1][0], "rss_mib": runs[1][1], "cold_s": runs[0][0]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--no-nova", action="store_true",
                    help="skip the nova-compute measurement in the installed machine")
    ap.add_argument("--smoke", action="store_true",
                    help="only bring the lab up and discover its machines (no install): "
                         "the test that keeps this bench working")
    args = ap.parse_args()
    nova: dict = {}
    with tempfile.TemporaryDirectory(prefix="metalctl-bench-prov-") as tmp:
        work = Path(tmp)
        lab = work / "lab"
        env = {**os.environ, "METALCTL_LAB_DIR": str(lab)}
        sh([*METALCTL, "lab", "up", "--dir", str(lab), "--octet", str(OCTET), "--provnet",
            str(PROVNET), "--boot-port", str(BOOT_PORT), "--no-install",
            *([] if args.smoke else ["--nova"])], env, 900)
        try:
            env = lab_env(lab)
            # harden installs libvirt TLS certificates from the site CA (as scripts/demo.sh)
            sh([*METALCTL, "pki", "init"], {**env, "METALCTL_PKI_DIR": str(lab / "pki")})
            rack = rack_file(work, nova=not args.smoke)
            _, seen = run(rack, env, "--until", "discover")
            keys = sorted(n["key"] for n in seen["nodes"])
            if len(keys) != 2:
                sys.exit(f"the lab's BMC did not show two machines: {seen['nodes']}")
            if args.smoke:
                print(f"smoke: lab up, two machines discovered: {keys}")
                return 0
            one_s, one = run(rack, env, "--only", keys[0])
            two_s, two = run(rack, env, "--from", "enroll")
            m0 = [n for n in two["nodes"] if n["key"] == keys[0]][0]
            address = ((m0.get("evidence") or {}).get("provision") or {}).get("address")
            if not args.no_nova and address:
                nova = nova_in_tcg(lab, address)
        finally:
            sh([*METALCTL, "lab", "down", "--dir", str(lab)], env, 300)
    one_rows, two_rows = rows_of(one), rows_of(two)
    show("one machine", one_s, one_rows, one["cpu_s"])
    show("two machines at once", two_s, two_rows, two["cpu_s"])
    ok = all(r["status"] == "ok" for r in one_rows + two_rows) and len(two_rows) == 2
    nan = float("nan")
    prov_one = one_rows[0]["stages"].get("provision", nan) if one_rows else nan
    prov_two = max((r["stages"].get("provision", nan) for r in two_rows), default=nan)
    ratios = {"pipeline": two_s / one_s, "provision": prov_two / prov_one}
    print(f"\nwhole pipeline (enroll -> handoff), two at once / one: {two_s:.0f} s / "
          f"{one_s:.0f} s = {ratios['pipeline']:.2f}x")
    print(f"provision stage, two at once / one: {prov_two:.0f} s / {prov_one:.0f} s = "
          f"{ratios['provision']:.2f}x")
    print("(TCG on 2 shared cores: ~2x is the floor; Cobbler's anchor: 195 servers in "
          "1.22x one)" + ("" if ok else "  [a machine did not get through]"))
    if nova.get("tcg"):
        tcg, host = nova["tcg"], nova["host"]
        print(f"\nnova-compute's imports (manager + libvirt driver), warm: "
              f"{tcg['import_s']:.1f} s in the TCG machine / {host['import_s']:.1f} s here = "
              f"{tcg['import_s'] / host['import_s']:.0f}x; cold {tcg['cold_s']:.0f} s; "
              f"RSS {tcg['rss_mib']} MiB of the machine's {nova['vm_available_mib']} MiB "
              f"available ({nova['vm_memory_mib']} MiB); the Nova disk was mounted after "
              f"{nova['copy_s']:.0f} s more")
    elif nova:
        print(f"\nnova-compute measurement failed: {nova.get('error')}")
    if args.json:
        args.json.write_text(json.dumps({"one": one_rows, "two": two_rows, "one_wall_s": one_s,
                                         "two_wall_s": two_s, "ratios": ratios, "nova": nova,
                                         "cpu_s": {"one": one["cpu_s"], "two": two["cpu_s"]}},
                                        indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
