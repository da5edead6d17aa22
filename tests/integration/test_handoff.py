"""metalctl handoff against real peers: lab SSH hosts (net 206) hardened and audited by
metalctl, running nova-compute 34 with the libvirt driver against their own libvirtd,
and a real Nova + Placement + RabbitMQ control plane on the hosts' bridge gateway
(10.206.0.1; the hosts' 127.x is their own).

harden closes what it can of what the audit finds; the rest is waived by the shipped lab
waivers (hardening/waivers.lab.yaml: no LSM, audit or IOMMU in the lab kernel). h2 then
has plain-TCP libvirt switched back on (LVT-002, high) and is refused by the gate.
"""

from __future__ import annotations

import calendar
import copy
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from metalctl import handoff, hosts
from metalctl.audit import waivers
from metalctl.audit.run import AuditOptions
from metalctl.data.paths import data_dir
from metalctl.harden import HardenOptions
from metalctl.model.node import Lifecycle
from metalctl.rules import catalogue as rules_mod
from metalctl_lab import nova, nova_hosts

from . import novalab
from .novalab import SITE_OVERRIDES

pytestmark = pytest.mark.peers

LIBVIRTD_CONF = "/etc/libvirt/libvirtd.conf"
RULES = rules_mod.load()


@dataclass
class Env(novalab.ModuleEnv):
    plan: dict = field(default_factory=dict)

    def site(self, **nova_over) -> handoff.HandoffSite:
        data = copy.deepcopy(self.site_data)
        data["nova"].update(nova_over)
        return handoff.site.from_dict(data, "lab site",
                                      credentials_file=self.lab.credentials_file)

    def opts(self, **kw) -> handoff.HandoffOptions:
        kw.setdefault("canary", False)  # the canary tests ask for it (10-20 s each)
        return handoff.HandoffOptions(pki=self.pki, key_file=self.hostlab.client_key,
                                      known_hosts=self.hostlab.known_hosts, **kw)

    def run(self, *idx: int, site: handoff.HandoffSite | None = None, **kw
            ) -> list[handoff.HandoffResult]:
        return handoff.handoff([self.spec(i) for i in idx], site or self.site(),
                               self.opts(**kw), store=self.store)

    def sh(self, i: int, command: str) -> str:
        out = self.hostlab.exec(i, command)
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.fixture(scope="module")
def env(shared_nova: novalab.SharedNova, tmp_path_factory: pytest.TempPathFactory):
    """h1 and h2 of the session's lab (:mod:`.novalab`), hardened and audited, h2 with
    plain-TCP libvirt switched back on (LVT-002, high) before its audit."""
    shared = shared_nova
    base = tmp_path_factory.mktemp("handoff")
    started = time.monotonic()

    def break_h2() -> None:
        out = shared.hostlab.exec(2, f"sed -i '/^listen_tcp/d' {LIBVIRTD_CONF}; "
                                     f"echo 'listen_tcp = 1' >> {LIBVIRTD_CONF}")
        assert out.returncode == 0, out.stderr

    try:
        got = novalab.prepare_hosts(shared, base, between=break_h2)
        print(f"\nhandoff env up in {time.monotonic() - started:.1f} s")
        yield Env(shared.hostlab, got.lab, got.store, shared.pki, novalab.site_data(got.lab),
                  base, plan=got.plan)
    finally:
        shared.give_back()


def _conf_state(env: Env, i: int) -> str:
    return env.sh(i, "sha256sum /etc/nova/nova.conf; stat -c '%a %U %G %Y' /etc/nova/nova.conf;"
                     " ls /var/backups/metalctl/etc/nova 2>/dev/null; cat /run/nova/*.pid")


# --- before anything is written -------------------------------------------------------


