"""A real Nova control plane on loopback: RabbitMQ, Placement, nova-api, conductor, scheduler.

Recipes and versions are the ones verified in ../shared/LAB.md ("Nova and Placement on
loopback"): nova 34.0.0 and openstack-placement 16 from the Nova venv
(:mod:`metalctl_lab.nova_venv`), Debian's ``rabbitmq-server`` started without systemd,
every database on a private PostgreSQL (:mod:`metalctl_lab.nova_db`). Without Keystone:

* Placement keeps ``[api] auth_strategy = noauth2``: ``X-Auth-Token: admin`` is admin;
* Nova 34 has no noauth2, so the lab's api-paste pipeline (nova's own file, with
  ``authtoken`` taken out) lets ``NovaKeystoneContext`` read ``X-User-Id``,
  ``X-Project-Id`` and ``X-Roles`` as keystonemiddleware would have set them.

Addresses (from ``address_base``, all in 127.0.0.0/8): +1 epmd and RabbitMQ, +2
Placement (8778), +3 nova-api (8774). With ``bind_address`` instead, every service listens
on that one address (its own port each): the lab SSH hosts live in network namespaces
where this machine's 127.x is not reachable, so their nova-compute needs the control
plane on their bridge's gateway (``HostLab.gateway``, e.g. 10.206.0.1).

Everything lives in the lab directory: configs, the PostgreSQL cluster, RabbitMQ's mnesia and
cookie, one log per process under ``logs/``, and ``nova-lab.json`` with the process ids
(:func:`down` stops them, even from another process). A compute's configuration is
rendered by the hand-off stage from a profile plan and :meth:`NovaLab.site`;
:func:`start_compute` runs it against a libvirtd.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from metalctl.errors import LabError
from metalctl_lab import glance, libvirt_lab, nova_db, nova_venv
from metalctl_lab.procs import alive, http_ready, spawn, wait_ready

LOG = logging.getLogger(__name__)

RABBIT_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD_PORT = 14369  # not 4369: a system epmd on 0.0.0.0 would make our bind fail
RABBIT_PORT, RABBIT_DIST_PORT = 5672, 25672
PLACEMENT_PORT, API_PORT = 8778, 8774
STATE_FILE = "nova-lab.json"
#: Nova 34's default filters plus the two a profiled host needs (LAB.md)
ENABLED_FILTERS = ("ComputeFilter", "ComputeCapabilitiesFilter", "ImagePropertiesFilter",
                   "ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter",
                   "NUMATopologyFilter", "PciPassthroughFilter")
#: nova's API headers without Keystone (see the module docstring)
API_HEADERS = {"X-User-Id": "metalctl-lab", "X-Project-Id": "metalctl-lab",
               "X-Roles": "admin,member,reader", "Accept": "application/json"}
PLACEMENT_TOKEN = "admin"  # noqa: S105 - noauth2: the token *is* the role, not a secret
#: Nova services wait up to 180 s on SIGTERM by default (graceful_shutdown_timeout);
#: with these a stopped service is gone in about 3 s (LAB.md)
SHUTDOWN = {"graceful_shutdown_timeout": "2", "manager_shutdown_timeout": "0"}
STOP_ORDER = ("nova-compute", "libvirtd", "nova-api", "nova-scheduler", "nova-conductor",
              "glance", "neutron-standin", "placement",
              "rabbitmq", "epmd")


@dataclass
class NovaLab:
    """What :func:`up` started; saved as ``nova-lab.json`` in the lab directory."""

    directory: str
    address_base: str
    pids: dict[str, int] = field(default_factory=dict)
    rabbit_password: str = field(default="", repr=False)  # lab-only, also in the 0600 files
    bind_address: str = ""  # set: every service on this one address (see the docstring)
    #: the scheduler maps new computes into cell1 this often; -1: never (a site that runs
    #: ``nova-manage cell_v2 discover_hosts`` itself)
    discover_interval_s: int = 2
    #: RabbitMQ's ports on :attr:`rabbit_address`, chosen when the lab is prepared: the
    #: usual ones unless another program (a system RabbitMQ) holds them
    rabbit_port: int = RABBIT_PORT
    rabbit_dist_port: int = RABBIT_DIST_PORT
    epmd_port: int = EPMD_PORT
    #: Glance (+4) and the Neutron stand-in (+5) beside Nova, for guests (the canary)
    image_service: bool = False
    canary_image: str = ""  # the canary's Glance image id, once uploaded

    @property
    def dir(self) -> Path:
        return Path(self.directory)

    def address(self, offset: int) -> str:
        """Return the address ``offset`` past the lab's base address (or the one bind
        address every service shares)."""
        if self.bind_address:
            return self.bind_address
        return str(ipaddress.IPv4Address(self.address_base) + offset)

    @property
    def rabbit_address(self) -> str:
        return self.address(1)

    @property
    def placement_url(self) -> str:
        return f"http://{self.address(2)}:{PLACEMENT_PORT}"

    @property
    def api_url(self) -> str:
        return f"http://{self.address(3)}:{API_PORT}/v2.1"

    @property
    def glance_url(self) -> str:
        return f"http://{self.address(4)}:{glance.GLANCE_PORT}"

    @property
    def neutron_url(self) -> str:
        return f"http://{self.address(5)}:{glance.NEUTRON_PORT}"

    def peer_options(self) -> dict[str, dict[str, str]]:
        """``[glance]`` and ``[neutron]`` for every Nova service of the lab, computes
        included (none without :attr:`image_service`)."""
        return glance.nova_options(self.glance_url, self.neutron_url) \
            if self.image_service else {}

    @property
    def credentials_file(self) -> Path:
        """Credential sets ``nova-lab-rabbit`` and ``nova-lab-placement`` (0600)."""
        return self.dir / "credentials.yaml"

    def log(self, name: str) -> Path:
        """Return the log file path of service ``name``."""
        return self.dir / "logs" / f"{name}.log"

    def transport_url(self) -> str:
        """Return the RabbitMQ transport URL the Nova services use."""
        return f"rabbit://nova:{self.rabbit_password}@{self.rabbit_address}:{self.rabbit_port}/"

    def discover_hosts_command(self) -> str:
        """``nova-manage cell_v2 discover_hosts`` as a controller of this lab runs it (a
        shell on this machine: the lab's databases are files here)."""
        return (f"{nova_venv.nova_bin('nova-manage')} --config-file "
                f"{self.dir / 'nova' / 'nova.conf'} cell_v2 discover_hosts --by-service --verbose")

    def site(self) -> dict[str, Any]:
        """A site ``nova:`` section (schema ``site-nova``) pointing computes at this lab."""
        return {"transport": {"hosts": [f"{self.rabbit_address}:{self.rabbit_port}"],
                              "credentials": "nova-lab-rabbit"},
                "placement": {"auth_type": "admin_token", "endpoint": self.placement_url,
                              "credentials": "nova-lab-placement"},
                "graceful_shutdown_timeout": int(SHUTDOWN["graceful_shutdown_timeout"])}

    def save(self) -> None:
        """Write the lab state (passwords included) to its directory, mode 0600."""
        path = self.dir / STATE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)

    @classmethod
    def load(cls, directory: Path) -> NovaLab | None:
        """Return the lab saved in ``directory``, or None when there is none."""
        path = Path(directory) / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None

    # --- the peers' own answers ------------------------------------------------------

    def api(self, path: str, timeout_s: float = 10) -> Any:
        """GET nova-api ``path`` (under /v2.1) as the lab's admin; the JSON answer."""
        return _get_json(self.api_url + path, API_HEADERS, timeout_s)

    def placement(self, path: str, microversion: str = "1.39", timeout_s: float = 10) -> Any:
        """GET Placement ``path`` with the noauth2 admin token; the JSON answer."""
        return _get_json(self.placement_url + path,
                         {"X-Auth-Token": PLACEMENT_TOKEN, "Accept": "application/json",
                          "OpenStack-API-Version": f"placement {microversion}"}, timeout_s)


