"""``metalctl run`` against real peers: its own emulated rack on 127.25.0.0/16 (sushy-tools
BMCs over TLS, an RMCP+ IPMI BMC, a standalone Ironic), driven through the CLI as an
operator runs it; convergence is checked from Ironic itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from metalctl.ironic import Ironic, IronicConfig
from metalctl.store import Store
from metalctl_lab import rack

from .labrun import env_of, metalctl, rack_file

SPEC = rack.RackSpec(octet=25, redfish_bmcs=2, systems_per_bmc=2, ipmi_bmcs=1,
                     libvirt_domains=0, dead=1)
SYSTEMS = SPEC.redfish_bmcs * SPEC.systems_per_bmc + SPEC.ipmi_bmcs


@pytest.fixture(scope="module")
def lab25(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lab25")
    state = rack.up(SPEC, directory, install=os.environ.get("METALCTL_TEST_INSTALL") == "1")
    yield state
    rack.down(directory)


@pytest.fixture
def ironic(lab25) -> Ironic:
    """The rack's Ironic, emptied before each test."""
    ir = Ironic(IronicConfig(url=lab25.ironic_url)).connect()
    for node in ir.nodes():
        ir.client.node.delete(node["uuid"])
    return ir


def ironic_keys(ironic: Ironic) -> Counter[str]:
    """How many Ironic nodes carry each metalctl key (a duplicate counts 2)."""
    return Counter((n.get("extra") or {}).get("metalctl_key") for n in ironic.nodes())


def test_run_to_profile_and_rerun_converges_with_no_duplicate_in_ironic(lab25, ironic,
                                                                        tmp_path):
    env, path = env_of(lab25, tmp_path), rack_file(tmp_path, lab25)
    t0 = time.monotonic()
    first = metalctl(["run", str(path), "-o", "json", "--report-dir", str(tmp_path / "r")], env)
    took = time.monotonic() - t0
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert report["counts"] == {"ok": SYSTEMS}
    assert all(n["steps"]["enroll"] == "ok" and n["steps"]["profile"] == "ok"
               for n in report["nodes"])
    ipmi = next(n for n in report["nodes"] if n["key"].startswith("ipmi://"))
    assert ipmi["evidence"]["profile"]["profile"] == "hpc"  # the rack's rule, not the default
    keys = ironic_keys(ironic)
    assert sorted(keys.values()) == [1] * SYSTEMS
    uuids = {n["uuid"] for n in ironic.nodes()}
    html = Path(report["files"]["html"]).read_text()
    assert all(n["node"] in html for n in report["nodes"])
    assert "<script" not in html

    second = metalctl(["run", str(path), "-o", "json"], env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert again["counts"] == {"ok": SYSTEMS}
    # resume: profile is done (skipped), enroll re-checked against Ironic, nothing created
    assert {n["steps"]["profile"] for n in again["nodes"]} == {"skipped"}
    assert {n["evidence"]["enroll"]["action"] for n in again["nodes"]} == {"unchanged"}
    assert {n["uuid"] for n in ironic.nodes()} == uuids
    assert sorted(ironic_keys(ironic).values()) == [1] * SYSTEMS
    with Store(tmp_path / "store.db").open() as store:
        assert {n["state"] for n in store.nodes()} == {"profiled"}
        created = [e for e in store.events() if e.stage == "enroll" and e.action == "created"]
        assert len(created) == SYSTEMS
    print(f"run to profile: {took:.1f} s for {SYSTEMS} nodes")

    nodes = metalctl(["nodes", "-o", "json"], env)
    rows = json.loads(nodes.stdout)
    assert all(set(r["timings_s"]) >= {"discover", "enroll", "profile"} for r in rows)


def test_kill_at_a_stage_boundary_then_rerun_converges(lab25, ironic, tmp_path):
    env, path = env_of(lab25, tmp_path), rack_file(tmp_path, lab25)
    proc = subprocess.Popen([sys.executable, "-m", "metalctl", "run", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:  # plain lines: stderr is a pipe
        seen.append(line)
        if " enroll ok " in line:  # the first node past the enroll boundary
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    with Store(tmp_path / "store.db").open() as store:
        states = Counter(n["state"] for n in store.nodes())
    assert states["enrolled"] >= 1
    assert states.get("profiled", 0) < SYSTEMS  # killed part-way
    rerun = metalctl(["run", str(path), "-o", "json"], env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads(rerun.stdout)["counts"] == {"ok": SYSTEMS}
    # checked from Ironic: one node per system, whatever the kill cut short
    assert sorted(ironic_keys(ironic).values()) == [1] * SYSTEMS
    assert {n["provision_state"] for n in ironic.nodes()} == {"manageable"}


def test_a_node_failing_a_stage_does_not_stop_the_others(lab25, ironic, tmp_path):
    # BIOS required: the fake-driver BMCs have no Bios resource and fail profile; the
    # IPMI node (if-supported would pass it) is made to fail too only when required
    path = rack_file(tmp_path, lab25, profiles={"default": "compute-general",
                                                "bios": "if-supported"})
    env = env_of(lab25, tmp_path)
    proc = metalctl(["run", str(path), "-o", "json"], env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    by_status = Counter(n["status"] for n in report["nodes"])
    assert by_status == {"failed": SYSTEMS - SPEC.ipmi_bmcs, "ok": SPEC.ipmi_bmcs}
    failed = [n for n in report["nodes"] if n["status"] == "failed"]
    assert all(n["reason"].startswith("profile: ") and "Bios" in n["reason"] for n in failed)
    ok = next(n for n in report["nodes"] if n["status"] == "ok")
    assert ok["evidence"]["profile"]["bios"] == "unsupported"
    with Store(tmp_path / "store.db").open() as store:
        states = Counter(n["state"] for n in store.nodes())
    assert states == {"enrolled": SYSTEMS - SPEC.ipmi_bmcs, "profiled": SPEC.ipmi_bmcs}


def test_malformed_rack_file_is_exit_3_and_touches_nothing(lab25, ironic, tmp_path):
    path = rack_file(tmp_path, lab25)
    text = path.read_text().replace("credentials:", "credential:")
    path.write_text(text)
    env = env_of(lab25, tmp_path)
    proc = metalctl(["run", str(path)], env)
    assert proc.returncode == 3
    line = next(i for i, x in enumerate(text.splitlines(), 1) if "credential:" in x)
    assert f"{path}:{line}: bmc.credential: unknown key" in proc.stderr
    assert ironic.nodes() == []
    assert not (tmp_path / "store.db").exists()


def test_library_run_never_reinstalls_an_installed_node(lab25, ironic, tmp_path):
    """Through ``metalctl.run`` as a library: a node the store says is installed is not
    handed to provision again (no step at all), unless ``from_stage`` asks for it."""
    from metalctl import credentials
    from metalctl import run as pipeline
    from metalctl.model.node import Lifecycle

    path = rack_file(tmp_path, lab25, until="provision")
    rack_ = pipeline.load_rack(path)
    creds = credentials.resolve("lab", Path(lab25.credentials_file), interactive=False)
    inputs = pipeline.StageInputs(credentials={"lab": creds}, verify=lab25.ca_bundle,
                                  ironic=Ironic(IronicConfig(url=lab25.ironic_url)).connect())
    with Store(tmp_path / "store.db").open() as store:
        first = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, until="profile"),
                             store=store)
        assert first.counts() == {"ok": SYSTEMS}
        installed = first.nodes[0]
        store.put_data(installed.key, "install", {"address": "192.0.2.10", "ssh_user": "root",
                                                  "ssh_port": 22})
        store.set_state(installed.key, Lifecycle.INSTALLED)
        report = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs), store=store)
        by_key = {n.key: n for n in report.nodes}
        assert by_key[installed.key].steps["provision"] == "skipped"
        assert by_key[installed.key].status == "ok"
        others = [n for n in report.nodes if n.key != installed.key]
        # no provision inputs given: every node that does need an install fails, with why
        assert {n.status for n in others} == {"failed"}
        assert all("provision needs its inputs" in n.reason for n in others)
        redo = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, from_stage="provision",
                                                       only=[installed.key]), store=store)
        node = next(n for n in redo.nodes if n.key == installed.key)
        assert node.steps["provision"] == "failed"  # asked for: handed to provision again