@pytest.mark.parametrize(("options", "field"), [
    ({"libvirt": {"virt_typo": "qemu"}}, "[libvirt] virt_typo"),
    ({"DEFAULT": {"heal_instance_info_cache_interval": "often"}},
     "[DEFAULT] heal_instance_info_cache_interval"),
])
def test_bad_option_is_refused_before_anything_is_written(env: Env, options, field):
    over = copy.deepcopy(env.site_data["nova"]["options"])
    for section, opts in options.items():
        over.setdefault(section, {}).update(opts)
    with pytest.raises(handoff.NovaConfigError) as err:
        env.run(1, site=env.site(options=over))
    assert err.value.field == field
    assert env.sh(1, "ls /etc/nova 2>&1 || true").strip().endswith("No such file or directory")


def test_gate_refuses_a_host_with_high_failures(env: Env):
    scan = env.store.audit_scans()[-1]["scan_id"]
    failing = sorted(r["rule"] for r in env.store.audit_host_results(scan, "h2")
                     if r["status"] == "fail" and r["severity"] == "high")
    assert "LVT-002" in failing
    [res] = env.run(2)
    assert res.status is handoff.HandoffStatus.REFUSED
    for rid in failing:
        assert rid in res.error
    assert res.evidence["gate"]["failing"] == failing
    assert "No such file" in env.sh(2, "ls /etc/nova/nova.conf 2>&1 || true")
    # an audit older than the limit refuses too, naming its age
    [old] = env.run(1, check=True, audit_max_age_s=0)
    assert old.status is handoff.HandoffStatus.REFUSED
    assert "older than" in old.error


def test_check_prints_a_masked_diff_and_changes_nothing(env: Env):
    [res] = env.run(1, check=True)
    assert res.status is handoff.HandoffStatus.WOULD_CHANGE
    assert "+transport_url = rabbit://nova:***@10.206.0.1:5672/" in res.diff
    assert "+token = ***" in res.diff
    assert env.lab.rabbit_password not in res.diff
    assert "No such file" in env.sh(1, "ls /etc/nova/nova.conf 2>&1 || true")


# --- the hand-off ---------------------------------------------------------------------------


def test_handoff_is_verified_in_nova_and_placement(env: Env):
    started = time.monotonic()
    [res] = env.run(1)
    print(f"\nhandoff h1: {time.monotonic() - started:.1f} s {res.evidence.get('timings_s')}")
    assert res.status is handoff.HandoffStatus.HANDED_OFF, (res.error, res.log_line)
    assert "/etc/nova/nova.conf" in res.changed
    # Nova's and Placement's own answers, read here with the lab's client
    svc = [s for s in env.lab.api("/os-services")["services"]
           if s["binary"] == "nova-compute" and s["host"] == "h1"]
    assert [(s["state"], s["status"]) for s in svc] == [("up", "enabled")]
    hv = res.evidence["hypervisor"]
    assert env.lab.placement(f"/resource_providers/{hv['id']}")["name"] == \
        hv["hypervisor_hostname"]
    inv = env.lab.placement(f"/resource_providers/{hv['id']}/inventories")["inventories"]
    assert inv["PCPU"]["total"] == 1
    assert inv["VCPU"]["total"] == 1
    assert inv["VCPU"]["allocation_ratio"] == 4.0
    assert inv["MEMORY_MB"]["reserved"] == 512
    assert res.evidence["inventories"] == inv
    node = env.store.find("h1")
    assert node["state"] == "handed-off"
    [event] = [e for e in env.store.events(node["key"]) if e.stage == "handoff"]
    assert event.changes["evidence"]["inventories"]["PCPU"]["total"] == 1
    # standalone and stable: no database sections, state_path where compute_id lives
    conf = env.sh(1, "cat /etc/nova/nova.conf")
    assert "[database]" not in conf
    assert "[api_database]" not in conf
    assert "state_path = /var/lib/nova" in conf
    assert env.sh(1, "cat /var/lib/nova/compute_id").strip()


