"""``metalctl provision`` on a lab machine that really network-boots and installs.

All real: the lab's libvirt domain behind sushy-emulator on a provisioning network in a
namespace (10.208.0.0/24, :mod:`metalctl_lab.provnet`); dnsmasq chains QEMU's own iPXE to
metalctl's boot service (run as ``metalctl serve``, as a site runs it) or to Ironic's
``ipxe`` boot interface; the stand-in installer (:mod:`metalctl_lab.installer`: Debian's
kernel, a busybox initramfs) fetches the one-time kickstart, runs ``%pre``/``%post``/
``%onerror`` unchanged, lays the liveimg down and reboots into it; metalctl trusts the
host keys its ``%post`` sent and proves the install over SSH.

One lab (octet 127.28) and one machine for the module; installs run one at a time and
each may take 300 s under load (TCG on 2 shared cores). The cheap failure paths use a
tiny liveimg so they cost a boot, not an install. A failing ``%post`` is run here through
Ironic; the same failure through the boot service is covered by the stand-in installer's
own test (``%onerror``, no bootable disk) and ``test_provision_stage`` (metalctl's
handling of the error callback), which cost one boot less.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests

from metalctl import credentials, discover
from metalctl.bmc import power
from metalctl.budget import Budget
from metalctl.ironic import Ironic, IronicConfig
from metalctl.netaddrs import parse_targets
from metalctl.profile import stage as profile_stage
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.provision import dnsmasq, shacrypt
from metalctl.provision.bootservice import LOCAL_BOOT_SCRIPT
from metalctl.provision.bootstate import BootState
from metalctl.store import Store
from metalctl_lab import installer, libvirt_lab, nova_venv, prov_ironic, rack

from .provattack import Attacker

REPO = Path(__file__).resolve().parents[2]
SPEC = rack.RackSpec(octet=28, redfish_bmcs=0, ipmi_bmcs=0, libvirt_domains=1, dead=0,
                     ironic=True, provnet=208)
BUDGET = Budget(connect_timeout_s=2, read_timeout_s=20, deadline_s=90)
INSTALL_S = 420          # one install, under load
SERVE_PORT = 8081
TINY_PORT = 8092
ROOT_PW = "Lab-Root-Passw0rd-Not-Logged"
METALCTL = [sys.executable, "-m", "metalctl"]


@pytest.fixture(scope="module")
def files():
    return installer.ensure()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, files):
    with rack.running(SPEC, tmp_path_factory.mktemp("provlab")) as state:
        yield state


@pytest.fixture(scope="module")
def net(lab):
    n = rack.provnet(lab)
    assert n is not None
    return n


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("operator")
    key = d / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    e = {**os.environ, **lab.env(), "METALCTL_STORE": str(d / "metalctl.db"),
         "METALCTL_KNOWN_HOSTS": str(d / "known_hosts"), "LAB_ROOT_PW": ROOT_PW,
         "METALCTL_BOOT_STATE": str(d / "boot")}
    return {"dir": d, "key": key, "env": e}


def _site(env, liveimg_url: str, name: str = "site.yaml") -> Path:
    site = env["dir"] / name
    pub = env["key"].with_suffix(".pub").read_text().strip()
    keys = [{"user": "root", "key": pub}]
    if liveimg_url.endswith("/liveimg.tar.gz"):  # the tiny root has no useradd
        keys.append({"user": "ops", "key": pub})  # `user --name`, `sshkey` for another user
    site.write_text(json.dumps({
        "kickstart": {
            "install": {"liveimg": liveimg_url},
            "root_password": {"env": "LAB_ROOT_PW"},
            "ssh_keys": keys,
            "kernel_args": ["console=ttyS0,115200n8"],
        }}))
    return site


@pytest.fixture(scope="module")
def node(lab, env):
    """The lab machine discovered through its BMC and profiled into the store."""
    creds = credentials.resolve(rack.LAB_CREDENTIALS, Path(lab.credentials_file),
                                interactive=False)
    opts = discover.DiscoverOptions(verify=lab.ca_bundle, budget=BUDGET)
    [record] = [r for r in discover.discover(parse_targets([SPEC.libvirt_address]), creds,
                                             opts) if r.status.value == "ok"]
    with Store(Path(env["env"]["METALCTL_STORE"])) as store:
        store.save_discovered(record)
        ref = profile_stage.resolve(store, record.key)
        topo = inband.parse((REPO / "tests/samples/facts/edge-1s-12c-64g.txt").read_text())
        profile_stage.plan(store, ref, ProfileLibrary().load("compute-general"), topo)
        from metalctl.model.node import Lifecycle
        store.set_state(record.key, Lifecycle.PROFILED)
        name = store.find(record.key)["name"] or record.name or record.key
    # named in the store only once enrolled: the CLI takes the key, the stage uses the
    # BMC's system name for the boot service until then
    yield {"record": record, "creds": creds, "name": name, "ref": record.key}
    power.power_off(record, creds, lab.ca_bundle, BUDGET)


def _dnsmasq(net, boot_url: str, tag: str) -> None:
    net.stop_dnsmasq()
    cfg = dnsmasq.DnsmasqConfig(
        boot_url=boot_url, hosts=(dnsmasq.DhcpHost(libvirt_lab.domain_mac(SPEC, 0),
                                                   net.pinned_address(0), "lab28-m0"),),
        **net.dnsmasq_settings())
    net.start_dnsmasq(dnsmasq.write(cfg, net.files / f"dnsmasq-{tag}.conf"))


@pytest.fixture(scope="module")
def serve(net, files, env):
    """``metalctl serve`` as a site runs it (its own process), dnsmasq chaining to it,
    and a tiny liveimg server for the failure paths."""
    tiny = env["dir"] / "tiny"
    tiny.mkdir()
    # a root file system of one static busybox: enough for %post to run, and fail
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in ("etc", "bin", "tmp", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        for name in ("sh", "echo", "cat", "mkdir", "tail"):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    (tiny / "tiny.tar.gz").write_bytes(buf.getvalue())
    url = f"http://{net.host_address}:{SERVE_PORT}"
    # dnsmasq's file first: the service binds each install to the address it pins
    _dnsmasq(net, url, "serve")
    log = open(env["dir"] / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*METALCTL, "serve", "--bind", net.host_address, "--port",
                             str(SERVE_PORT), "--files-dir", str(files.directory),
                             "--dnsmasq-conf", str(net.files / "dnsmasq-serve.conf")],
                            env=env["env"], stdout=log, stderr=subprocess.STDOUT)
    http = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", net.host_address,
                             "--directory", str(tiny), str(TINY_PORT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield {"url": url, "tiny": f"http://{net.host_address}:{TINY_PORT}/tiny.tar.gz"}
    for p in (proc, http):
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    log.close()


def _provision(env, node, *args: str, timeout: float = INSTALL_S + 120
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*METALCTL, "provision", node["ref"], "-o", "json",
                           "--ssh-key", str(env["key"]), *args],
                          env=env["env"], capture_output=True, text=True, timeout=timeout)


def _pxe_args(env, serve, site: Path, *extra: str) -> list[str]:
    return ["--via", "pxe", "--boot-url", serve["url"], "--site", str(site),
            "--kernel", "vmlinuz", "--initrd", "initrd.img", "--stage2", "stage2.img",
            "--kernel-arg", "console=ttyS0,115200n8", "--credentials", rack.LAB_CREDENTIALS,
            "--deadline", str(INSTALL_S), "--ssh-wait", "300", *extra]


def _events(env, name: str) -> list[str]:
    return [e.stage for e in BootState(Path(env["env"]["METALCTL_BOOT_STATE"])).events(name)]


def _why(lab, env, node, res: dict) -> str:
    """What a failed assertion shows: the result, the install's events, the console."""
    name = res.get("node") or node["name"]
    console = libvirt_lab.serial_log(Path(lab.directory), 0)
    tail = console.read_text(errors="replace")[-2500:] if console.exists() else "(none)"
    return (f"result: {res}\nevents: {_events(env, name)}\nconsole tail:\n{tail}")


