"""The CLI as a datacenter tech runs it: exit codes, formats, errors, no secret leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .clirun import ipmi_nodes_file, lab_env, run
from .conftest import SPEC


def test_discover_json_contract_and_exit_code(lab, tmp_path):
    env = lab_env(lab, tmp_path)
    proc = run(["discover", *lab.ranges, "--credentials", "lab", "-o", "json"], env, 0)
    rows = json.loads(proc.stdout)
    assert {"address", "protocol", "system_id", "uuid", "vendor", "model", "serial",
            "power_state", "bios_version", "cpu", "memory_gib", "nics", "status",
            "error"} <= set(rows[0])
    assert {r["status"] for r in rows} == {"ok", "no-bmc"}
    yaml_rows = yaml.safe_load(run(["discover", SPEC.ipmi_address(0), "--credentials", "lab",
                                    "-o", "yaml"], env, 0).stdout)
    assert yaml_rows[0]["serial"] == "LAB200000"


def test_failed_address_sets_exit_code_1(lab, tmp_path):
    env = lab_env(lab, tmp_path)
    creds = tmp_path / "creds.yaml"
    creds.write_text("bad: [{username: admin, password: nope-nope}]\n")
    creds.chmod(0o600)
    proc = run(["discover", SPEC.redfish_address(0), "--credentials", "bad",
                "--credentials-file", str(creds)], env, 1)
    assert "auth-failed" in proc.stdout


def test_bad_range_is_exit_3_naming_the_argument(lab, tmp_path):
    proc = run(["discover", "127.20.1.1-127.20.1.300", "--credentials", "lab"],
               lab_env(lab, tmp_path), 3)
    assert "targets[0]" in proc.stderr


def test_malformed_inventory_is_exit_3_and_enrolls_nothing(lab, ironic, tmp_path):
    bad = tmp_path / "nodes.yaml"
    bad.write_text(yaml.safe_dump({"nodes": [
        {"name": "ok", "driver": "ipmi", "driver_info": {"ipmi_address": SPEC.ipmi_address(0)}},
        {"name": "bad", "driver": "ipmi", "driver_info": {"ipmi_address": "127.20.9.9"},
         "ports": [{"address": "52:54:00:zz:00:01"}]}]}))
    proc = run(["enroll", "--from-file", str(bad)], lab_env(lab, tmp_path), 3)
    assert f"{bad}: nodes[1].ports[0].address" in proc.stderr
    assert ironic.nodes() == []


def test_ironic_unreachable_is_exit_4(lab, tmp_path):
    env = {**lab_env(lab, tmp_path), "METALCTL_IRONIC_URL": "http://127.20.9.30:6385"}
    run(["discover", SPEC.ipmi_address(0), "--credentials", "lab"], env, 0)
    proc = run(["enroll"], env, 4)
    assert "unreachable" in proc.stderr


def test_no_secret_in_output_logs_or_store(lab, lab_password, ironic, tmp_path):
    env = lab_env(lab, tmp_path)
    log = tmp_path / "debug.log"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("lab: [{username: admin, password: marker-WRONG-pw}]\n")
    wrong.chmod(0o600)
    nodes = ipmi_nodes_file(tmp_path / "nodes.yaml", "from-file", SPEC.ipmi_address(1),
                            lab_password)
    outputs = []
    for args in (["discover", *lab.ranges, "--credentials", "lab"],
                 ["discover", SPEC.redfish_address(0), SPEC.ipmi_address(0),
                  "--credentials", "lab", "--credentials-file", str(wrong)],
                 ["enroll", "--credentials", "lab", "-o", "json"],
                 ["enroll", "--from-file", str(nodes), "--update-credentials"],
                 ["nodes", "-o", "json"], ["history", "-o", "yaml"]):
        proc = run(["--debug", "--log-file", str(log), *args], env)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        outputs += [proc.stdout, proc.stderr]
    assert any("POST" in o or "nodes" in o for o in outputs)  # debug logging really ran
    haystacks = [*outputs, log.read_text()]
    for db in tmp_path.glob("store.db*"):
        haystacks.append(db.read_bytes().decode("latin-1"))
    ironic_view = json.dumps(ironic.nodes())
    for name, marker in (("lab password", lab_password), ("wrong password", "marker-WRONG-pw")):
        for i, text in enumerate([*haystacks, ironic_view]):
            if marker in text:  # fail without echoing the secret into the test report
                pytest.fail(f"{name} leaked into output #{i}")
    assert len(ironic.nodes()) >= 2
    assert Path(log).stat().st_size > 10_000


def test_concurrent_discovers_on_one_store_all_succeed(lab, tmp_path):
    """Three `metalctl discover` processes at once on one store: none crashes on the
    nodes' unique key, each system is one node with exactly one 'discovered' event."""
    env = lab_env(lab, tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "metalctl", "discover", *lab.ranges,
                               "--credentials", "lab", "-o", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env}) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-2000:] for _, e in outs]
    found = {r["key"] for r in json.loads(outs[0][0]) if r["status"] == "ok"}
    from metalctl.store import Store

    with Store(Path(env["METALCTL_STORE"])) as store:
        assert {n["key"] for n in store.nodes()} == found
        discovered = [e.node_key for e in store.events() if e.action == "discovered"]
        assert sorted(discovered) == sorted(found)
        assert len({s["address"] for s in store.scans()}) == len(store.scans())


def test_kg_key_and_password_masked_at_debug_against_the_lab_ironic(lab, ironic, tmp_path):
    env = lab_env(lab, tmp_path)
    log = tmp_path / "debug.log"
    kg_key, password = "0f1e2d3c4b5a69788796", "marker-file-pw-7f3a"
    nodes = ipmi_nodes_file(tmp_path / "nodes.yaml", "kg-file", "127.22.0.41", password,
                            kg_key, "52:54:00:22:00:41")
    proc = run(["--debug", "--log-file", str(log), "enroll", "--from-file", str(nodes),
                "--no-manage", "-o", "json"], env, 0)
    assert json.loads(proc.stdout)[0]["action"] == "created"
    texts = [proc.stdout, proc.stderr, log.read_text()]
    texts += [db.read_bytes().decode("latin-1") for db in tmp_path.glob("store.db*")]
    assert "ipmi_kg_key" in texts[2]  # the request body was logged, field and all
    for i, text in enumerate(texts):
        for marker in (kg_key, password):
            if marker in text:
                pytest.fail(f"a credential leaked into output #{i}")