def test_rerun_changes_nothing(env: Env):
    before = _conf_state(env, 1)
    [res] = env.run(1)
    assert res.status is handoff.HandoffStatus.HANDED_OFF, res.error
    assert res.changed == []
    assert _conf_state(env, 1) == before
    [check] = env.run(1, check=True)
    assert check.status is handoff.HandoffStatus.UNCHANGED
    assert check.diff == ""


# --- the profile published, proven by a canary guest ---------------------------------------


def nfv_lab_plan(plan: dict) -> dict:
    """The lab plan as an NFV profile would make it on this host: dedicated CPU 1 with
    emulator threads on the shared CPU 0, and 2 MiB hugepages on NUMA node 0 (64 of the
    80 the fixture reserved in this kernel)."""
    nfv = copy.deepcopy(plan)
    nfv["profile"] = "nfv-lab"
    nfv["hugepage_size"] = "2M"
    nfv["numa"][0]["hugepages"] = 64
    nfv["flavor_extra_specs"]["hw:mem_page_size"] = "2MB"
    return nfv


def _put_plan(env: Env, plan: dict) -> None:
    env.store.put_data(env.store.find("h1")["key"], "plan",
                       {"profile": plan["profile"], "plan": plan})


def _restart_compute(env: Env, i: int) -> None:
    """Restart nova-compute on host ``i`` and wait for the new process's first report
    (the old one is gone once the init script returns; a report in that same second
    counts: ``updated_at`` has whole seconds)."""
    env.sh(i, "/etc/init.d/nova-compute restart >/dev/null")
    before = int(time.time())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        [svc] = [s for s in env.lab.api("/os-services")["services"]
                 if s["binary"] == "nova-compute" and s["host"] == f"h{i}"]
        when = svc.get("updated_at") or ""
        if when and calendar.timegm(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S")) \
                >= before:
            return
        time.sleep(0.5)
    raise AssertionError(f"nova-compute on h{i} did not report after its restart")


def _checks(res: handoff.HandoffResult) -> dict[str, dict]:
    return {c["name"]: c for c in res.evidence["canary"]["checks"]}


def test_profile_is_published_and_a_canary_proves_it(env: Env):
    nfv = nfv_lab_plan(env.plan)
    _put_plan(env, nfv)
    try:
        started = time.monotonic()
        [res] = env.run(1, canary=True)
        took = time.monotonic() - started
    finally:
        _put_plan(env, env.plan)
    canary = res.evidence.get("canary")
    print(f"\nhandoff h1 with the canary: {took:.1f} s, canary {canary and canary['timeline_s']}")
    assert res.status is handoff.HandoffStatus.HANDED_OFF, (res.error, canary)
    checks = _checks(res)
    assert {n: c["status"] for n, c in checks.items()} == {
        "vcpu-pinning": "pass", "emulator-threads": "pass", "hugepages": "pass",
        "svirt-label": "unavailable", "placement": "pass", "cleanup": "pass",
        # the audit's runtime rule, judged while the guest runs: this kernel has no LSM,
        # so it cannot pass (the lab machines' AppArmor makes it pass: the demo)
        "VRT-002": "unavailable"}
    assert "no LSM active" in checks["VRT-002"]["actual"]
    assert checks["vcpu-pinning"]["actual"] == "1"       # cpu_dedicated_set
    assert checks["emulator-threads"]["actual"] == "0"   # cpu_shared_set (share policy)
    assert "QEMU hugetlb mappings on node(s) [0]" in checks["hugepages"]["actual"]
    assert "only a DAC label is possible" in checks["svirt-label"]["actual"]
    assert checks["placement"]["actual"] == str({"DISK_GB": 1, "MEMORY_MB": 128, "PCPU": 1})
    assert list(canary["timeline_s"]) == ["created", "active", "checked", "deleted"]
    # Nova's and Placement's own answers
    trait = "CUSTOM_METALCTL_PROFILE_NFV_LAB"
    provider = res.evidence["hypervisor"]["id"]
    traits = env.lab.placement(f"/resource_providers/{provider}/traits")["traits"]
    assert trait in traits
    assert "CUSTOM_METALCTL_PROFILE_HPC_LAB" not in traits  # the host's earlier profile
    aggs = {a["name"]: a for a in env.lab.api("/os-aggregates")["aggregates"]}
    assert aggs["metalctl-profile-nfv-lab"]["hosts"] == ["h1"]
    assert aggs["metalctl-profile-nfv-lab"]["metadata"]["metalctl_profile"] == "nfv-lab"
    assert "h1" not in aggs["metalctl-profile-hpc-lab"]["hosts"]
    flavors = {f["name"]: f for f in env.lab.api("/flavors/detail?is_public=None")["flavors"]}
    team = env.lab.api(f"/flavors/{flavors['metalctl.nfv-lab']['id']}/os-extra_specs"
                       )["extra_specs"]
    assert team[f"trait:{trait}"] == "required"
    assert team["hw:mem_page_size"] == "2MB"
    assert team["hw:cpu_policy"] == "dedicated"
    assert flavors["metalctl.nfv-lab.canary"]["os-flavor-access:is_public"] is False
    assert env.lab.api("/servers/detail?all_tenants=1")["servers"] == []
    # what teams can request, and where; a re-run (check) changes nothing
    offers = {o.flavor: o for o in handoff.offered(env.site())}
    assert offers["metalctl.nfv-lab"].hosts == ["h1"]
    assert offers["metalctl.nfv-lab"].providers == 1
    site, _ = _cli_files(env)
    listed = subprocess.run([sys.executable, "-m", "metalctl", "profile", "flavors", "--site",
                             str(site), "-o", "json"], capture_output=True, text=True,
                            timeout=60, check=False, env={
                                **os.environ,
                                "METALCTL_CREDENTIALS_FILE": str(env.lab.credentials_file)})
    assert listed.returncode == 0, listed.stderr
    rows = {r["flavor"]: r for r in yaml.safe_load(listed.stdout)}
    assert (rows["metalctl.nfv-lab"]["hosts"], rows["metalctl.nfv-lab"]["names"]) == (1, "h1")
    _put_plan(env, nfv)
    try:
        [check] = env.run(1, check=True)
    finally:
        _put_plan(env, env.plan)
    assert check.status is handoff.HandoffStatus.UNCHANGED, check.changed


def test_a_wrong_cpu_dedicated_set_fails_the_canary_and_disables_the_host(env: Env):
    """The planted fault: a stale /etc/nova/nova-compute.conf on the host swaps the CPU
    sets. Placement's totals still match the plan (one PCPU, one VCPU); the canary's
    pinning does not."""
    _put_plan(env, nfv_lab_plan(env.plan))
    env.sh(1, "printf '[compute]\\ncpu_dedicated_set = 0\\ncpu_shared_set = 1\\n' "
              "> /etc/nova/nova-compute.conf")
    _restart_compute(env, 1)
    try:
        [res] = env.run(1, canary=True)
        svc = next(s for s in env.lab.api("/os-services")["services"]
                   if s["binary"] == "nova-compute" and s["host"] == "h1")
        assert res.status is handoff.HandoffStatus.FAILED, res.evidence.get("canary")
        assert res.error.startswith("metalctl canary failed: vcpu-pinning: expected inside "
                                    "cpu_dedicated_set 1, found 0")
        assert "(the compute service is now disabled)" in res.error
        assert svc["status"] == "disabled"
        assert svc["disabled_reason"].startswith("metalctl canary failed: vcpu-pinning")
        assert _checks(res)["cleanup"]["status"] == "pass"
        assert env.lab.api("/servers/detail?all_tenants=1")["servers"] == []
        node = env.store.find("h1")
        assert [e.action for e in env.store.events(node["key"]) if e.stage == "handoff"][-1] \
            == "failed"
    finally:
        env.sh(1, "rm -f /etc/nova/nova-compute.conf")
        _restart_compute(env, 1)
    # the host fixed: the next hand-off lifts the canary's own disable and proves it again
    try:
        [again] = env.run(1, canary=True)
    finally:
        _put_plan(env, env.plan)
    assert again.status is handoff.HandoffStatus.HANDED_OFF, (again.error,
                                                             again.evidence.get("canary"))
    assert any(n.startswith("enabled again for a new canary") for n in again.notes)
    [svc] = [s for s in env.lab.api("/os-services")["services"]
             if s["binary"] == "nova-compute" and s["host"] == "h1"]
    assert svc["status"] == "enabled"


def test_a_cpu_the_host_lacks_fails_with_novas_own_log_line(env: Env):
    key = env.store.find("h1")["key"]
    bad = copy.deepcopy(env.plan)
    bad["nova"]["compute"]["cpu_dedicated_set"] = "1,7"  # the hosts have CPUs 0-1
    env.store.put_data(key, "plan", {"profile": "hpc-lab", "plan": bad})
    try:
        [res] = env.run(1)
    finally:
        env.store.put_data(key, "plan", {"profile": "hpc-lab", "plan": env.plan})
    assert res.status is handoff.HandoffStatus.FAILED
    assert [(m.inventory, m.field, m.expected, m.actual) for m in res.mismatches] == \
        [("PCPU", "total", 2, 1)]
    assert res.log_line.startswith("Invalid '[compute] cpu_dedicated_set' config: one or "
                                   "more of the configured CPUs is not available")
    assert "PCPU total: expected 2, Placement has 1" in res.error
    [again] = env.run(1)  # the plan fixed: a re-run converges
    assert again.status is handoff.HandoffStatus.HANDED_OFF, again.error


def test_a_reinstalled_host_has_its_old_records_removed_first(env: Env):
    key = env.store.find("h1")["key"]
    last = [e for e in env.store.events(key) if e.stage == "handoff"][-1].changes["evidence"]
    old_service, old_provider = last["service"]["id"], last["hypervisor"]["id"]
    env.hostlab.reset(1)  # a fresh root filesystem: no nova.conf, no compute_id
    env.hostlab.start(1)
    nova_hosts.install(env.hostlab, 1)
    [res] = env.run(1)
    assert res.status is handoff.HandoffStatus.HANDED_OFF, (res.error, res.log_line)
    assert res.notes == [
        f"reinstalled: removed the earlier compute service {old_service} of h1",
        f"reinstalled: removed the earlier resource provider {old_provider} (h1)"]
    services = [s for s in env.lab.api("/os-services")["services"] if s["host"] == "h1"]
    assert len(services) == 1
    assert res.evidence["service"]["id"] != old_service
    providers = env.lab.placement("/resource_providers?name=h1")["resource_providers"]
    assert [p["uuid"] for p in providers] == [res.evidence["hypervisor"]["id"]]
    assert providers[0]["uuid"] != old_provider


# --- the CLI: Nova down, --disable, secrets -------------------------------------------------


def _cli_files(env: Env) -> tuple[Path, Path]:
    site = env.dir / "site-handoff.yaml"
    site.write_text(yaml.safe_dump(env.site_data))
    inventory = env.dir / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": [
        {"name": f"h{i}", "ssh": f"root@{env.hostlab.address(i)}",
         "mgmt_address": env.hostlab.address(i)} for i in (1, 2)]}))
    return site, inventory