def _get_json(url: str, headers: dict[str, str], timeout_s: float) -> Any:
    try:
        resp = requests.get(url, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise LabError(reason=f"GET {url}: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise LabError(reason=f"GET {url}: HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _tcp_ready(address: str, port: int) -> Any:
    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.5):
            return True
        return False
    return check


# --- RabbitMQ --------------------------------------------------------------------------


def _free_port(address: str, preferred: int, *, also: tuple[str, ...] = ()) -> int:
    """``preferred`` when nothing listens on it for ``address`` (a wildcard listener of
    another program counts), else a free port the kernel picks; with ``also``, the port
    must be free on those addresses too."""
    for _ in range(20):
        for port in (preferred, 0):
            with socket.socket() as s:
                try:
                    s.bind((address, port))
                except OSError:
                    continue
                port = s.getsockname()[1]
            if all(_bindable(a, port) for a in also):
                return port
        preferred = 0
    raise LabError(reason=f"no free TCP port on {address}")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
        return True


def rabbit_files(lab: NovaLab) -> dict[str, str]:
    """RabbitMQ's configuration files, by path under ``rabbitmq/`` (pure)."""
    return {"rabbitmq.conf": (f"listeners.tcp.1 = {lab.rabbit_address}:{lab.rabbit_port}\n"
                              "loopback_users = none\n"
                              f"default_user = nova\ndefault_pass = {lab.rabbit_password}\n"),
            "enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "",  # not /etc/rabbitmq's
            "advanced.config": "[].\n"}


def rabbit_env(lab: NovaLab) -> dict[str, str]:
    """The environment of epmd and RabbitMQ: every file under ``rabbitmq/``, its own node
    name, epmd and distribution port, so another RabbitMQ on this machine (a system one
    on 0.0.0.0:4369/5672/25672) is neither joined nor in the way."""
    base = lab.dir / "rabbitmq"
    addr = lab.rabbit_address
    dist_interface = "{" + addr.replace(".", ",") + "}"
    return {
        "ERL_EPMD_ADDRESS": addr, "ERL_EPMD_PORT": str(lab.epmd_port), "HOME": str(base),
        "RABBITMQ_NODENAME": f"rabbit@{addr}", "RABBITMQ_USE_LONGNAME": "true",
        "RABBITMQ_DIST_PORT": str(lab.rabbit_dist_port),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {dist_interface}",
    }


def _start_rabbit(lab: NovaLab) -> None:
    """epmd in the foreground (so it is ours to stop), then RabbitMQ, state in ``rabbitmq/``."""
    base = lab.dir / "rabbitmq"
    for sub in ("mnesia", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for name, text in rabbit_files(lab).items():
        _write_private(base / name, text)
    env = rabbit_env(lab)
    addr = lab.rabbit_address
    lab.pids["epmd"] = spawn(["epmd", "-address", addr, "-port", str(lab.epmd_port)],
                             lab.log("epmd"), {k: env[k] for k in ("ERL_EPMD_ADDRESS",
                                                                   "ERL_EPMD_PORT", "HOME")})
    wait_ready("epmd", _tcp_ready(addr, lab.epmd_port), lab.pids["epmd"], lab.log("epmd"), 10)
    lab.pids["rabbitmq"] = spawn([str(RABBIT_SERVER)], lab.log("rabbitmq"), env)


def _rabbit_ready(lab: NovaLab, timeout_s: float) -> None:
    wait_ready("RabbitMQ", _tcp_ready(lab.rabbit_address, lab.rabbit_port), lab.pids["rabbitmq"],
               lab.log("rabbitmq"), timeout_s)


# --- configuration and databases ---------------------------------------------------------


def _controller_conf(lab: NovaLab) -> str:
    state = lab.dir / "nova" / "state"
    lines = {
        "DEFAULT": {"transport_url": lab.transport_url(), "state_path": str(state),
                    "host": "metalctl-lab-controller", "my_ip": lab.address(3),
                    # the scheduler's first periodic discover_hosts otherwise waits a
                    # random 0-60 s
                    "periodic_fuzzy_delay": "0", "tempdir": str(lab.dir / "nova" / "tmp"),
                    **SHUTDOWN},
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": nova_db.url(lab, "nova_api")},
        "database": {"connection": nova_db.url(lab, "nova_cell1")},
        "conductor": {"workers": "1"},
        # maps new computes into cell1 every 2 s, as a site may choose instead of running
        # `nova-manage cell_v2 discover_hosts` after each
        "scheduler": {"workers": "1",
                      "discover_hosts_in_cells_interval": str(lab.discover_interval_s)},
        "placement": {"auth_type": "admin_token", "endpoint": lab.placement_url,
                      "token": PLACEMENT_TOKEN},
        "oslo_concurrency": {"lock_path": str(lab.dir / "nova" / "locks")},
        "oslo_messaging_rabbit": {"heartbeat_timeout_threshold": "0"},
        # Nova 34's default filters lack NUMATopologyFilter: without it a second pinned
        # guest, or one with more hugepages than a node has, is scheduled and fails
        "filter_scheduler": {"enabled_filters": ",".join(ENABLED_FILTERS)},
        **_private_paths(lab.dir / "nova"),
        **lab.peer_options(),
    }
    return "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items()) + "\n"
                   for s, opts in lines.items())


def _private_paths(d: Path) -> dict[str, dict[str, str]]:
    """oslo.policy searches ``~/.<project>``, ``~``, ``/etc/<project>`` and ``/etc`` for a
    relative ``policy_file`` and ``policy_dirs``: name files in the lab directory (they
    need not exist; missing ones mean the project's default policy)."""
    return {"oslo_policy": {"policy_file": str(d / "policy.yaml"),
                            "policy_dirs": str(d / "policy.d")}}


def placement_conf(lab: NovaLab) -> str:
    """Placement's configuration (pure)."""
    lines = {"api": {"auth_strategy": "noauth2"},
             "placement_database": {"connection": nova_db.url(lab, "placement")},
             **_private_paths(lab.dir / "placement")}
    return "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items()) + "\n"
                   for s, opts in lines.items() if opts)


