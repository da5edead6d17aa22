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

import copy
import os
import subprocess
import time
from pathlib import Path

import pytest

from metalctl import cpulist
from metalctl.handoff import novaconf, novaopts
from metalctl.lab import nova
from metalctl.pki import SitePKI
from metalctl.profile.derive import derive
from metalctl.profile.facts import inband
from metalctl.profile.library import Profile, ProfileLibrary

ADDRESS_BASE = "127.99.0.0"
COMPUTE = "lab-compute-1"
COMPUTE_IP = "127.99.0.10"
NOVA_MICROVERSION = {"X-OpenStack-Nova-API-Version": "2.88"}  # hypervisor ids = RP uuids


def _ensure_rabbitmq() -> None:
    """The one reason to skip: rabbitmq-server is absent and apt-get cannot install it."""
    if nova.RABBIT_SERVER.exists():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                           "rabbitmq-server"], capture_output=True, text=True, env=env,
                          check=False, timeout=600)
    if proc.returncode != 0 or not nova.RABBIT_SERVER.exists():
        pytest.skip(f"rabbitmq-server is not installed and apt-get failed: "
                    f"{proc.stderr.strip()[-300:]}")


@pytest.fixture(scope="module")
def nova_lab(tmp_path_factory: pytest.TempPathFactory):
    _ensure_rabbitmq()
    directory = tmp_path_factory.mktemp("nova-lab")
    started = time.monotonic()
    try:
        lab = nova.up(directory, ADDRESS_BASE)
        print(f"\nnova lab up in {time.monotonic() - started:.1f} s")
        yield lab
    finally:
        stopping = time.monotonic()
        nova.down(directory)
        print(f"\nnova lab down in {time.monotonic() - stopping:.1f} s")


def test_control_plane_answers(nova_lab: nova.NovaLab):
    import requests

    root = requests.get(nova_lab.placement_url + "/", timeout=5)
    assert root.status_code == 200
    assert root.json()["versions"][0]["id"] == "v1.0"
    assert nova_lab.placement("/resource_providers") == {"resource_providers": []}
    services = {s["binary"]: s for s in nova_lab.api("/os-services")["services"]}
    assert services["nova-conductor"]["state"] == "up"
    assert services["nova-scheduler"]["state"] == "up"
    assert services["nova-conductor"]["status"] == "enabled"


def _small_dedicated_profile() -> Profile:
    """``hpc`` scaled to this 2-CPU machine: guests on dedicated CPUs, one CPU for the
    host, 512 MiB reserved, no hugepages (the lab's kernel has none to give)."""
    data = copy.deepcopy(ProfileLibrary().load("hpc").data)
    data.pop("hugepages", None)
    data.setdefault("memory", {})["host_reserved_mib"] = 512
    data["memory"].pop("host_reserved_mib_per_numa", None)
    return Profile(name="hpc-lab", data=data)


def _wait_provider(lab: nova.NovaLab, timeout_s: float) -> dict:
    """Wait for the compute's resource provider with CPU and memory inventories, map the
    compute into cell1, and find the provider again through the hypervisor (its id is
    the provider's uuid; its hypervisor_hostname is libvirt's host name)."""
    import requests

    deadline = time.monotonic() + timeout_s
    providers: list = []
    while time.monotonic() < deadline and not providers:
        providers = lab.placement("/resource_providers?resources=PCPU:1,VCPU:1,MEMORY_MB:1"
                                  )["resource_providers"]
        time.sleep(0.5)
    assert providers, (f"no resource provider with PCPU/VCPU/MEMORY_MB within {timeout_s:g} "
                       f"s; see {lab.log('nova-compute-' + COMPUTE)}")
    nova.discover_hosts(lab)
    resp = requests.get(lab.api_url + "/os-hypervisors/detail",
                        headers={**nova.API_HEADERS, **NOVA_MICROVERSION}, timeout=10)
    hypervisors = resp.json()["hypervisors"]
    assert [h["hypervisor_hostname"] for h in hypervisors] == [providers[0]["name"]]
    hv = hypervisors[0]
    inventories = lab.placement(f"/resource_providers/{hv['id']}/inventories")["inventories"]
    return {"hypervisor": hv, "inventories": inventories}


def test_compute_from_plan_reports_the_plan_to_placement(nova_lab: nova.NovaLab,
                                                         tmp_path: Path):
    facts = inband.collect_local()
    plan = derive(facts, _small_dedicated_profile(), COMPUTE).to_dict()
    dedicated = cpulist.parse(plan["nova"]["compute"]["cpu_dedicated_set"])
    shared = cpulist.parse(plan["nova"]["compute"]["cpu_shared_set"])
    assert dedicated
    assert shared
    assert not dedicated & shared

    pki = SitePKI(tmp_path / "pki")
    pki.init()
    pki.issue(COMPUTE, [], [COMPUTE_IP])
    uri = nova.start_libvirtd(nova_lab)
    site = novaconf.site_from_dict(nova.compute_site(nova_lab, COMPUTE, uri), "lab site",
                                   credentials_file=nova_lab.credentials_file)
    conf = novaconf.render(plan, site, COMPUTE, COMPUTE_IP, pki)
    assert nova_lab.rabbit_password not in conf.masked()
    checked = novaopts.validate(conf.masked(), label=f"nova.conf for {COMPUTE}")
    print(f"\nvalidator: nova {checked.nova_version}, {checked.elapsed_s:.2f} s")

    started = time.monotonic()
    nova.start_compute(nova_lab, COMPUTE, conf.reveal())
    found = _wait_provider(nova_lab, timeout_s=90)
    print(f"compute start to inventories in Placement: {time.monotonic() - started:.1f} s")
    inv = found["inventories"]
    assert inv["PCPU"]["total"] == len(dedicated)
    assert inv["VCPU"]["total"] == len(shared)
    assert inv["MEMORY_MB"]["reserved"] == plan["nova"]["DEFAULT"]["reserved_host_memory_mb"]
    assert found["hypervisor"]["status"] == "enabled"
    log = nova_lab.log(f"nova-compute-{COMPUTE}").read_text(errors="replace")
    assert nova_lab.rabbit_password not in log