def cli(env: Env, *args: str, verbose: bool = False) -> subprocess.CompletedProcess[str]:
    site, inventory = _cli_files(env)
    argv = [sys.executable, "-m", "metalctl", *(["--debug"] if verbose else []), "handoff",
            "--site", str(site), "--inventory", str(inventory),
            "--ssh-key", str(env.hostlab.client_key),
            "--known-hosts", str(env.hostlab.known_hosts), "--pki-dir", str(env.pki.dir),
            "--organization", novalab.ORG, "--store", str(env.store.path),
            "--no-canary", *args]
    environ = {**os.environ, "METALCTL_CREDENTIALS_FILE": str(env.lab.credentials_file)}
    return subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=300,
                          check=False)


def test_nova_api_down_is_exit_4_and_a_rerun_converges(env: Env):
    nova.stop_service(env.lab, "nova-api")
    try:
        down = cli(env, "-o", "json")
        assert down.returncode == 4, down.stderr
        assert "compute" in down.stderr
        assert "unreachable" in down.stderr
        assert "Traceback" not in down.stderr
    finally:
        nova.start_api(env.lab)
    again = cli(env, "-o", "json")
    assert again.returncode == 1, again.stderr  # h2 is refused by the gate
    rows = {r["host"]: r for r in yaml.safe_load(again.stdout)}
    assert rows["h1"]["status"] == "handed-off"
    assert rows["h2"]["status"] == "refused"
    # --no-canary (cli() passes it): the result says no guest proved the host
    assert rows["h1"]["evidence"]["canary"] == {
        "skipped": "--no-canary: no guest proved this host"}


