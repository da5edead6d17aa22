"""One ``metalctl run`` takes a lab machine from power-off to a Nova compute node, through
Ironic's anaconda deploy (issue 21).

All real: the lab's libvirt machine behind its Redfish BMC on a provisioning network
(10.209.0.0/24 in a namespace), the lab's Ironic with the ``ipxe`` boot and ``anaconda``
deploy interfaces (dnsmasq chains iPXE to Ironic's boot script), the boot service in the
run's own process as the kickstart source, the stand-in installer laying the lab's
liveimg down (libvirt, QEMU, the nova-compute unit), the Nova release disk attached
read-only; then the run's verify step plans the machine from its in-band facts
(``compute-small``), makes the plan real (64 x 2M hugepages on each of its two NUMA nodes
through ``metalctl-plan.service``) and verifies it; then harden and audit over SSH with
the host keys the install delivered, and hand-off to the lab's Nova, Placement and
Glance listening on the provisioning network's host side: nova.conf from the machine's
own plan, nova-compute registered, Placement's inventories compared with the plan, a
canary guest started nested (TCG in TCG).

An attacker on the provisioning network reads the kickstart Ironic publishes in its
http_root (the callback token is in it) and calls back first with its own host keys: every
callback is refused, the install binds to the machine's leased address.

The run is killed once at a boundary the hand-off added (nova-compute registered in Nova,
its inventories not yet verified) and run again: nothing before hand-off is repeated (no
second install: Ironic's state, the boot events and the machine's install marker say so)
but the plan's verification (nothing to change, every check in the report), nova.conf is
not rewritten and the node ends ``handed-off`` with a canary backed by those hugepages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from metalctl.provision import dnsmasq
from metalctl.provision.bootstate import BootState
from metalctl.store import Store
from metalctl_lab import installer, libvirt_lab, nova, nova_site, prov_ironic, rack

from .provattack import IronicRootAttacker

REPO = Path(__file__).resolve().parents[2]
SPEC = rack.RackSpec(octet=29, redfish_bmcs=0, ipmi_bmcs=0, libvirt_domains=1, dead=0,
                     ironic=True, provnet=209)
SERVE_PORT = 8085
RUN_S = 1500             # install, harden, audit and hand-off, under load
METALCTL = [sys.executable, "-m", "metalctl"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    files = installer.ensure()
    with rack.running(SPEC, tmp_path_factory.mktemp("runlab")) as state:
        net = rack.provnet(state)
        assert net is not None
        # iPXE chains to Ironic's boot script (the ipxe boot interface)
        cfg = dnsmasq.DnsmasqConfig(
            boot_url=f"http://{net.host_address}:{prov_ironic.HTTP_ROOT_PORT}",
            hosts=(dnsmasq.DhcpHost(libvirt_lab.domain_mac(SPEC, 0), net.pinned_address(0),
                                    "lab29-m0"),), **net.dnsmasq_settings())
        conf = dnsmasq.write(cfg, net.files / "dnsmasq.conf")
        net.start_dnsmasq(conf)
        novalab = nova.prepare(Path(state.directory) / "nova", net.host_address,
                               bind_address=net.host_address, image_service=True)
        try:
            nova.start(novalab)
            nova_site.merge_credentials(state, novalab)
            site = nova_site.write_site(Path(state.directory), novalab,
                                        register_timeout_s=300, verify_timeout_s=240)
            yield {"state": state, "net": net, "files": files, "dnsmasq": conf,
                   "nova": novalab, "nova_site": site}
        finally:
            nova.down(Path(state.directory) / "nova")


@pytest.fixture(scope="module")
def operator(lab, tmp_path_factory):
    from metalctl.pki import SitePKI

    d = tmp_path_factory.mktemp("operator29")
    key = d / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True)
    pki = SitePKI(d / "pki", organization="metalctl lab29")
    pki.init()
    net, url = lab["net"], f"http://{lab['net'].host_address}:{SERVE_PORT}"
    site = d / "site.yaml"
    site.write_text(json.dumps({"kickstart": {
        "install": {"liveimg": f"{url}/files/liveimg.tar.gz"},
        "root_password": {"env": "LAB_ROOT_PW"},
        "ssh_keys": [{"user": "root", "key": key.with_suffix(".pub").read_text().strip()}],
        "kernel_args": ["console=ttyS0,115200n8"]}}))
    f = f"{url}/files"
    rack_file = d / "rack.yaml"
    rack_file.write_text(yaml.safe_dump({
        "name": "lab29", "until": "handoff",
        "bmc": {"ranges": [SPEC.libvirt_address], "credentials": [rack.LAB_CREDENTIALS]},
        "ironic": {"url": lab["state"].ironic_url},
        "site": {"ssh_key": str(key), "pki_dir": str(pki.dir), "nova": str(lab["nova_site"])},
        "profiles": {"default": "compute-small", "bios": "skip"},
        "provision": {
            "via": "ironic", "serve": f"{net.host_address}:{SERVE_PORT}", "boot_url": url,
            "boot_dir": str(d / "boot"), "files_dir": str(lab["files"].directory),
            "dnsmasq_conf": str(lab["dnsmasq"]), "site": str(site),
            "kernel": f"{f}/vmlinuz", "initrd": f"{f}/initrd.img", "stage2": f"{f}/stage2.img",
            # the lab's machines have SeaBIOS only; Ironic would switch them to UEFI
            "ironic": {"image_source": f"{f}/liveimg.tar.gz", "deploy_kernel": f"{f}/vmlinuz",
                       "deploy_ramdisk": f"{f}/initrd.img", "boot_mode": "bios"},
            "ssh_key": str(key), "known_hosts": str(d / "known_hosts"),
            "timeout_s": 900, "ssh_wait_s": 300},
        "audit": {"gate": "high", "waivers": str(REPO / "hardening" / "waivers.lab.yaml")},
        "concurrency": {"handoff": 1}}))
    env = {**os.environ, **lab["state"].env(), "METALCTL_STORE": str(d / "metalctl.db"),
           "LAB_ROOT_PW": "Lab-Root-Passw0rd-Not-Logged"}
    return {"dir": d, "key": key, "rack": rack_file, "env": env}


def _ssh(operator, address: str, command: str) -> str:
    return subprocess.run(
        ["ssh", "-i", str(operator["key"]), "-o", "BatchMode=yes", "-o",
         "StrictHostKeyChecking=yes", "-o",
         f"UserKnownHostsFile={operator['dir'] / 'known_hosts'}", f"root@{address}", command],
        capture_output=True, text=True, timeout=60).stdout


def _diag(operator, lab, stderr: str) -> str:
    """A failed run's stderr, with what the machine says of itself (if SSH still works)."""
    state = _ssh(operator, lab["net"].pinned_address(0),
                 "uptime; free -m; systemctl --failed --no-legend; nft list ruleset | head -40;"
                 " journalctl -b --no-pager -n 40 -u ssh -u nova-compute -u nftables;"
                 " tail -n 60 /var/log/nova/nova-compute.log; mount | grep -i huge;"
                 " grep -i huge /proc/meminfo; systemctl status libvirtd --no-pager | tail -5")
    console = libvirt_lab.serial_log(Path(lab["state"].directory), 0)
    tail = console.read_text(errors="replace")[-1500:] if console.exists() else ""
    return f"{stderr[-3000:]}\n--- machine:\n{state}\n--- console:\n{tail}"