def _api_paste(venv: Path) -> str:
    """Nova's own api-paste.ini with ``authtoken`` taken out of the v2.1 pipelines."""
    original = (venv / "etc" / "nova" / "api-paste.ini").read_text()
    trimmed = original.replace(" authtoken keystonecontext", " keystonecontext")
    if "authtoken keystonecontext" in trimmed or trimmed == original:
        raise LabError(reason="nova's api-paste.ini changed shape: cannot take authtoken out")
    return trimmed


def _write_configs(lab: NovaLab, venv: Path) -> None:
    for sub in ("nova/state", "nova/locks", "nova/tmp", "logs", "placement"):
        (lab.dir / sub).mkdir(parents=True, exist_ok=True)
    _write_private(lab.dir / "nova" / "nova.conf", _controller_conf(lab))
    (lab.dir / "nova" / "api-paste.ini").write_text(_api_paste(venv))
    # nova's WSGI app parses sys.argv: gunicorn's arguments would be "unrecognized"
    (lab.dir / "nova" / "nova_api_shim.py").write_text(
        "import sys\nsys.argv = sys.argv[:1]\n"
        "from nova.wsgi.osapi_compute import application  # noqa: E402,F401\n")
    (lab.dir / "placement" / "placement.conf").write_text(placement_conf(lab))
    _write_private(lab.credentials_file, yaml.safe_dump({
        "nova-lab-rabbit": [{"username": "nova", "password": lab.rabbit_password}],
        "nova-lab-placement": [{"username": "admin", "password": PLACEMENT_TOKEN}]}))