def test_disable_takes_the_host_out_of_scheduling(env: Env):
    out = cli(env, "--disable", "--reason", "maintenance: DIMM swap", "-o", "json")
    assert out.returncode == 1, out.stderr  # h2 never registered: failed, h1 disabled
    rows = {r["host"]: r for r in yaml.safe_load(out.stdout)}
    assert rows["h1"]["status"] == "disabled"
    [svc] = [s for s in env.lab.api("/os-services")["services"] if s["host"] == "h1"]
    assert svc["status"] == "disabled"
    assert svc["disabled_reason"] == "maintenance: DIMM swap"
    # a disabled compute is not handed off (the scheduler would not use it)
    [res] = env.run(1)
    assert res.status is handoff.HandoffStatus.FAILED
    assert "disabled" in res.error


def test_no_password_in_output_logs_or_store(env: Env):
    secret = env.lab.rabbit_password
    check = cli(env, "--check", verbose=True)  # peer libraries' debug logs included
    assert check.returncode == 1, check.stderr  # h2 refused; h1 unchanged
    assert "unchanged" in check.stdout
    assert "LVT-002" in check.stdout
    assert secret not in check.stdout + check.stderr
    assert secret not in env.store.path.read_bytes().decode("utf-8", "replace")
    for i in (1, 2):
        assert secret not in env.sh(i, "cat /var/log/nova/*.log 2>/dev/null || true")
    # the password itself is only in nova.conf on the host, root only (no nova group here)
    assert env.sh(1, "stat -c '%a' /etc/nova/nova.conf").strip() == "600"


