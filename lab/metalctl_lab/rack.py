"""``metalctl lab up|status|down``: an emulated rack made of real peers on loopback.

Layout for ``RackSpec(octet=N)`` (all on 127.N.0.0/16, nothing else):

* ``127.N.1.1…``  Redfish BMCs — sushy-tools' emulator, fake driver, HTTPS on
  443 with a lab CA, HTTP basic auth; each serves ``systems_per_bmc`` systems;
* ``127.N.2.1…``  IPMI BMCs — RMCP+ on UDP 623 (:mod:`metalctl_lab.ipmi_bmc`);
* ``127.N.3.1``   Redfish BMC backed by a private libvirtd (defined domains with
  CPUs, memory, NICs, a disk and BIOS), when ``libvirt_domains`` > 0;
* ``127.N.4.1:6385`` standalone Ironic (sqlite, noauth, no message bus);
* with ``provnet=M``: the provisioning network 10.M.0.0/24 (:mod:`metalctl_lab.provnet`),
  the private libvirtd inside its namespace and the domains' NICs on its bridge; the
  host reaches it at 10.M.0.1. Ironic then listens there instead (``10.M.0.1:6385``,
  ``ipxe`` boot and ``anaconda`` deploy configured, its ``http_root`` served at
  ``10.M.0.1:8089``: :mod:`metalctl_lab.prov_ironic`). dnsmasq is started on it by whoever
  renders its configuration (:meth:`ProvNet.start_dnsmasq`), and stopped by :func:`down`.

The ranges printed for discovery include ``dead`` addresses with nothing
behind them, as a real rack has.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

from metalctl_lab import ironic_conf, libvirt_lab, peers, pki, postgres, prov_ironic
from metalctl_lab.procs import alive, https_ready, spawn, wait_gone, wait_ready
from metalctl_lab.provnet import ProvNet
from metalctl_lab.spec import LAB_CREDENTIALS, LabState, RackSpec

LOG = logging.getLogger(__name__)


def default_dir() -> Path:
    return Path(os.environ.get("METALCTL_LAB_DIR",
                               Path.home() / ".local" / "state" / "metalctl" / "lab"))


def _htpasswd(path: Path, username: str, password: str) -> None:
    """bcrypt entry via the peers venv (sushy-tools' auth accepts bcrypt only).

    Cost 4 (bcrypt's minimum) because the emulator checks it on every request.
    """
    code = ("import bcrypt,sys; print(bcrypt.hashpw(sys.stdin.buffer.read(), "
            "bcrypt.gensalt(4)).decode())")
    proc = subprocess.run([str(peers.peer_bin("python")), "-c", code], input=password.encode(),
                          capture_output=True, check=True)
    path.touch(mode=0o600)
    path.write_text(f"{username}:{proc.stdout.decode().strip()}\n")


def _fake_systems(spec: RackSpec, bmc: int) -> list[dict[str, Any]]:
    return [
        {"uuid": spec.system_uuid("redfish", bmc, s), "name": f"lab-{bmc:02d}-{s:02d}",
         "power_state": "Off", "external_notifier": False,
         "nics": [{"mac": spec.system_mac(bmc, s, n), "ip": f"192.0.2.{(bmc * 16 + s) % 250}"}
                  for n in range(2)]}
        for s in range(spec.systems_per_bmc)
    ]


def _start_redfish(spec: RackSpec, d: Path, ca: Path, cert: Path, key: Path, htpasswd: Path,
                   state: LabState) -> list[tuple[str, Callable[[], bool], int, Path]]:
    waits = []
    for i in range(spec.redfish_bmcs):
        address = spec.redfish_address(i)
        cfg = d / f"redfish-{i}.conf.py"
        statedir = d / f"redfish-{i}.state"
        statedir.mkdir(exist_ok=True)
        cfg.write_text("\n".join([
            f"SUSHY_EMULATOR_LISTEN_IP = {address!r}",
            "SUSHY_EMULATOR_LISTEN_PORT = 443",
            f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}",
            f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}",
            f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}",
            f"SUSHY_EMULATOR_STATE_DIR = {str(statedir)!r}",
            "SUSHY_EMULATOR_FAKE_DRIVER = True",
            f"SUSHY_EMULATOR_FAKE_SYSTEMS = {_fake_systems(spec, i)!r}",
            "",
        ]))
        log = d / f"redfish-{i}.log"
        launcher = Path(__file__).with_name("redfish_bmc.py")
        pid = spawn([str(peers.peer_bin("python")), str(launcher), str(cfg),
                      str(spec.latency_of(i))], log)
        state.pids[f"redfish-{i}"] = pid
        waits.append((f"Redfish BMC {address}", https_ready(f"https://{address}/redfish/v1/", ca),
                      pid, log))
    return waits


def _start_ipmi(spec: RackSpec, d: Path, password: str, state: LabState
                ) -> list[tuple[str, Callable[[], bool], int, Path]]:
    from metalctl.bmc import probe
    from metalctl.budget import Budget

    waits = []
    vendors = [("Lenovo", "ThinkSystem SR630"), ("Supermicro", "SYS-1029P-WTR")]
    for i in range(spec.ipmi_bmcs):
        address = spec.ipmi_address(i)
        vendor, product = vendors[i % len(vendors)]
        cfg = d / f"ipmi-{i}.json"
        cfg.touch(mode=0o600)
        cfg.write_text(json.dumps({
            "address": address, "port": 623, "username": "admin", "password": password,
            "uuid": spec.system_uuid("ipmi", i, 0), "manufacturer": vendor, "product": product,
            "serial": f"LAB{spec.octet:02d}{i:04d}",
        }))
        log = d / f"ipmi-{i}.log"
        pid = spawn([peers.metalctl_python(), "-m", "metalctl_lab.ipmi_bmc", str(cfg)], log)
        state.pids[f"ipmi-{i}"] = pid

        def ready(address: str = address) -> bool:
            try:
                probe.probe_ipmi(address, 623, Budget(connect_timeout_s=0.5, attempts=1))
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return True
        waits.append((f"IPMI BMC {address}", ready, pid, log))
    return waits


def _start_ironic(spec: RackSpec, d: Path, state: LabState, net: ProvNet | None
                  ) -> list[tuple[str, Callable[[], bool], int, Path]]:
    """Start Ironic; with a provisioning network, on its host side with the ``ipxe`` boot
    and ``anaconda`` deploy settings and its ``http_root`` served there."""
    db_url = None
    if spec.db == "postgresql":
        db_url, data = postgres.start(d, f"127.{spec.octet}.4.2")
        state.postgres_data = str(data)
    waits = []
    anaconda = None
    if net is not None:
        anaconda = prov_ironic.anaconda(net.host_address, d, spec.ironic_port)
        http_log = d / "ironic-http.log"
        http_pid = prov_ironic.start_http_root(anaconda, net.host_address, http_log)
        state.pids["ironic-http"] = http_pid

        def http_ready(url: str = anaconda.http_url + "/") -> bool:
            try:
                return requests.head(url, timeout=1).status_code == 200
            except requests.RequestException:
                return False
        waits.append(("Ironic http_root", http_ready, http_pid, http_log))
    conf = ironic_conf.write(d, spec.ironic_address, spec.ironic_port, db_url, anaconda)
    subprocess.run([str(peers.peer_bin("ironic-dbsync")), "--config-file", str(conf),
                    "create_schema"], check=True, capture_output=True)
    log = d / "ironic.log"
    pid = spawn([str(peers.peer_bin("ironic")), "--config-file", str(conf)], log)
    state.pids["ironic"] = pid
    state.ironic_url = spec.ironic_url

    def ready() -> bool:
        try:
            return requests.get(spec.ironic_url + "/v1", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    return [*waits, ("Ironic", ready, pid, log)]


def up(spec: RackSpec | None = None, directory: Path | None = None, *,
       install: bool = True) -> LabState:
    """Start the lab (stopping an earlier one in the same directory first).

    Raises:
        LabError: a peer could not be installed or did not become ready.
    """
    spec = spec or RackSpec()
    d = Path(directory or default_dir())
    down(d)
    d.mkdir(parents=True, exist_ok=True)
    if install:
        peers.ensure()
    state = LabState(directory=str(d), spec=asdict(spec), ranges=spec.ranges())
    # 16 characters: IPMI v2.0 passwords are at most 20 bytes (ipmitool truncates longer ones)
    password = secrets.token_urlsafe(12)
    ca, ca_key = pki.make_ca(d)
    addresses = [spec.redfish_address(i) for i in range(spec.redfish_bmcs)]
    addresses.append(spec.libvirt_address)
    cert, key = pki.issue_server(d, ca, ca_key, addresses)
    htpasswd = d / "htpasswd"
    _htpasswd(htpasswd, "admin", password)
    creds = d / "credentials.yaml"
    creds.touch(mode=0o600)
    creds.write_text(f"{LAB_CREDENTIALS}:\n  - username: admin\n    password: '{password}'\n")
    state.ca_bundle, state.credentials_file = str(ca), str(creds)
    waits = []
    try:
        net = None
        if spec.provnet is not None:
            net = ProvNet(d, spec.provnet)
            state.provnet = net.describe()
            state.save()  # down() finds the namespace even if up() fails below
            net.up()
        if spec.ironic:
            waits += _start_ironic(spec, d, state, net)
        waits += _start_redfish(spec, d, ca, cert, key, htpasswd, state)
        waits += _start_ipmi(spec, d, password, state)
        if spec.libvirt_domains:
            waits += libvirt_lab.start(spec, d, ca, cert, key, htpasswd, state, net)
        state.save()
        for what, ready, pid, log in waits:
            wait_ready(what, ready, pid, log, 90.0)
    except BaseException:
        state.save()
        down(d)
        raise
    return state


@contextlib.contextmanager
def running(spec: RackSpec, directory: Path, *, install: bool = False) -> Iterator[LabState]:
    """The lab up for the ``with`` block and down after it, whatever happens inside."""
    state = up(spec, directory, install=install)
    try:
        yield state
    finally:
        down(directory)


def provnet(state: LabState) -> ProvNet | None:
    """The lab's provisioning network, when it has one."""
    if not state.provnet:
        return None
    return ProvNet(Path(state.directory), int(state.provnet["net"]))


def status(directory: Path | None = None) -> dict[str, Any]:
    """Which lab processes are alive."""
    d = Path(directory or default_dir())
    state = LabState.load(d)
    if state is None:
        return {"directory": str(d), "running": False, "processes": {}}
    procs = {name: alive(pid) for name, pid in state.pids.items()}
    net = provnet(state)
    if net is not None and net.dnsmasq_started:
        procs["dnsmasq"] = net.dnsmasq_pid() is not None
    return {"directory": str(d), "running": bool(procs) and all(procs.values()),
            "processes": procs, "ranges": state.ranges, "ironic_url": state.ironic_url,
            "provnet": state.provnet, "env": state.env()}


def down(directory: Path | None = None) -> list[str]:
    """Stop every process of the lab in ``directory``; returns the names stopped."""
    d = Path(directory or default_dir())
    state = LabState.load(d)
    if state is None:
        return []
    stopped = []
    if "libvirtd" in state.pids and alive(state.pids["libvirtd"]):
        # QEMU processes of domains that were powered on (BIOS apply reboots a node)
        # leave libvirtd's process group; destroy them while libvirtd still answers
        libvirt_lab.destroy_domains(d)
    for name, pid in state.pids.items():
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(name)
    wait_gone(state.pids.values(), 10, interval_s=0.1)
    for pid in state.pids.values():
        if alive(pid):
            LOG.warning("lab: pid %d ignored SIGTERM; killing", pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    net = provnet(state)
    if net is not None:  # after libvirtd, whose QEMUs hold taps on the bridge
        net.down()
        stopped.append(f"provnet {net.namespace}")
        state.provnet = None
    if state.postgres_data:
        postgres.stop(Path(state.postgres_data))
        stopped.append("postgres")
        state.postgres_data = None
    state.pids = {}
    state.save()
    return stopped
