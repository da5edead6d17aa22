"""An installed lab machine as a KVM compute host: what it costs (issue 21, part 1).

    flock /tmp/metalctl-itest.lock .venv/bin/python bench/lab_compute.py [--json FILE]

The lab of ``bench/provision_lab.py`` (127.32.0.0/16, provisioning network 10.210.0.0/24);
one machine goes from power-off to audit in ``metalctl run --only`` (a real PXE install
of the liveimg that carries libvirt and QEMU, the Nova release disk attached read-only).
Then, on that machine, over SSH:

1. what it is: memory, LSMs, ``virsh capabilities``' security models, the Nova disk's
   mount, libvirtd's state, the audit's ``QMU-002``;
2. ``import nova.compute.manager, nova.virt.libvirt.driver`` from the Nova disk, cold
   and warm, with its peak RSS;
3. nova-compute (a hand-written minimal nova.conf: libvirt driver, ``virt_type = qemu``)
   against the machine's own libvirtd and the lab's Nova control plane, started on the
   provisioning network's host address: seconds until nova-api lists it ``up`` and until
   its resource provider is in Placement; the machine's memory then;
4. a nested 128 MiB guest (the canary kernel and initramfs, direct boot) defined and
   started by ``virsh``: the start's seconds, its AppArmor label (``ps -eZ``), seconds
   until its kernel runs ``/init``, and the machine's memory with it and nova-compute.

Everything started is stopped again. Figures are printed (and written with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import provision_lab as pl  # noqa: E402

from metalctl_lab import nova, nova_venv, novadisk  # noqa: E402

IMPORT = pl.IMPORT
GUEST = """<domain type='qemu'>
  <name>nested</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/var/lib/libvirt/images/vmlinuz</kernel>
    <initrd>/var/lib/libvirt/images/initrd.img</initrd>
    <cmdline>console=ttyS0</cmdline></os>
  <devices><serial type='file'><source path='/var/log/libvirt/nested.log'/></serial>
  </devices>
</domain>
"""


def ssh_cmd(lab: Path, address: str) -> list[str]:
    return ["ssh", "-i", str(lab / "operator" / "id_ed25519"), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={lab / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", f"root@{address}"]


def on(ssh: list[str], script: str, timeout: float = 600, stdin: str | None = None) -> str:
    proc = subprocess.run([*ssh, script], capture_output=True, text=True, timeout=timeout,
                          input=stdin, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{script[:80]}: exit {proc.returncode}: {proc.stderr[-800:]}")
    return proc.stdout


def mem(ssh: list[str]) -> dict[str, int]:
    total, used, available = on(ssh, "free -m | awk '/^Mem:/{print $2, $3, $7}'").split()
    return {"total_mib": int(total), "used_mib": int(used), "available_mib": int(available)}


def nova_conf(lab: nova.NovaLab, host: str) -> str:
    venv = nova_venv.venv_dir()
    return f"""[DEFAULT]
