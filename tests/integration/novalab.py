"""One lab Nova for the session's hand-off modules (issue 20), and the steps they share.

:func:`start` brings up what test_handoff.py and test_live_migration.py both need: lab
SSH hosts h1 and h2 on net 206 with nova-compute installed, the hugepages of their
canaries, a site PKI, and one Nova control plane (PostgreSQL, RabbitMQ, Placement, nova
API/conductor/scheduler, Glance with the canary image, the Neutron stand-in) bound on the
hosts' bridge gateway. The control plane starts in the background: the first module
hardens and audits its hosts meanwhile.

Each module takes the hosts with :meth:`SharedNova.take` (fresh root filesystems when an
earlier module used them) and gives them back with :meth:`SharedNova.give_back`, which
stops the hosts and removes from Nova what its hand-offs registered (servers, compute
services and with them their resource providers and aggregate memberships). Flavors,
traits and aggregates of a profile stay: hand-off creates or updates them idempotently.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from metalctl import hosts
from metalctl.audit import waivers
from metalctl.audit.run import AuditOptions
from metalctl.audit.run import audit as run_audit
from metalctl.data.paths import data_dir
from metalctl.harden import HardenOptions
from metalctl.harden import harden as run_harden
from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.pki import SitePKI
from metalctl.rules import catalogue as rules_mod
from metalctl.store import Store
from metalctl_lab import nova, nova_hosts
from metalctl_lab.hosts import HostLab

NET = 206
HOSTS = (1, 2)
HUGEPAGES = 80  # 2 MiB: a canary takes 64 (128 MiB); the prototype's count (LAB.md)
ORG = "metalctl nova test"
RULES = rules_mod.load()
SITE_OVERRIDES = {"repositories": {"apt": [{
    "uri": "http://deb.debian.org/debian",
    "signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg"}]}}
#: nova-api's write calls as the lab's admin (microversion of the canary's create)
WRITE_HEADERS = {**nova.API_HEADERS, "Content-Type": "application/json",
                 "OpenStack-API-Version": "compute 2.95"}


def ensure_rabbitmq() -> None:
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


@dataclass
class SharedNova:
    """The session's hosts, PKI and Nova (see the module docstring)."""

    hostlab: HostLab
    pki: SitePKI
    dir: Path
    lab: nova.NovaLab
    hugepages_before: int
    starting: threading.Thread | None = None
    start_error: list[BaseException] = field(default_factory=list)
    used: bool = False  # a module had the hosts: the next one gets fresh ones
    started_s: float = field(default_factory=time.monotonic)

    def spec(self, i: int) -> hosts.HostSpec:
        return hosts.HostSpec(f"h{i}", f"root@{self.hostlab.address(i)}",
                              self.hostlab.address(i))

    def take(self) -> None:
        """h1 and h2 for a module, with fresh root filesystems if a module had them."""
        if self.used:
            for i in HOSTS:
                self.hostlab.reset(i)
                self.hostlab.start(i)
                nova_hosts.install(self.hostlab, i)
        self.used = True

    def control_plane(self) -> nova.NovaLab:
        """The running control plane (waits for its start), with the canary image."""
        if self.starting is not None:
            self.starting.join()
            self.starting = None
            print(f"\nshared Nova up {time.monotonic() - self.started_s:.1f} s after the "
                  "session's first Nova module started")
        if self.start_error:
            raise self.start_error[0]
        assert nova.services_up(self.lab, ("nova-conductor", "nova-scheduler")), \
            f"control plane not up; see {self.lab.dir / 'logs'}"
        self.lab = nova.NovaLab.load(self.lab.dir)  # with the canary image start() uploaded
        assert self.lab.canary_image, f"no canary image in Glance; see {self.lab.dir / 'logs'}"
        return self.lab

    def give_back(self) -> None:
        """Delete the module's servers, stop every host of the module (their nova-compute
        with them), then remove their compute services from Nova."""
        ready = self.starting is None and not self.start_error
        if ready:
            delete_servers(self.lab)
        for pid_file in sorted((self.hostlab.directory / "hosts").glob("h*/pid")):
            self.hostlab.kill(int(pid_file.parent.name[1:]))
        if ready:
            delete_computes(self.lab)


def start(base: Path) -> SharedNova:
    """Hosts h1 and h2, the PKI, and the control plane starting in the background."""
    ensure_rabbitmq()
    hostlab = HostLab(base / "hosts", net=NET, layers=nova_hosts.LAYERS)
    before = nova_hosts.reserve_hugepages(HUGEPAGES)  # the canaries' (this kernel's)
    shared = None
    try:
        for i in HOSTS:  # the first start makes the bridge the control plane binds to
            hostlab.start(i)
            nova_hosts.install(hostlab, i)
        lab = nova.prepare(base / "nova", hostlab.gateway, bind_address=hostlab.gateway,
                           image_service=True)
        pki = SitePKI(base / "pki", organization=ORG)
        shared = SharedNova(hostlab, pki, base, lab, before)

        def run() -> None:
            try:
                nova.start(lab)
            except BaseException as exc:  # noqa: BLE001 - re-raised by control_plane()
                shared.start_error.append(exc)

        shared.starting = threading.Thread(target=run, daemon=True)
        shared.starting.start()
        pki.init()
        return shared
    except BaseException:
        if shared and shared.starting:
            shared.starting.join()
        nova.down(base / "nova")
        hostlab.down()
        nova_hosts.release_hugepages(before)
        raise