# --- through the pipeline -------------------------------------------------------------


def test_run_takes_an_installed_node_through_harden_audit_and_handoff(env: Env, tmp_path):
    """``metalctl.run`` from ``installed`` to ``handed-off``: a real IPMI BMC on 127.34 for
    discovery, host h3 (nova-compute on its own libvirtd) as the node's installed host,
    the run's own harden, audit (lab waivers, gate high) and hand-off to the real Nova."""
    import json as json_

    from metalctl import run as pipeline
    from metalctl.credentials import Credential, CredentialSet, Secret
    from metalctl.run import adapters
    from metalctl_lab import peers, procs

    i, bmc_address = 3, "127.34.0.1"
    env.hostlab.start(i)
    nova_hosts.install(env.hostlab, i)
    cfg = tmp_path / "ipmi.json"
    cfg.write_text(json_.dumps({"address": bmc_address, "port": 623, "username": "admin",
                                "password": "bmc-pw-h3", "uuid": "5a3b8c1e-0000-4000-8000-"
                                "000000000003", "manufacturer": "Lenovo",
                                "product": "ThinkSystem SR630", "serial": "RUNH3"}))
    bmc_pid = procs.spawn([peers.metalctl_python(), "-m", "metalctl_lab.ipmi_bmc", str(cfg)],
                          tmp_path / "ipmi.log")
    try:
        rack_path = tmp_path / "rack.yaml"
        rack_path.write_text(yaml.safe_dump({
            "name": "run-handoff", "until": "handoff",
            "bmc": {"ranges": [bmc_address], "credentials": ["lab"], "protocols": ["ipmi"]},
            "profiles": {"default": "compute-general", "bios": "skip"},
            "audit": {"gate": "high",
                      "waivers": str(data_dir("hardening") / "waivers.lab.yaml")}}))
        rack_ = pipeline.load_rack(rack_path)
        site = hosts.load_site(None)
        site.update(SITE_OVERRIDES)
        ssh = {"key_file": env.hostlab.client_key, "known_hosts": env.hostlab.known_hosts}
        inputs = pipeline.StageInputs(
            credentials={"lab": CredentialSet("lab", (Credential("admin",
                                                                 Secret("bmc-pw-h3")),))},
            harden=HardenOptions(site=site, pki=env.pki, **ssh),
            audit=AuditOptions(site=site, pki=env.pki, waivers=waivers.load(
                data_dir("hardening") / "waivers.lab.yaml", {r.id for r in RULES}), **ssh),
            handoff=(env.site(), env.opts()))
        for _ in range(50):  # the BMC process binds within a second or two
            seen = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, until="discover"),
                                store=env.store)
            if seen.nodes and seen.nodes[0].status == "ok":
                break
            time.sleep(0.2)
        [found] = seen.nodes
        # what provision records for an installed node (here: the lab's SSH host h3)
        env.store.set_state(found.key, Lifecycle.INSTALLED, name=f"h{i}")
        env.store.put_data(found.key, "plan", {"profile": "hpc-lab", "plan": env.plan})
        env.store.put_data(found.key, "install", {
            "address": env.hostlab.address(i), "ssh_user": "root", "ssh_port": 22})
        # the table without its verify step: h3 shares this machine's kernel, where making
        # a plan real would write this machine's /sys (tests/unit/test_run_verify_step.py
        # and the lab machines of test_run_handoff_lab.py prove that step)
        table = [a for a in adapters.table(rack_, inputs, env.store) if a.stage != "verify"]
        # stopped at the audit -> hand-off boundary (as a kill there leaves the store) ...
        report = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, until="audit",
                                                         adapters=table), store=env.store)
        [node] = report.nodes
        assert node.status == "ok", node.reason
        assert [node.steps[s] for s in ("enroll", "profile", "provision")] == ["skipped"] * 3
        assert [node.steps[s] for s in ("harden", "audit")] == ["ok"] * 2
        assert "handoff" not in node.steps  # past --until: never started
        assert env.store.node(found.key)["state"] == Lifecycle.AUDITED.value
        # ... and resumed: harden is not repeated, audit (the gate) is, then the hand-off
        report = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, adapters=table),
                              store=env.store)
        [node] = report.nodes
        assert node.status == "ok", node.reason
        assert [node.steps[s] for s in ("harden", "audit", "handoff")] == \
            ["skipped", "ok", "ok"]
        assert len([e for e in env.store.events(found.key)
                    if e.stage == "harden" and e.action == "hardened"]) == 1
        assert node.evidence["audit"]["failing"] == []
        placement = node.evidence["handoff"]["inventories"]  # the result's evidence
        assert placement["MEMORY_MB"]["reserved"] == 512  # the plan's, read from Placement
        assert env.store.node(found.key)["state"] == Lifecycle.HANDED_OFF.value
        assert nova.services_up(env.lab, ("nova-compute",), host=f"h{i}")
        # a re-run repeats nothing destructive: hand-off converges with nothing changed
        again = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, adapters=table),
                             store=env.store)
        [node] = again.nodes
        assert node.steps["harden"] == node.steps["handoff"] == "skipped"
    finally:
        os.kill(bmc_pid, 15)
