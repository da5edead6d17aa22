"""A real Nova and Placement on 127.99.0.0/16, and a real nova-compute configured by
metalctl from a profile plan derived on this machine's own facts.

The chain under test: in-band facts of this machine -> ``profile.derive`` -> the plan's
Nova options -> ``handoff.novaconf.render`` with the lab's site section (passwords by
reference) -> ``handoff.novaopts.validate`` against nova 34's own options -> nova-compute
(libvirt driver, QEMU, private libvirtd) -> what Placement reports. Placement's
inventories must be exactly what the plan says: PCPU = |cpu_dedicated_set|, VCPU =
|cpu_shared_set|, MEMORY_MB reserved = reserved_host_memory_mb.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalctl import cpulist
from metalctl.handoff import novaconf, novaopts
from metalctl.pki import SitePKI
from metalctl.profile.derive import derive
from metalctl.profile.facts import inband
from metalctl.profile.library import Profile, ProfileLibrary
from metalctl_lab import libvirt_lab, nova, nova_db, postgres

from . import novalab

pytestmark = pytest.mark.peers

ADDRESS_BASE = "127.99.0.0"
COMPUTE = "lab-compute-1"
COMPUTE_IP = "127.99.0.10"
NOVA_MICROVERSION = {"X-OpenStack-Nova-API-Version": "2.88"}  # hypervisor ids = RP uuids


@dataclass
class Lab:
    lab: nova.NovaLab
    plan: dict
    conf: novaconf.NovaConf


@pytest.fixture(scope="module")
def machine_rabbitmq(tmp_path_factory: pytest.TempPathFactory):
    """A RabbitMQ as a distribution runs one: node ``rabbit@<hostname>``, epmd on
    0.0.0.0:4369, AMQP on 0.0.0.0:5672, distribution on 0.0.0.0:25672 (state in a test
    folder, nothing of the machine's own). The lab's must start beside it (issue 18)."""
    novalab.ensure_rabbitmq()
    base = tmp_path_factory.mktemp("machine-rabbitmq")
    (base / "rabbitmq.conf").write_text("listeners.tcp.default = 5672\n")
    (base / "enabled_plugins").write_text("[].\n")
    env = {**os.environ, "HOME": str(base), "RABBITMQ_CONF_ENV_FILE": str(base / "none"),
           "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
           "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base)}
    with open(base / "server.log", "wb") as log:
        proc = subprocess.Popen([str(nova.RABBIT_SERVER)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _listening(5672):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("the machine's RabbitMQ did not start: "
                        + (base / "server.log").read_text()[-2000:])
        time.sleep(0.3)
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    subprocess.run(["epmd", "-kill"], env=env, capture_output=True, check=False)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@pytest.fixture(scope="module")
def nova_lab(tmp_path_factory: pytest.TempPathFactory, machine_rabbitmq):
    """The control plane, started in the background while the compute's configuration is
    derived, rendered and validated against nova 34 (both take seconds of CPU), beside
    another RabbitMQ that holds the usual ports (:func:`machine_rabbitmq`)."""
    directory = tmp_path_factory.mktemp("nova-lab")
    started = time.monotonic()
    lab = nova.prepare(directory, ADDRESS_BASE)
    with ThreadPoolExecutor(1) as pool:
        starting = None
        try:
            # QEMU's capability probe first: run beside the start it doubles the
            # validator's time on 2 shared cores
            uri = nova.start_libvirtd(lab)
            starting = pool.submit(nova.start, lab)
            plan, conf = _compute_conf(lab, uri, tmp_path_factory.mktemp("pki"))
            starting.result()
            print(f"\nnova lab up (and compute config validated) in "
                  f"{time.monotonic() - started:.1f} s")
            yield Lab(lab, plan, conf)
        finally:
            with contextlib.suppress(Exception):
                if starting:
                    starting.result()  # start() stops what it started when it fails
            stopping = time.monotonic()
            nova.down(directory)
            print(f"\nnova lab down in {time.monotonic() - stopping:.1f} s")


def _compute_conf(lab: nova.NovaLab, uri: str, pki_dir: Path
                  ) -> tuple[dict, novaconf.NovaConf]:
    facts = inband.collect_local()
    plan = derive(facts, _small_dedicated_profile(), COMPUTE).to_dict()
    pki = SitePKI(pki_dir)
    pki.init()
    pki.issue(COMPUTE, [], [COMPUTE_IP])
    site = novaconf.site_from_dict(nova.compute_site(lab, COMPUTE, uri), "lab site",
                                   credentials_file=lab.credentials_file)
    conf = novaconf.render(plan, site, COMPUTE, COMPUTE_IP, pki)
    checked = novaopts.validate(conf.masked(), label=f"nova.conf for {COMPUTE}")
    print(f"\nvalidator: nova {checked.nova_version}, {checked.elapsed_s:.2f} s")
    return plan, conf


def test_control_plane_answers(nova_lab: Lab):
    import requests

    lab = nova_lab.lab
    # beside the machine's RabbitMQ, which holds 5672 and 25672 on every address
    assert (lab.rabbit_port, lab.rabbit_dist_port) != (5672, 25672)
    assert f":{lab.rabbit_port}/" in lab.transport_url()
    root = requests.get(lab.placement_url + "/", timeout=5)
    assert root.status_code == 200
    assert root.json()["versions"][0]["id"] == "v1.0"
    assert lab.placement("/resource_providers") == {"resource_providers": []}
    services = {s["binary"]: s for s in lab.api("/os-services")["services"]}
    assert services["nova-conductor"]["state"] == "up"
    assert services["nova-scheduler"]["state"] == "up"
    assert services["nova-conductor"]["status"] == "enabled"
    # without authtoken the headers are the identity: none is refused, a reader is not admin
    assert requests.get(lab.api_url + "/os-services", timeout=10).status_code == 401
    reader = {**nova.API_HEADERS, "X-Roles": "reader"}
    assert requests.get(lab.api_url + "/os-services", headers=reader,
                        timeout=10).status_code == 403


def test_databases_are_on_a_private_postgresql(nova_lab: Lab):
    """Nova's and Placement's databases on the lab's own PostgreSQL: socket only, no huge
    pages (the canary's), cells mapped to this lab, and no lab password in the cache."""
    lab = nova_lab.lab
    data = nova_db.data_dir(lab)
    assert "connection = postgresql+psycopg2://postgres@/nova_cell1?host=" in \
        (lab.dir / "nova" / "nova.conf").read_text()
    show = "SHOW huge_pages; SHOW listen_addresses; SELECT current_database();"
    # listen_addresses is '' (socket only): an empty line
    assert postgres.psql(data, "placement", show).split("\n") == ["off", "", "placement", ""]
    cells = dict(line.split("|") for line in postgres.psql(
        data, "nova_api", "SELECT name, database_connection FROM cell_mappings;").split())
    assert cells == {"cell0": nova_db.url(lab, "nova_cell0"),
                     "cell1": nova_db.url(lab, "nova_cell1")}
    secret = lab.rabbit_password.encode()
    cached = [p for p in nova_db.cache_dir().rglob("*") if p.is_file()]
    assert len(cached) > 100
    assert not [p for p in cached if secret in p.read_bytes()]


def _small_dedicated_profile() -> Profile:
    """``hpc`` scaled to this 2-CPU machine: guests on dedicated CPUs, one CPU for the
    host, 512 MiB reserved, no hugepages (the lab's kernel has none to give)."""
    data = copy.deepcopy(ProfileLibrary().load("hpc").data)
    data.pop("hugepages", None)
    data.setdefault("memory", {})["host_reserved_mib"] = 512
    data["memory"].pop("host_reserved_mib_per_numa", None)
    return Profile(name="hpc-lab", data=data)


def _wait_provider(lab: nova.NovaLab, timeout_s: float) -> dict:
    """Wait for the compute's resource provider with CPU and memory inventories, then for
    the scheduler's periodic discover_hosts to map the compute into cell1, and find the
    provider again through the hypervisor (its id is the provider's uuid; its
    hypervisor_hostname is libvirt's host name, not [DEFAULT] host)."""
    import requests

    deadline = time.monotonic() + timeout_s
    providers: list = []
    hypervisors: list = []
    while time.monotonic() < deadline and not hypervisors:
        if not providers:
            providers = lab.placement("/resource_providers?resources=PCPU:1,VCPU:1,"
                                      "MEMORY_MB:1")["resource_providers"]
        else:
            resp = requests.get(lab.api_url + "/os-hypervisors/detail",
                                headers={**nova.API_HEADERS, **NOVA_MICROVERSION}, timeout=10)
            hypervisors = resp.json()["hypervisors"] if resp.ok else []
        time.sleep(0.5)
    log = lab.log("nova-compute-" + COMPUTE)
    assert providers, f"no provider with PCPU/VCPU/MEMORY_MB in {timeout_s:g} s; see {log}"
    assert hypervisors, f"compute not mapped into cell1 in {timeout_s:g} s; see {log}"
    assert [h["hypervisor_hostname"] for h in hypervisors] == [providers[0]["name"]]
    hv = hypervisors[0]
    inventories = lab.placement(f"/resource_providers/{hv['id']}/inventories")["inventories"]
    return {"hypervisor": hv, "inventories": inventories}


def test_compute_from_plan_reports_the_plan_to_placement(nova_lab: Lab):
    lab, plan, conf = nova_lab.lab, nova_lab.plan, nova_lab.conf
    dedicated = cpulist.parse(plan["nova"]["compute"]["cpu_dedicated_set"])
    shared = cpulist.parse(plan["nova"]["compute"]["cpu_shared_set"])
    assert dedicated
    assert shared
    assert not dedicated & shared
    assert lab.rabbit_password not in conf.masked()
    assert f"connection_uri = {libvirt_lab.uri(lab.dir)}\n" in conf.masked()

    started = time.monotonic()
    nova.start_compute(lab, COMPUTE, conf.reveal())
    found = _wait_provider(lab, timeout_s=90)
    print(f"compute start to inventories in Placement: {time.monotonic() - started:.1f} s")
    inv = found["inventories"]
    assert inv["PCPU"]["total"] == len(dedicated)
    assert inv["VCPU"]["total"] == len(shared)
    assert inv["MEMORY_MB"]["reserved"] == plan["nova"]["DEFAULT"]["reserved_host_memory_mb"]
    assert found["hypervisor"]["status"] == "enabled"
    # the bus password is in the 0600 configs only: no service logged it
    logs = [*(lab.dir / "logs").glob("*.log"), *(lab.dir / "rabbitmq" / "log").glob("*")]
    assert len(logs) >= 8
    for log in logs:
        assert lab.rabbit_password not in log.read_text(errors="replace"), log