def _manage(lab: NovaLab, what: str, argv: list[str], env: dict[str, str] | None = None,
            timeout_s: float = 180) -> None:
    log = lab.log("manage")
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                                  env={**os.environ, **(env or {})}, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise LabError(reason=f"{what} took over {timeout_s:g} s; see {log}") from None
    if proc.returncode != 0:
        raise LabError(reason=f"{what} failed (exit {proc.returncode}); see {log}")


def _sync_databases(lab: NovaLab) -> None:
    """The lab's PostgreSQL with Nova's and Placement's databases synced
    (:mod:`metalctl_lab.nova_db`: from its cache when it has them)."""
    nova_db.start(lab, lambda: nova_db.sync_all(
        lab, lambda what, argv: _manage(lab, what, argv), lab.dir / "nova" / "nova.conf",
        lab.dir / "placement" / "placement.conf"))


# --- services ------------------------------------------------------------------------------


def _gunicorn(lab: NovaLab, name: str, bind: str, app: str, chdir: Path,
              env: dict[str, str]) -> None:
    # --no-control-socket: gunicorn 26+ otherwise shares ~/.gunicorn/gunicorn.ctl
    argv = [str(nova_venv.nova_bin("gunicorn")), "--no-control-socket", "--workers", "1",
            "--bind", bind, "--chdir", str(chdir), "--timeout", "120", app]
    lab.pids[name] = spawn(argv, lab.log(name), env)


