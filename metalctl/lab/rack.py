"""``metalctl lab up|status|down``: an emulated rack made of real peers on loopback.

Layout for ``RackSpec(octet=N)`` (all on 127.N.0.0/16, nothing else):

* ``127.N.1.1…``  Redfish BMCs — sushy-tools' emulator, fake driver, HTTPS on
  443 with a lab CA, HTTP basic auth; each serves ``systems_per_bmc`` systems;
* ``127.N.2.1…``  IPMI BMCs — RMCP+ on UDP 623 (:mod:`metalctl.lab.ipmi_bmc`);
* ``127.N.3.1``   Redfish BMC backed by a private libvirtd (defined domains with
  CPUs, memory, NICs, a disk and BIOS), when ``libvirt_domains`` > 0;
* ``127.N.4.1:6385`` standalone Ironic (sqlite, noauth, no message bus).

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
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from metalctl.errors import LabError
from metalctl.lab import ironic_conf, libvirt_lab, peers, pki, postgres

LOG = logging.getLogger(__name__)
LAB_CREDENTIALS = "lab"
NAMESPACE = uuid.UUID("6f0f1d2a-3c5e-4b8f-9a7d-0e1c2b3a4d5e")


@dataclass(frozen=True)
class RackSpec:
    """What to emulate. ``octet`` picks 127.<octet>.0.0/16 so labs can coexist."""

    octet: int = 10
    redfish_bmcs: int = 3
    systems_per_bmc: int = 2
    ipmi_bmcs: int = 2
    libvirt_domains: int = 2
    dead: int = 2
    ironic: bool = True
    ironic_port: int = 6385
    #: per-request latency of the Redfish BMCs, spread linearly from min to max across
    #: BMCs (the last one is the slowest); 0 = as fast as the emulator
    latency_ms: tuple[float, float] = (0.0, 0.0)
    #: Ironic's database: "sqlite" (the standalone default) or "postgresql"
    db: str = "sqlite"

    def latency_of(self, i: int) -> float:
        low, high = self.latency_ms
        if self.redfish_bmcs <= 1:
            return high
        return low + (high - low) * i / (self.redfish_bmcs - 1)

    def redfish_address(self, i: int) -> str:
        return f"127.{self.octet}.1.{i + 1}"

    def ipmi_address(self, i: int) -> str:
        return f"127.{self.octet}.2.{i + 1}"

    @property
    def libvirt_address(self) -> str:
        return f"127.{self.octet}.3.1"

    @property
    def ironic_address(self) -> str:
        return f"127.{self.octet}.4.1"

    @property
    def ironic_url(self) -> str:
        return f"http://{self.ironic_address}:{self.ironic_port}"

    def ranges(self) -> list[str]:
        """Address ranges to hand to ``metalctl discover`` (with dead addresses)."""
        out = []
        if self.redfish_bmcs:
            out.append(f"127.{self.octet}.1.1-{self.redfish_bmcs + self.dead}")
        if self.ipmi_bmcs:
            out.append(f"127.{self.octet}.2.1-{self.ipmi_bmcs + self.dead}")
        if self.libvirt_domains:
            out.append(self.libvirt_address)
        return out

    def system_mac(self, bmc: int, system: int, nic: int) -> str:
        return f"52:54:{self.octet:02x}:{bmc:02x}:{system:02x}:{nic:02x}"

    def system_uuid(self, kind: str, bmc: int, system: int) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.octet}/{kind}/{bmc}/{system}"))


@dataclass
class LabState:
    """What ``lab up`` started; saved as ``lab.json`` in the lab directory."""

    directory: str
    spec: dict[str, Any]
    pids: dict[str, int] = field(default_factory=dict)
    ranges: list[str] = field(default_factory=list)
    ironic_url: str | None = None
    ca_bundle: str | None = None
    credentials_file: str | None = None
    postgres_data: str | None = None

    def save(self) -> None:
        Path(self.directory, "lab.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        path = directory / "lab.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def env(self) -> dict[str, str]:
        """Environment that points metalctl at this lab (``metalctl lab env``)."""
        env = {"METALCTL_CREDENTIALS_FILE": str(self.credentials_file),
               "METALCTL_CA_BUNDLE": str(self.ca_bundle),
               "METALCTL_STORE": str(Path(self.directory, "metalctl.db"))}
        if self.ironic_url:
            env["METALCTL_IRONIC_URL"] = self.ironic_url
        return env


def default_dir() -> Path:
    return Path(os.environ.get("METALCTL_LAB_DIR",
                               Path.home() / ".local" / "state" / "metalctl" / "lab"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})
    return proc.pid


def _wait(what: str, ready: Callable[[], bool], pid: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not _alive(pid):
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise LabError(reason=f"{what} exited during start-up; log {log}:\n{tail}")
        time.sleep(0.2)
    raise LabError(reason=f"{what} not ready within {timeout_s:g}s; see {log}")


def _https_ready(url: str, ca: Path) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, verify=str(ca), timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False
    return check


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
        pid = _spawn([str(peers.peer_bin("python")), str(launcher), str(cfg),
                      str(spec.latency_of(i))], log)
        state.pids[f"redfish-{i}"] = pid
        waits.append((f"Redfish BMC {address}", _https_ready(f"https://{address}/redfish/v1/", ca),
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
        pid = _spawn([peers.metalctl_python(), "-m", "metalctl.lab.ipmi_bmc", str(cfg)], log)
        state.pids[f"ipmi-{i}"] = pid

        def ready(address: str = address) -> bool:
            try:
                probe.probe_ipmi(address, 623, Budget(connect_timeout_s=0.5, attempts=1))
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return True
        waits.append((f"IPMI BMC {address}", ready, pid, log))
    return waits


def _start_ironic(spec: RackSpec, d: Path, state: LabState
                  ) -> list[tuple[str, Callable[[], bool], int, Path]]:
    db_url = None
    if spec.db == "postgresql":
        db_url, data = postgres.start(d, f"127.{spec.octet}.4.2")
        state.postgres_data = str(data)
    conf = ironic_conf.write(d, spec.ironic_address, spec.ironic_port, db_url)
    subprocess.run([str(peers.peer_bin("ironic-dbsync")), "--config-file", str(conf),
                    "create_schema"], check=True, capture_output=True)
    log = d / "ironic.log"
    pid = _spawn([str(peers.peer_bin("ironic")), "--config-file", str(conf)], log)
    state.pids["ironic"] = pid
    state.ironic_url = spec.ironic_url

    def ready() -> bool:
        try:
            return requests.get(spec.ironic_url + "/v1", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    return [("Ironic", ready, pid, log)]


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
        if spec.ironic:
            waits += _start_ironic(spec, d, state)
        waits += _start_redfish(spec, d, ca, cert, key, htpasswd, state)
        waits += _start_ipmi(spec, d, password, state)
        if spec.libvirt_domains:
            waits += libvirt_lab.start(spec, d, ca, cert, key, htpasswd, state)
        state.save()
        for what, ready, pid, log in waits:
            _wait(what, ready, pid, log, 90.0)
    except BaseException:
        state.save()
        down(d)
        raise
    return state


def status(directory: Path | None = None) -> dict[str, Any]:
    """Which lab processes are alive."""
    d = Path(directory or default_dir())
    state = LabState.load(d)
    if state is None:
        return {"directory": str(d), "running": False, "processes": {}}
    procs = {name: _alive(pid) for name, pid in state.pids.items()}
    return {"directory": str(d), "running": bool(procs) and all(procs.values()),
            "processes": procs, "ranges": state.ranges, "ironic_url": state.ironic_url,
            "env": state.env()}


def down(directory: Path | None = None) -> list[str]:
    """Stop every process of the lab in ``directory``; returns the names stopped."""
    d = Path(directory or default_dir())
    state = LabState.load(d)
    if state is None:
        return []
    stopped = []
    if "libvirtd" in state.pids and _alive(state.pids["libvirtd"]):
        # QEMU processes of domains that were powered on (BIOS apply reboots a node)
        # leave libvirtd's process group; destroy them while libvirtd still answers
        libvirt_lab.destroy_domains(d)
    for name, pid in state.pids.items():
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in state.pids.values()):
        time.sleep(0.1)
    for pid in state.pids.values():
        if _alive(pid):
            LOG.warning("lab: pid %d ignored SIGTERM; killing", pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if state.postgres_data:
        postgres.stop(Path(state.postgres_data))
        stopped.append("postgres")
        state.postgres_data = None
    state.pids = {}
    state.save()
    return stopped