def stop(shared: SharedNova) -> None:
    if shared.starting is not None:
        shared.starting.join()
    nova.down(shared.lab.dir)
    shared.hostlab.down()
    nova_hosts.release_hugepages(shared.hugepages_before)


def _api(lab: nova.NovaLab, method: str, path: str) -> dict:
    resp = requests.request(method, lab.api_url + path, headers=WRITE_HEADERS, timeout=30)
    assert resp.status_code in (200, 202, 204, 404), (method, path, resp.text[:300])
    return resp.json() if resp.content and resp.status_code == 200 else {}


def delete_servers(lab: nova.NovaLab, timeout_s: float = 60) -> None:
    """Delete every server of the lab and wait until Nova lists none."""
    servers = _api(lab, "GET", "/servers?all_tenants=1")["servers"]
    for server in servers:
        _api(lab, "DELETE", f"/servers/{server['id']}")
    deadline = time.monotonic() + timeout_s
    while servers and time.monotonic() < deadline:
        time.sleep(0.5)
        servers = _api(lab, "GET", "/servers?all_tenants=1")["servers"]
    assert not servers, f"servers left after {timeout_s:g} s: {servers}"


def delete_computes(lab: nova.NovaLab) -> None:
    """Delete every nova-compute service: Nova deletes its compute nodes, resource
    providers and aggregate memberships with it."""
    for svc in _api(lab, "GET", "/os-services?binary=nova-compute")["services"]:
        _api(lab, "DELETE", f"/os-services/{svc['id']}")
    left = _api(lab, "GET", "/os-services?binary=nova-compute")["services"]
    assert not left, left


def node(store: Store, hostlab: HostLab, i: int, plan: dict) -> str:
    """Host ``h<i>`` as provision leaves it in the store: installed, with its plan."""
    rec = DiscoveryRecord(address=hostlab.address(i), port=623, protocol=Protocol.IPMI,
                          status=Status.OK)
    store.save_discovered(rec)
    store.set_state(rec.key, Lifecycle.INSTALLED, name=f"h{i}")
    store.put_data(rec.key, "plan", {"profile": "hpc-lab", "plan": plan})
    return rec.key


@dataclass
class ModuleEnv:
    """What a Nova test module works with: the session's hosts and PKI, its own store,
    the control plane and the site file's data (modules add their own fields)."""

    hostlab: HostLab
    lab: nova.NovaLab
    store: Store
    pki: SitePKI
    site_data: dict
    dir: Path

    def spec(self, i: int) -> hosts.HostSpec:
        return hosts.HostSpec(f"h{i}", f"root@{self.hostlab.address(i)}",
                              self.hostlab.address(i))


@dataclass
class Hosts:
    """What a module starts from: its store, the plan, the audit and the control plane."""

    store: Store
    plan: dict
    audit: Any
    lab: nova.NovaLab


def prepare_hosts(shared: SharedNova, base: Path, *, between=None) -> Hosts:
    """Take the hosts (:meth:`SharedNova.take`), record them installed in a new store in
    ``base``, harden and audit them (:func:`harden_and_audit`), and wait for the control
    plane. Call :meth:`SharedNova.give_back` afterwards, also when this raised."""
    shared.take()
    store = Store(base / "store.db").open()
    plan = nova_hosts.lab_plan()
    for i in HOSTS:
        node(store, shared.hostlab, i, plan)
    report = harden_and_audit(shared, store, between=between)
    return Hosts(store, plan, report, shared.control_plane())


def site_data(lab: nova.NovaLab, nova_site: dict | None = None) -> dict:
    """The hand-off site file's data for this lab's hosts, canary included."""
    return {"nova": nova_site or nova_hosts.site(lab),
            "handoff": {"api": nova_hosts.handoff_api(lab),
                        "register_timeout_s": 90, "verify_timeout_s": 60,
                        "canary": {"image": lab.canary_image, "timeout_s": 120}}}


def harden_and_audit(shared: SharedNova, store: Store, *, between=None):
    """harden h1 and h2 for real, run ``between()`` (a planted fault), and audit both
    with the shipped lab waivers (hardening/waivers.lab.yaml: what the lab kernel cannot
    give); returns the audit report."""
    site = hosts.load_site(None)
    site.update(SITE_OVERRIDES)
    specs = [shared.spec(i) for i in HOSTS]
    ssh = {"key_file": shared.hostlab.client_key, "known_hosts": shared.hostlab.known_hosts}
    hardened = run_harden(specs, RULES, HardenOptions(site=site, pki=shared.pki, **ssh),
                          store=store)
    assert all(r.status.ok for r in hardened), [r.error for r in hardened]
    if between:
        between()
    lab_waivers = waivers.load(data_dir("hardening") / "waivers.lab.yaml",
                               {r.id for r in RULES})
    report = run_audit(specs, RULES, AuditOptions(site=site, pki=shared.pki,
                                                  waivers=lab_waivers, **ssh), store=store)
    assert not any(h.error for h in report.hosts)
    return report