def _start_services(lab: NovaLab) -> None:
    conf = str(lab.dir / "nova" / "nova.conf")
    _gunicorn(lab, "placement", f"{lab.address(2)}:{PLACEMENT_PORT}",
              "placement.wsgi.api:application", lab.dir / "placement",
              {"OS_PLACEMENT_CONFIG_DIR": str(lab.dir / "placement")})
    for service in ("nova-conductor", "nova-scheduler"):
        lab.pids[service] = spawn([str(nova_venv.nova_bin(service)), "--config-file", conf],
                                  lab.log(service))
    _start_api(lab)


def _start_api(lab: NovaLab) -> None:
    _gunicorn(lab, "nova-api", f"{lab.address(3)}:{API_PORT}", "nova_api_shim:application",
              # the paste file comes first: nova's wsgi_app loads the app from files[0]
              lab.dir / "nova", {"OS_NOVA_CONFIG_DIR": str(lab.dir / "nova"),
                                 "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf"})


def stop_service(lab: NovaLab, name: str, timeout_s: float = 20) -> None:
    """Stop one service of a running lab (``nova-api`` for the "Nova is down" fault)."""
    pid = lab.pids.pop(name, None)
    lab.save()
    if pid is None or not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        LOG.warning("lab: %s (pid %d) ignored SIGTERM for %g s; killing", name, pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def start_api(lab: NovaLab, timeout_s: float = 60) -> None:
    """(Re)start nova-api of a running lab and wait until it answers.

    Raises:
        LabError: it did not answer within ``timeout_s``; names its log.
    """
    _start_api(lab)
    lab.save()
    wait_ready("nova-api", http_ready(lab.api_url + "/"), lab.pids["nova-api"],
               lab.log("nova-api"), timeout_s)


def services_up(lab: NovaLab, binaries: tuple[str, ...], host: str | None = None) -> bool:
    """True when nova-api lists each binary (on ``host`` when given) ``up``."""
    try:
        listed = lab.api("/os-services", timeout_s=5)["services"]
    except LabError:
        return False
    up_ = {s["binary"] for s in listed if s["state"] == "up"
           and (host is None or s["host"] == host)}
    return set(binaries) <= up_


def _wait_services(lab: NovaLab, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if services_up(lab, ("nova-conductor", "nova-scheduler")):
            return
        for name in ("nova-conductor", "nova-scheduler", "nova-api"):
            if not alive(lab.pids[name]):
                raise LabError(reason=f"{name} exited during start-up; see {lab.log(name)}")
        time.sleep(0.5)
    raise LabError(reason=f"nova-conductor/nova-scheduler not 'up' in /os-services within "
                          f"{timeout_s:g} s; see {lab.log('nova-conductor')} and "
                          f"{lab.log('nova-scheduler')}")


def prepare(directory: Path, address_base: str, *, bind_address: str | None = None,
            discover_interval_s: int = 2, image_service: bool = False) -> NovaLab:
    """Write the lab's configuration and credentials; start nothing.

    What a compute's configuration needs (:meth:`NovaLab.site`, the credentials file)
    exists from here on, so it can be rendered and validated while :func:`start` runs.

    Args:
        directory: the lab directory.
        address_base: loopback base address (services on +1..+3).
        bind_address: instead, one address of a lab bridge in 10.0.0.0/8 that every
            service shares (for computes inside the lab hosts' network namespaces).
        discover_interval_s: the scheduler's ``discover_hosts_in_cells_interval``
            (-1: computes are mapped only by ``nova-manage cell_v2 discover_hosts``).
        image_service: also Glance and the Neutron stand-in (:mod:`metalctl_lab.glance`),
            with the canary image uploaded by :func:`start`.

    Raises:
        LabError: not a loopback (or lab bridge) address, RabbitMQ not installed, or a
            lab already running in ``directory``.
    """
    base = ipaddress.IPv4Address(bind_address or address_base)
    if bind_address and base not in ipaddress.IPv4Network("10.0.0.0/8"):
        raise LabError(reason=f"{bind_address} is not a lab bridge address (10.0.0.0/8)")
    if not bind_address and base not in ipaddress.IPv4Network("127.0.0.0/8"):
        raise LabError(reason=f"{address_base} is not a loopback address")
    if not RABBIT_SERVER.exists():
        raise LabError(reason=f"{RABBIT_SERVER} missing: apt-get install rabbitmq-server")
    directory = Path(directory)
    previous = NovaLab.load(directory)
    if previous and any(alive(p) for p in previous.pids.values()):
        raise LabError(reason=f"a Nova lab is already running in {directory}; stop it first")
    venv = nova_venv.ensure()
    directory.mkdir(parents=True, exist_ok=True)
    lab = NovaLab(str(directory), str(base), rabbit_password=secrets.token_urlsafe(18),
                  bind_address=bind_address or "", discover_interval_s=discover_interval_s,
                  image_service=image_service)
    lab.rabbit_port = _free_port(lab.rabbit_address, RABBIT_PORT)
    # RabbitMQ's prelaunch check listens on the distribution port on every address
    # (dist_port_already_used ... not_erlang when another lab's node holds it elsewhere)
    lab.rabbit_dist_port = _free_port(lab.rabbit_address, RABBIT_DIST_PORT,
                                      also=("0.0.0.0",))
    # epmd listens on the loopback address too, whatever -address says (epmd(1)): a
    # second lab on another address (the demo's, left running) holds 127.0.0.1:14369
    lab.epmd_port = _free_port(lab.rabbit_address, EPMD_PORT, also=("127.0.0.1",))
    _write_configs(lab, venv)
    if image_service:
        nova_venv.ensure_glance()
        glance.prepare(lab.dir, lab.address(4))
    lab.save()
    return lab


def start(lab: NovaLab, *, timeout_s: float = 120) -> NovaLab:
    """Start a prepared lab: RabbitMQ, Placement, nova-api, conductor, scheduler.

    Raises:
        LabError: something did not start; the message names the log to read. What was
            started is stopped again.
    """
    try:
        _start_rabbit(lab)
        lab.save()
        _sync_databases(lab)  # while RabbitMQ boots
        _rabbit_ready(lab, timeout_s)
        _start_services(lab)
        if lab.image_service:
            glance.start(lab.dir, lab.address(4), lab.address(5), lab.pids, lab.log)
        lab.save()
        wait_ready("Placement", http_ready(lab.placement_url + "/"), lab.pids["placement"],
                   lab.log("placement"), timeout_s)
        wait_ready("nova-api", http_ready(lab.api_url + "/"), lab.pids["nova-api"],
                   lab.log("nova-api"), timeout_s)
        _wait_services(lab, timeout_s)
        if lab.image_service:
            glance.wait(lab.address(4), lab.address(5), lab.pids, lab.log, timeout_s)
            lab.canary_image = glance.upload_canary(lab.glance_url)
            lab.save()
    except BaseException:
        down(lab.dir)
        raise
    return lab


def up(directory: Path, address_base: str, *, timeout_s: float = 120,
       bind_address: str | None = None, discover_interval_s: int = 2) -> NovaLab:
    """Start RabbitMQ, Placement, nova-api, nova-conductor and nova-scheduler.

    Args:
        directory: the lab directory (created; everything is kept under it).
        address_base: an IPv4 address in 127.0.0.0/8; the services use the next three.
        timeout_s: bound on each readiness wait.
        bind_address: every service on this one lab-bridge address (see :func:`prepare`).
        discover_interval_s: the scheduler's discover interval (see :func:`prepare`).

    Returns:
        The running lab, also saved in ``directory/nova-lab.json``.

    Raises:
        LabError: something did not start; the message names the log to read. What was
            started is stopped again.
    """
    return start(prepare(directory, address_base, bind_address=bind_address,
                         discover_interval_s=discover_interval_s), timeout_s=timeout_s)


def start_libvirtd(lab: NovaLab, *, warm: bool = True) -> str:
    """A private libvirtd for the lab's computes (own /etc/libvirt, /run/libvirt and
    /var/lib/libvirt in a mount namespace: the machine's libvirt is untouched).

    Call it before :func:`start` runs or after it returned (both record pids). With
    ``warm``, QEMU's capabilities are probed at once (:func:`warm_libvirtd`).

    Returns:
        The ``[libvirt] connection_uri`` that reaches it.

    Raises:
        LabError: libvirtd did not start or did not answer; names its log.
    """
    # the rack lab's recipe; it records its pid in ``.pids`` of the object it is given
    libvirt_lab._start_libvirtd(lab.dir, lab)  # type: ignore[arg-type]
    lab.save()
    if warm:
        warm_libvirtd(lab)
    return libvirt_lab.uri(lab.dir)


def warm_libvirtd(lab: NovaLab, timeout_s: float = 60) -> None:
    """Have the private libvirtd probe QEMU's capabilities now: about 8 s here that
    nova-compute's start would otherwise wait for.

    Raises:
        LabError: virsh failed or took longer than ``timeout_s``; names libvirtd's log.
    """
    uri = libvirt_lab.uri(lab.dir)
    for what in ("capabilities", "domcapabilities"):
        try:
            proc = subprocess.run(["virsh", "-c", uri, what], capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise LabError(reason=f"virsh {what} took over {timeout_s:g} s; see "
                                  f"{lab.dir / 'libvirtd.log'}") from None
        if proc.returncode != 0:
            raise LabError(reason=f"virsh {what}: {proc.stderr.strip()[-300:]}; see "
                                  f"{lab.dir / 'libvirtd.log'}")


def compute_site(lab: NovaLab, name: str, connection_uri: str) -> dict[str, Any]:
    """:meth:`NovaLab.site` for a compute of this lab: QEMU (TCG) against the private
    libvirtd, ``state_path`` in the lab directory, privsep without sudo, quick stop, no
    consoles."""
    state = lab.dir / "computes" / name / "state"
    conf = lab.dir / "computes" / name / "nova.conf"
    return {**lab.site(),
            "libvirt": {"virt_type": "qemu", "connection_uri": connection_uri},
            # on loopback no console proxy could reach a console: none (the validator
            # refuses a loopback server_listen)
            "vnc": {"enabled": False},
            "state_path": str(state),
            "options": {**lab.peer_options(),
                        "DEFAULT": {"manager_shutdown_timeout": 0,
                                    # read from /etc/nova otherwise
                                    "rootwrap_config": str(conf.parent / "rootwrap.conf")},
                        "compute": {"provider_config_location":
                                    str(conf.parent / "provider_config")},
                        "nova_sys_admin": {"helper_command": (
                            f"{nova_venv.nova_bin('privsep-helper')} --config-file {conf}")}}}


def start_compute(lab: NovaLab, name: str, conf_text: str, *, timeout_s: float = 60) -> int:
    """Run nova-compute with a configuration the hand-off stage rendered (revealed).

    The config is written 0600 under ``computes/<name>/`` (with the ``state`` directory
    :func:`compute_site` names); the process is recorded in the lab state as
    ``nova-compute`` (one compute per lab). Waits until nova-api lists the service ``up``
    for ``[DEFAULT] host``.

    Returns:
        The compute's pid.

    Raises:
        LabError: nova-compute logged a fatal error, exited or did not register; the
            message quotes its own log line (nova-compute often keeps running after one).
    """
    conf = lab.dir / "computes" / name / "nova.conf"
    _write_private(conf, conf_text)
    # what a distribution package creates: state_path and its instances directory
    (conf.parent / "state" / "instances").mkdir(parents=True, exist_ok=True)
    log = lab.log(f"nova-compute-{name}")
    pid = spawn([str(nova_venv.nova_bin("nova-compute")), "--config-file", str(conf)], log)
    lab.pids["nova-compute"] = pid
    lab.save()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if services_up(lab, ("nova-compute",), host=name):
            return pid
        failure = compute_failure(log)
        if failure or not alive(pid):
            raise LabError(reason=f"nova-compute {name} failed to start: "
                                  f"{failure or 'exited'}; see {log}")
        time.sleep(0.5)
    raise LabError(reason=f"nova-compute {name} not 'up' within {timeout_s:g} s; see {log}")


#: the line of a nova log that says why a service gave up: a CRITICAL record, or the
#: exception line that closes the traceback of an ERROR (oslo.log prefixes every line)
_FATAL = re.compile(r" (?:CRITICAL \S+ .*|ERROR nova (?:nova\.exception\.|\w+(?:Error|Exception)"
                    r"\b).*)$")


def compute_failure(log: Path) -> str | None:
    """The first fatal line of a nova-compute log (without its timestamp), if any."""
    if not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if m := _FATAL.search(line):
            return m.group(0).strip()
    return None


def down(directory: Path, timeout_s: float = 20) -> list[str]:
    """Stop every process of the Nova lab in ``directory``; returns the names stopped.

    SIGTERM to each process group in :data:`STOP_ORDER`, then SIGKILL to what is left
    after ``timeout_s`` (logged at warning level with the process's name); then the
    PostgreSQL cluster is stopped and deleted (:func:`metalctl_lab.nova_db.remove`).
    """
    lab = NovaLab.load(Path(directory))
    if lab is None:
        return []
    stopped = []
    # PostgreSQL last, by pg_ctl (its SIGTERM would wait for every client to leave)
    procs = {n: p for n, p in lab.pids.items() if n != "postgres"}
    names = sorted(procs, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else -1)
    for name in names:
        pid = procs[name]
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
                stopped.append(name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in procs.values()):
        time.sleep(0.1)
    for name, pid in procs.items():
        if alive(pid):
            LOG.warning("lab: %s (pid %d) ignored SIGTERM for %g s; killing", name, pid,
                        timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if "postgres" in lab.pids or (lab.dir / "pgdata").is_symlink():
        pg = lab.pids.get("postgres")
        if pg and alive(pg):
            stopped.append("postgres")
        nova_db.remove(lab)
    lab.pids = {}
    lab.save()
    return stopped