def _failing_template(env) -> Path:
    tpl = env["dir"] / "templates"
    tpl.mkdir(exist_ok=True)
    for p in (REPO / "kickstart").glob("_*.j2"):
        (tpl / p.name).write_text(p.read_text())
    (tpl / "hangs-in-pre.ks.j2").write_text(
        '{% extends "_kvm-host.ks.j2" %}\n{% block pre %}\n%pre\nsleep 3600\n%end\n'
        "{% endblock %}\n")
    return tpl


def _result(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.stdout.strip(), proc.stderr[-3000:]
    [res] = json.loads(proc.stdout)
    return res


def test_a_bad_kickstart_is_refused_before_any_power_action(lab, env, node, serve):
    tpl = _failing_template(env)
    (tpl / "bad.ks.j2").write_text('{% extends "_kvm-host.ks.j2" %}\n{% block finish %}\n'
                                   "bogus --now\n{{ super() }}\n{% endblock %}\n")
    site = _site(env, serve["tiny"], "bad-site.yaml")
    proc = _provision(env, node, *_pxe_args(env, serve, site, "--template", "bad",
                                            "--template-dir", str(tpl)), timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "bad for node" in proc.stderr
    assert "bogus --now" in proc.stderr
    assert _events(env, node["name"]) == []
    assert power.power_state(node["record"], node["creds"], lab.ca_bundle, BUDGET) == power.OFF


def test_pxe_install_survives_a_killed_run_and_an_attacker_racing_it(lab, env, node, serve,
                                                                     net, capsys):
    site = _site(env, f"{serve['url']}/files/liveimg.tar.gz")
    args = _pxe_args(env, serve, site)
    evil = env["dir"] / "evil_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(evil)],
                   check=True)
    evil_pub = evil.with_suffix(".pub").read_text()
    attacker = Attacker(serve["url"], net.host_address, libvirt_lab.domain_mac(SPEC, 0),
                        evil_pub)
    attacker.start()
    t0 = time.monotonic()
    first = subprocess.Popen([*METALCTL, "provision", node["ref"], "-o", "json",
                              "--ssh-key", str(env["key"]), *args], env=env["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # kill the follower once the machine has its kickstart (mid-install)
    deadline = time.monotonic() + INSTALL_S
    while "kickstart-fetched" not in _events(env, node["name"]):
        assert time.monotonic() < deadline, "no kickstart fetch"
        assert first.poll() is None, first.communicate()[0][-3000:]
        time.sleep(1)
    first.kill()
    first.wait()
    fetched = time.monotonic() - t0
    # the re-run follows the same install: no second power action, no second kickstart
    proc = _provision(env, node, *args)
    attacker.stop.set()
    attacker.join(10)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _result(proc)
    assert res["status"] == "installed"
    assert res["address"] == net.pinned_address(0)
    events = _events(env, node["name"])
    assert events.count("power") == 1
    assert events.count("kickstart-fetched") == 1
    assert events.count("added") == 1
    # the attacker was in the race (it held the machine's ticket) and got nowhere: no
    # kickstart, no callback; its key is nowhere metalctl trusts keys
    assert attacker.tickets, "the attacker never saw a boot script with a ticket"
    assert attacker.answers
    assert {status for _, status in attacker.answers} == {403}, attacker.answers
    assert "kickstart-refused" in events
    assert evil_pub.split()[1] not in Path(env["env"]["METALCTL_KNOWN_HOSTS"]).read_text()
    assert res["host_keys"]
    state = BootState(Path(env["env"]["METALCTL_BOOT_STATE"]))
    assert evil_pub.split()[1] not in {k.blob_b64 for k in state.get(node["name"]).hostkeys}
    assert state.get(node["name"]).bound_address == net.pinned_address(0)
    refused = [e.detail for e in state.events(node["name"]) if e.stage.endswith("-refused")]
    assert any(f"{net.host_address} is not the address DHCP gave" in d for d in refused)
    with Store(Path(env["env"]["METALCTL_STORE"])) as store:
        row = store.find(node["ref"])
        assert row["state"] == "installed"
        actions = [e.action for e in store.events(row["key"]) if e.stage == "provision"]
        assert "resumed" in actions
        assert actions[-1] == "installed"
        install = store.get_data(row["key"], "install")
    # the installed disk answers SSH with the delivered key only (strict checking)
    ssh = ["ssh", "-i", str(env["key"]), "-o", "BatchMode=yes", "-o",
           "StrictHostKeyChecking=yes", "-o",
           f"UserKnownHostsFile={env['env']['METALCTL_KNOWN_HOSTS']}",
           f"root@{net.pinned_address(0)}"]
    venv = nova_venv.venv_dir()
    out = subprocess.run([*ssh, "cat /etc/metalctl-install; grep ^root: /etc/shadow; "
                                "ls /home; cat /etc/hostname /proc/cmdline; echo ==kvm==; "
                                # a compute host: libvirt, QEMU, the Nova release disk
                                "getent group libvirt-qemu; command -v qemu-system-x86_64; "
                                "virsh -c qemu:///system uri; "  # socket-activated
                                f"for i in $(seq 60); do mountpoint -q {venv} && break; "
                                f"sleep 1; done; findmnt -no FSTYPE,OPTIONS {venv}; "
                                f"{venv}/bin/python -c 'import importlib.metadata as m; "
                                "print(\"nova\", m.version(\"nova\"))'; echo ==log==; "
                                "cat /var/log/installer/anaconda.log"],
                         capture_output=True, text=True, timeout=120)
    system, _, installer_log = out.stdout.partition("==log==")
    system, _, kvm = system.partition("==kvm==")
    assert "libvirt-qemu:x:64055:" in kvm, kvm  # the group QMU-002 looks for
    assert "/usr/bin/qemu-system-x86_64" in kvm
    assert "\nqemu:///system\n" in kvm
    assert re.search(r"^ext4 +ro\b", kvm, re.M), kvm  # the read-only Nova disk, mounted
    assert "nova 34.0.0" in kvm, out.stderr[-2000:]
    assert f"node={node['name']}" in system, out.stderr
    pw_hash = next(line for line in system.splitlines() if line.startswith("root:")
                   ).split(":")[1]
    assert shacrypt.is_sha512_crypt(pw_hash)  # `rootpw --iscrypted`: the hash, as rendered
    assert shacrypt.verify(ROOT_PW, pw_hash)
    assert "ops" in system.split()  # `user --name=ops`
    assert node["name"] in system.split()  # `network --hostname`
    cmdline = next(line for line in system.splitlines() if "root=UUID=" in line).split()
    planned = next(line for line in system.splitlines() if line.startswith("kernel_args="))
    planned_args = planned.removeprefix("kernel_args=").split()
    assert any("iommu" in a for a in planned_args), planned  # the plan's (IOMMU on)
    assert set(planned_args) <= set(cmdline), cmdline  # `bootloader --append`, booted
    assert "liveimg unpacked" in installer_log
    # the installer's own log, kept on the disk, holds neither the password nor the token
    assert ROOT_PW not in out.stdout
    assert "token=" not in installer_log
    assert "Bearer" not in installer_log
    # nothing secret in the store, the boot state, or the outputs
    for db in (Path(env["env"]["METALCTL_STORE"]),
               Path(env["env"]["METALCTL_BOOT_STATE"]) / "bootservice.db"):
        dump = "\n".join(sqlite3.connect(db).iterdump())
        assert ROOT_PW not in dump
    assert ROOT_PW not in proc.stdout + proc.stderr
    # a finished install's MAC boots the local disk; its token opens nothing any more
    mac = libvirt_lab.domain_mac(SPEC, 0).replace(":", "-")
    assert requests.get(f"{serve['url']}/boot/{mac}.ipxe", timeout=5).text == \
        LOCAL_BOOT_SCRIPT
    for ticket in attacker.tickets:
        assert requests.get(f"{serve['url']}/ks/{node['name']}?ticket={ticket}",
                            timeout=5).status_code == 403
    with capsys.disabled():
        print(f"\n[provision pxe] kickstart fetched after {fetched:.0f} s; "
              f"steps {install['timings']}; attacker: {len(attacker.tickets)} ticket(s), "
              f"{len(attacker.answers)} requests refused\n[installer log]\n"
              + "\n".join(line for line in installer_log.splitlines()
                          if "installer:" in line))


def test_a_rerun_does_nothing_to_an_installed_node(lab, env, node, serve):
    before = _events(env, node["name"])
    site = _site(env, f"{serve['url']}/files/liveimg.tar.gz")
    proc = _provision(env, node, *_pxe_args(env, serve, site), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _result(proc)["status"] == "skipped"
    assert _events(env, node["name"]) == before
    assert power.power_state(node["record"], node["creds"], lab.ca_bundle, BUDGET) == power.ON


def test_an_install_that_never_calls_back_times_out(lab, env, node, serve):
    site = _site(env, serve["tiny"], "tiny-site.yaml")
    t0 = time.monotonic()
    # the last --deadline wins; --redo: an earlier test may have installed the node.
    # 45 s: the kickstart is fetched 23-32 s after the power-on under load; %pre hangs
    proc = _provision(env, node, *_pxe_args(env, serve, site, "--redo", "--template",
                                            "hangs-in-pre", "--template-dir",
                                            str(_failing_template(env)), "--deadline", "45"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    res = _result(proc)
    assert res["status"] == "timeout", res
    assert "no end callback within 45 s" in res["reason"]
    assert time.monotonic() - t0 < 200


def _ironic_args(env, serve, site: Path, *extra: str) -> list[str]:
    f = f"{serve['url']}/files"
    return ["--via", "ironic", "--boot-url", serve["url"], "--site", str(site),
            "--image-source", f"{f}/liveimg.tar.gz", "--kernel", f"{f}/vmlinuz",
            "--initrd", f"{f}/initrd.img", "--stage2", f"{f}/stage2.img",
            "--deploy-kernel", f"{f}/vmlinuz", "--deploy-ramdisk", f"{f}/initrd.img",
            "--deadline", str(INSTALL_S), "--ssh-wait", "300",
            # the lab's machines have SeaBIOS only; Ironic 39 would switch them to UEFI
            "--boot-mode", "bios", *extra]


@pytest.fixture
def ironic_boot(lab, net, serve):
    """dnsmasq chains iPXE to Ironic's boot script for this test, then back."""
    _dnsmasq(net, f"http://{net.host_address}:{prov_ironic.HTTP_ROOT_PORT}",
             "ironic")
    yield Ironic(IronicConfig(url=lab.ironic_url)).connect()
    _dnsmasq(net, serve["url"], "serve")


def test_through_ironic_a_failing_post_fails_the_node_with_the_installers_message(
        lab, env, node, serve, ironic_boot):
    """Through Ironic's anaconda deploy (``metalctl provision --via ironic``; a whole run
    through it to hand-off, with an attacker reading Ironic's ``ks.cfg``, is
    ``test_run_handoff_lab``)."""
    enroll = subprocess.run([*METALCTL, "enroll", "--provide"], env=env["env"],
                            capture_output=True, text=True, timeout=300)
    assert enroll.returncode == 0, enroll.stderr
    tpl = _failing_template(env)
    (tpl / "ironic-rhel9-kvm.ks.j2").write_text(
        (REPO / "kickstart" / "ironic-rhel9-kvm.ks.j2").read_text())
    (tpl / "ironic-fails.ks.j2").write_text(
        '{% extends "ironic-rhel9-kvm.ks.j2" %}\n{% block finish %}\n'
        "%post --erroronfail\necho 'metalctl-test: %post fails on purpose' >&2\nexit 3\n%end\n"
        "{{ super() }}\n{% endblock %}\n")
    site = _site(env, serve["tiny"], "tiny-site.yaml")
    args = _ironic_args(env, serve, site, "--redo", "--template", "ironic-fails",
                        "--template-dir", str(tpl))
    args[args.index("--image-source") + 1] = serve["tiny"]
    proc = _provision(env, node, *args)
    assert proc.returncode == 1, proc.stderr[-2000:]
    res = _result(proc)
    assert res["status"] == "failed", _why(lab, env, node, res)
    assert "the kickstart install of" in res["reason"], res["reason"]
    uuid = Store(Path(env["env"]["METALCTL_STORE"])).open().find(node["ref"])["ironic_uuid"]
    assert ironic_boot.node(uuid)["provision_state"] in ("deploy failed", "wait call-back")