host = {host}
compute_driver = libvirt.LibvirtDriver
transport_url = {lab.transport_url()}
state_path = /var/lib/nova
graceful_shutdown_timeout = 10
manager_shutdown_timeout = 0
[libvirt]
virt_type = qemu
[placement]
auth_type = admin_token
endpoint = {lab.placement_url}
token = {nova.PLACEMENT_TOKEN}
[nova_sys_admin]
helper_command = {venv}/bin/privsep-helper --config-file /etc/nova/nova.conf
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0
"""


def wait(what: str, check, timeout_s: float) -> float:  # noqa: ANN001
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.5)
    return round(time.monotonic() - t0, 1)


def on_machine(lab_dir: Path, work: Path, address: str, name: str) -> dict:
    ssh = ssh_cmd(lab_dir, address)
    out: dict = {"idle": mem(ssh)}
    facts = on(ssh, f"""
        cat /sys/kernel/security/lsm; echo
        virsh -c qemu:///system capabilities | grep -o '<model>[a-z]*</model>' | tr '\\n' ' '
        echo; findmnt -no SOURCE,FSTYPE,OPTIONS {novadisk.mount_point()}
        systemctl is-active libvirtd; systemctl is-system-running || true
        getent group libvirt-qemu; dpkg -s qemu-system-x86 | grep ^Version
        uname -r; nproc""")
    out["facts"] = facts.strip().splitlines()
    python = shlex.quote(str(nova_venv.nova_bin("python")))
    runs = [on(ssh, f"{python} -c {shlex.quote(IMPORT)}").split() for _ in range(2)]
    out["import"] = {"cold_s": float(runs[0][0]), "warm_s": float(runs[1][0]),
                     "rss_mib": int(runs[1][1])}
    # nova-compute against the lab's control plane on the provisioning network
    t0 = time.monotonic()
    lab = nova.up(work / "nova", "127.99.0.0", bind_address="10.210.0.1")
    out["control_plane_up_s"] = round(time.monotonic() - t0, 1)
    try:
        on(ssh, "install -d -m 700 /etc/nova /var/lib/nova/instances /var/lib/nova/tmp "
                "/var/log/nova; cat > /etc/nova/nova.conf; chmod 600 /etc/nova/nova.conf",
           stdin=nova_conf(lab, name))
        t0 = time.monotonic()
        on(ssh, f"nohup {shlex.quote(str(nova_venv.nova_bin('nova-compute')))} "
                "--config-file /etc/nova/nova.conf --log-file /var/log/nova/nova-compute.log "
                ">/dev/null 2>&1 </dev/null & echo $! > /run/nova-compute.pid")
        up_s = wait("nova-compute up", lambda: nova.services_up(lab, ("nova-compute",),
                                                                host=name), 600)
        rp_s = wait("resource provider", lambda: bool(
            lab.placement("/resource_providers")["resource_providers"]), 600)
        out["nova_compute"] = {"up_s": up_s, "provider_s": round(up_s + rp_s, 1),
                               "since_start_s": round(time.monotonic() - t0, 1)}
        rps = lab.placement("/resource_providers")["resource_providers"]
        inventories = f"/resource_providers/{rps[0]['uuid']}/inventories"
        # the provider is created before its inventory is set (seen: empty at first)
        inv_s = wait("inventory", lambda: bool(lab.placement(inventories)["inventories"]), 120)
        inv = lab.placement(inventories)["inventories"]
        out["inventory"] = {k: v["total"] for k, v in inv.items()}
        out["nova_compute"]["inventory_s"] = round(up_s + rp_s + inv_s, 1)
        time.sleep(5)
        out["with_nova_compute"] = mem(ssh)
        out["nova_compute"]["rss_mib"] = on(
            ssh, "ps -C nova-compute,privsep-helper -o rss=,args= | "
                 "awk '{s+=$1} END {print int(s/1024)}'").strip()
        # a nested guest, started by libvirt with its sVirt label
        canary = sorted(Path(nova_venv.venv_dir().parent, "canary-image").glob("*/vmlinuz"))
        if not canary:
            raise RuntimeError("no canary kernel in the cache")
        for f in ("vmlinuz", "initrd.img"):
            subprocess.run(["scp", "-q", *ssh[1:-1], str(canary[0].parent / f),
                            f"{ssh[-1]}:/var/lib/libvirt/images/{f}"], check=True, timeout=300)
        on(ssh, "cat > /tmp/nested.xml && virsh -q -c qemu:///system define /tmp/nested.xml",
           stdin=GUEST)
        t1 = time.monotonic()
        on(ssh, "virsh -q -c qemu:///system start nested")
        start_s = round(time.monotonic() - t1, 1)
        label = on(ssh, "ps -eZ | grep -E 'qemu-system' | grep -v grep || true").strip()
        banner_s = wait("nested /init", lambda: "Run /init" in on(
            ssh, "cat /var/log/libvirt/nested.log 2>/dev/null || true"), 600)
        out["nested"] = {"start_s": start_s, "label": label,
                         "init_after_start_s": round(start_s + banner_s, 1),
                         "seclabel": on(ssh, "virsh -c qemu:///system dominfo nested | "
                                             "grep -i security").strip().splitlines()}
        out["with_guest_and_nova_compute"] = mem(ssh)
        on(ssh, "virsh -q -c qemu:///system destroy nested; kill $(cat /run/nova-compute.pid)")
        out["nova_compute_log_errors"] = on(
            ssh, "grep -E ' (ERROR|CRITICAL) ' /var/log/nova/nova-compute.log | head -5 || true")
    finally:
        nova.down(work / "nova")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--keep", type=Path, help="keep the lab in this directory (no lab down)")
    args = ap.parse_args()
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="metalctl-bench-compute-") as tmp:
        work = args.keep or Path(tmp)
        lab = work / "lab"
        env = {**pl.os.environ, "METALCTL_LAB_DIR": str(lab)}
        t0 = time.monotonic()
        pl.sh([*pl.METALCTL, "lab", "up", "--dir", str(lab), "--octet", str(pl.OCTET),
               "--provnet", str(pl.PROVNET), "--boot-port", str(pl.BOOT_PORT),
               "--no-install"], env, 900)
        figures["lab_up_s"] = round(time.monotonic() - t0, 1)
        try:
            env = pl.lab_env(lab)
            pl.sh([*pl.METALCTL, "pki", "init"], {**env, "METALCTL_PKI_DIR": str(lab / "pki")})
            rack = pl.rack_file(work, nova=False)  # it starts its own Nova, on purpose bare
            _, seen = pl.run(rack, env, "--until", "discover")
            key = sorted(n["key"] for n in seen["nodes"])[0]
            one_s, one = pl.run(rack, env, "--only", key)
            (work / "run.json").write_text(json.dumps(one, indent=1))
            rows = pl.rows_of(one)
            pl.show("one machine", one_s, rows, one["cpu_s"])
            figures["run"] = {"wall_s": round(one_s, 1), "rows": rows}
            text = json.dumps(one)
            figures["qmu_002"] = sorted(set(re.findall(r'QMU-002[^}]{0,200}', text)))[:3]
            node = [n for n in one["nodes"] if n["key"] == key][0]
            address = node["evidence"]["provision"]["address"]
            figures["machine"] = on_machine(lab, work, address, node["node"])
        finally:
            if not args.keep:
                pl.sh([*pl.METALCTL, "lab", "down", "--dir", str(lab)], env, 300)
    print(json.dumps(figures, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