def test_audit_stage_scans_the_installed_host_and_applies_the_gate(lab25, ironic, tmp_path):
    """The audit adapter over a real sshd on 127.25 (read-only: audit changes nothing):
    the host comes from the node's install record, its key from that record's known_hosts,
    and the rack's gate decides."""
    from metalctl import credentials
    from metalctl import run as pipeline
    from metalctl.audit.run import AuditOptions
    from metalctl.model.node import Lifecycle
    from metalctl.run import adapters
    from metalctl_lab import sshd

    peer = sshd.start(tmp_path / "sshd", "127.25.5.1", 2325)
    try:
        path = rack_file(tmp_path, lab25, bmc={"ranges": [SPEC.ipmi_address(0)],
                                               "credentials": ["lab"]},
                         audit={"gate": "high"}, until="audit")
        rack_ = pipeline.load_rack(path)
        creds = credentials.resolve("lab", Path(lab25.credentials_file), interactive=False)
        inputs = pipeline.StageInputs(
            credentials={"lab": creds}, verify=lab25.ca_bundle,
            ironic=Ironic(IronicConfig(url=lab25.ironic_url)).connect(),
            audit=AuditOptions(key_file=peer.client_key))
        with Store(tmp_path / "store.db").open() as store:
            first = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, until="profile"),
                                 store=store)
            [node] = first.nodes
            store.put_data(node.key, "install", {
                "address": peer.address, "ssh_user": "root", "ssh_port": peer.port,
                "known_hosts": str(peer.known_hosts)})
            store.set_state(node.key, Lifecycle.HARDENED)  # as if harden had run
            # the table without its verify step: this sshd serves this machine's own
            # filesystem as root, where making a plan real would write /etc and /sys
            # (tests/unit/test_run_verify_step.py and the lab machines prove that step)
            table = [a for a in adapters.table(rack_, replace(
                inputs, report_dir=tmp_path / "reports"), store) if a.stage != "verify"]
            report = pipeline.run(rack_, pipeline.RunOptions(inputs=inputs, adapters=table,
                                                             report_dir=tmp_path / "reports"),
                                  store=store)
            [audited] = report.nodes
            assert audited.steps["harden"] == "skipped"
            ev = audited.evidence["audit"]
            assert sum(ev["counts"].values()) > 0  # rules really evaluated over SSH
            assert ev["gate"] == "high"
            assert (audited.status == "ok") == (not ev["failing"])
            if ev["failing"]:
                assert audited.reason.startswith("audit: audit gate high: ")
            assert [s["scan_id"] for s in store.audit_scans()] == [ev["scan_id"]]
            # the audit's own page beside the run's, linked from it
            assert ev["report"] == f"audit-{ev['scan_id']}.html"
            assert "SSH-008" in (tmp_path / "reports" / ev["report"]).read_text()
            assert f'href="{ev["report"]}"' in Path(report.files["html"]).read_text()
    finally:
        peer.stop()