def test_run_via_ironic_from_power_off_to_handed_off_resumes_after_a_kill(lab, operator):
    novalab, env = lab["nova"], operator["env"]
    argv = [*METALCTL, "run", str(operator["rack"]), "-o", "json"]
    t0 = time.monotonic()
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    from metalctl.ironic import Ironic, IronicConfig

    client = Ironic(IronicConfig(url=lab["state"].ironic_url)).connect()
    net, attacker = lab["net"], None
    evil = operator["dir"] / "evil_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(evil)],
                   check=True)
    evil_pub = evil.with_suffix(".pub").read_text()
    try:
        # the new boundary: nova-compute registered in Nova, its inventories not verified
        while not nova.services_up(novalab, ("nova-compute",)):
            if first.poll() is not None:
                pytest.fail(_diag(operator, lab, first.communicate()[1]))
            assert time.monotonic() - t0 < RUN_S, "nova-compute never registered"
            nodes = client.nodes() if attacker is None else []
            if nodes:  # enrolled: Ironic will publish its ks.cfg under the node's UUID
                attacker = IronicRootAttacker(
                    f"http://{net.host_address}:{prov_ironic.HTTP_ROOT_PORT}/"
                    f"{nodes[0]['uuid']}/ks.cfg", f"http://{net.host_address}:{SERVE_PORT}",
                    net.host_address, evil_pub)
                attacker.start()
            time.sleep(1)
    finally:
        if attacker is not None:
            attacker.stop.set()
            attacker.join(10)
    registered_s = time.monotonic() - t0
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    store_path = Path(env["METALCTL_STORE"])
    with Store(store_path) as store:
        [row] = store.nodes()
        key, name = row["key"], row["name"]
        assert row["state"] == "audited", row  # killed inside hand-off
    address = net.pinned_address(0)
    # the attacker held the real token and got nowhere
    assert attacker is not None
    assert attacker.tokens, "Ironic's ks.cfg was never read with a token in it"
    assert {status for _, status in attacker.answers} == {403}, attacker.answers
    assert BootState(operator["dir"] / "boot").get(name).bound_address == address
    assert evil_pub.split()[1] not in (operator["dir"] / "known_hosts").read_text()
    marker = _ssh(operator, address, "cat /etc/metalctl-install")
    assert f"node={name}" in marker
    boot_events = [e.stage for e in BootState(operator["dir"] / "boot").events(name)]
    conf_before = _ssh(operator, address, "sha256sum /etc/nova/nova.conf")
    t1 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=RUN_S)
    resumed_s = time.monotonic() - t1
    assert proc.returncode == 0, _diag(operator, lab, proc.stderr)
    [node] = json.loads(proc.stdout)["nodes"]
    assert node["status"] == "ok", node.get("reason")
    assert [node["steps"][s] for s in ("enroll", "profile", "provision", "harden")] == \
        ["skipped"] * 4
    assert node["steps"]["audit"] == "ok"
    assert node["steps"]["handoff"] == "ok"
    # the plan was made real after install and is verified again before hand-off: the
    # resumed run finds nothing to change and every check passes (the kernel arguments
    # of a plan made after install are pending a reinstall, ok None)
    assert node["steps"]["verify"] == "ok"
    plan_ev = node["evidence"]["verify"]
    assert plan_ev["profile"] == "compute-small", plan_ev
    assert plan_ev["realized"]["summary"] == "unchanged", plan_ev
    verify_checks = {c["name"]: c for c in plan_ev["checks"]}
    assert all(c["ok"] is not False for c in plan_ev["checks"]), plan_ev["checks"]
    for n in (0, 1):  # per NUMA node, from the unit's sysfs writes, not the command line
        assert verify_checks[f"2M hugepages on NUMA node {n}"] == {
            "name": f"2M hugepages on NUMA node {n}", "want": "64", "got": "64", "ok": True}
    assert verify_checks["re-derived host_cpus"]["ok"] is True
    assert _ssh(operator, address, "cat /sys/devices/system/node/node0/hugepages/"
                "hugepages-2048kB/nr_hugepages /sys/devices/system/node/node1/hugepages/"
                "hugepages-2048kB/nr_hugepages").split() == ["64", "64"]
    assert _ssh(operator, address, "systemctl is-enabled metalctl-plan.service; "
                "systemctl is-active metalctl-plan.service").split() == ["enabled", "active"]
    evidence = node["evidence"]["handoff"]
    # Placement's inventories are the plan's (the verify step compared them)
    assert evidence["inventories"], evidence
    assert not evidence.get("mismatches"), evidence
    for rc, want in evidence["expected"].items():  # each field the plan sets
        for field, value in want.items():
            assert evidence["inventories"][rc][field] == value, (rc, field, evidence)
    # the canary ran nested, confined by AppArmor, and the audit's runtime rule passed
    checks = {c["name"]: c["status"] for c in evidence["canary"]["checks"]}
    assert checks["svirt-label"] == "pass", evidence["canary"]
    # the profile's 2M pages back the canary on one of the planned nodes
    assert checks["hugepages"] == "pass", evidence["canary"]
    assert checks["VRT-002"] == "pass", evidence["canary"]
    assert "nova.conf" not in " ".join(evidence.get("changed", [])), evidence  # not rewritten
    assert _ssh(operator, address, "sha256sum /etc/nova/nova.conf") == conf_before
    with Store(store_path) as store:
        assert store.node(key)["state"] == "handed-off"
        installs = [e for e in store.events(key) if e.stage == "provision"
                    and e.action == "installed"]
        assert len(installs) == 1
    # no second install: the machine's marker, the boot events, Ironic's state
    assert _ssh(operator, address, "cat /etc/metalctl-install") == marker
    assert [e.stage for e in BootState(operator["dir"] / "boot").events(name)] == boot_events
    [inode] = client.nodes()
    assert inode["provision_state"] == "active"
    # the machine is a KVM host Nova schedules onto: its compute service is up, and the
    # audit's QMU-002 passed there (the libvirt-qemu group exists on the installed system)
    assert nova.services_up(novalab, ("nova-compute",), host=name)
    print(f"\n[run via ironic] power-off to nova-compute registered {registered_s:.0f} s; "
          f"resumed run to handed-off {resumed_s:.0f} s; {len(attacker.answers)} attacker "
          "callbacks refused")
