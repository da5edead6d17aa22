"""The rack file: schema errors name file, line and field; the match language."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metalctl.cli.main import main
from metalctl.errors import InputError
from metalctl.model.hardware import Hardware, NicFacts
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.model.topology import Nic, NumaNode, Topology
from metalctl.run import FailureBudget, load_rack
from metalctl.run.rackfile import matches

LAB = Path(__file__).resolve().parents[2] / "inventory" / "rack.lab.yaml"
GOOD = """\
name: r1
bmc:
  ranges: [127.25.1.1-3]
  credentials: [lab]
profiles:
  default: compute-general
  rules:
    - when: {sriov_nic_on_numa: 1}
      profile: nfv-sriov
failure_budget: 10%
"""


def lab_files(lab: Path) -> None:
    """What the lab rack names in its directory (``metalctl lab up`` creates them): the
    rack file's paths are checked at load."""
    for name in ("operator/id_ed25519", "installer/vmlinuz", "installer/initrd.img",
                 "installer/stage2.img", "provision-site.yaml", "provnet-203/dnsmasq.conf",
                 "nova-site.yaml"):
        (lab / name).parent.mkdir(parents=True, exist_ok=True)
        (lab / name).write_text("")


def test_the_lab_rack_file_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("METALCTL_LAB_DIR", str(tmp_path))
    lab_files(tmp_path)
    monkeypatch.setenv("METALCTL_BOOT_SERVE", "10.203.0.1:8080")
    monkeypatch.setenv("METALCTL_DNSMASQ_CONF", str(tmp_path / "provnet-203" / "dnsmasq.conf"))
    rack = load_rack(LAB)
    assert rack.provision["serve"] == "10.203.0.1:8080"
    assert rack.provision["site"] == tmp_path / "provision-site.yaml"
    assert rack.name == "lab"
    assert rack.credentials == ("lab",)
    assert rack.profile_rules[0].profile == "compute-small"
    assert str(rack.failure_budget) == "25%"
    assert rack.concurrency["provision"] == 2
    assert rack.concurrency["discover"] == 64  # default kept


@pytest.mark.parametrize(("change", "where", "reason"), [
    ("  ranges: [127.25.1.1-3]", "bmc.ranges[0]", "not"),
    ("  credentials: [lab]", "bmc.credentials", "expected"),
    ("      profile: nfv-sriov", "profiles.rules[0].profile", "no such profile"),
    ("failure_budget: 10%", "failure_budget", "not N or N%"),
    ("    - when: {sriov_nic_on_numa: 1}", "profiles.rules[0].when.sriov_nic_on_numa_node",
     "unknown key"),
])
def test_errors_name_file_line_and_field(tmp_path, change, where, reason):
    replacement = {
        "  ranges: [127.25.1.1-3]": "  ranges: [127.25.1.999]",
        "  credentials: [lab]": "  credentials: lab",
        "      profile: nfv-sriov": "      profile: nfv-sriovv",
        "failure_budget: 10%": "failure_budget: ten",
        "    - when: {sriov_nic_on_numa: 1}": "    - when: {sriov_nic_on_numa_node: 1}",
    }[change]
    text = GOOD.replace(change, replacement)
    path = tmp_path / "rack.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_rack(path)
    line = next(i for i, x in enumerate(text.splitlines(), 1) if x == replacement)
    assert str(err.value).startswith(f"{path}:{line}: {where}: "), str(err.value)
    assert reason in str(err.value)


def test_malformed_rack_exits_3_and_touches_nothing(tmp_path, capsys):
    path = tmp_path / "rack.yaml"
    path.write_text(GOOD.replace("credentials: [lab]", "credentials: [lab]\n  pasword: x"))
    store = tmp_path / "store.db"
    code = main(["run", str(path), "--store", str(store)])
    assert code == 3
    err = capsys.readouterr().err
    assert f"{path}:5: bmc.pasword: unknown key" in err
    assert not store.exists()  # nothing opened, nothing probed


def test_failure_budget_parsing():
    assert FailureBudget.parse("3").allowed(100) == 3
    assert FailureBudget.parse("10%").allowed(50) == 5
    assert FailureBudget.parse(None).allowed(10) == float("inf")
    assert FailureBudget.parse(0).spent(1, 10)
    assert not FailureBudget.parse("10%").spent(5, 50)
    assert FailureBudget.parse("10%").spent(6, 50)
    for bad in ("-1", "x", "101%"):
        with pytest.raises(InputError):
            FailureBudget.parse(bad)


def rec(**kw) -> DiscoveryRecord:
    return DiscoveryRecord(address="127.25.1.1", port=443, protocol=Protocol.REDFISH,
                           status=Status.OK, **kw)


def test_the_match_language():
    sriov1 = Topology(nics=(Nic("ens1", numa_node=1, max_vfs=64), Nic("ens0", numa_node=0)))
    sriov0 = Topology(nics=(Nic("ens1", numa_node=0, max_vfs=64),))
    unknown = Topology(nics=(Nic("ens1", numa_node=None, max_vfs=None),))
    assert matches({"sriov_nic_on_numa": 1}, rec(), sriov1)
    assert not matches({"sriov_nic_on_numa": 1}, rec(), sriov0)
    assert not matches({"sriov_nic_on_numa": 1}, rec(), unknown)  # unknown never matches
    assert matches({"manufacturer": ["Dell*", "HPE"]}, rec(manufacturer="Dell Inc."), None)
    assert not matches({"manufacturer": "HPE"}, rec(manufacturer=None), None)
    big = rec(hardware=Hardware(memory_gib=512, nics=(NicFacts("aa:bb:cc:dd:ee:ff",
                                                               sriov_capable=True),)))
    assert matches({"memory_gib_min": 256, "sriov_nic": True}, big, None)
    assert not matches({"memory_gib_min": 256, "protocol": "ipmi"}, big, None)  # AND
    assert not matches({"memory_gib_max": 4}, big, None)
    assert not matches({"memory_gib_max": 4}, rec(), None)  # memory unknown
    # in-band facts win over the BMC's figure: 2 x 256 MiB is 0.5 GiB
    small = Topology(numa=(NumaNode(0, memory_mib=256), NumaNode(1, memory_mib=256)))
    assert matches({"memory_gib_max": 4}, big, small)
    assert not matches({"memory_gib_min": 1}, big, small)


def test_profile_selection_first_rule_wins_else_default(tmp_path):
    path = tmp_path / "rack.yaml"
    path.write_text(GOOD)
    rack = load_rack(path)
    assert rack.select_profile(rec(), Topology(nics=(Nic("e", numa_node=1, max_vfs=8),))) \
        == "nfv-sriov"
    assert rack.select_profile(rec(), Topology()) == "compute-general"


def test_paths_take_environment_variables_and_an_unset_one_names_the_field(tmp_path,
                                                                           monkeypatch):
    from metalctl.errors import InputError
    from metalctl.run import rackfile

    rack = tmp_path / "rack.yaml"
    rack.write_text("bmc: {ranges: [127.0.0.1], credentials: [lab]}\n"
                    "provision:\n  site: ${LABDIR_T}/site.yaml\n  files_dir: files\n")
    monkeypatch.setenv("LABDIR_T", str(tmp_path / "lab"))
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "site.yaml").write_text("")
    (tmp_path / "files").mkdir()
    r = rackfile.load(rack)
    assert r.provision["site"] == tmp_path / "lab" / "site.yaml"
    assert r.provision["files_dir"] == tmp_path / "files"
    monkeypatch.delenv("LABDIR_T")
    with pytest.raises(InputError, match=r"rack.yaml:3: provision.site: \$\{LABDIR_T\} is not"):
        rackfile.load(rack)


def test_a_run_to_handoff_needs_the_sites_nova_file(tmp_path, monkeypatch):
    """``metalctl run`` builds the hand-off's inputs from ``site.nova`` and the audit gate;
    without the file it is an input error naming the rack file's field."""
    from metalctl.run.inputs import handoff_inputs

    path = tmp_path / "rack.yaml"
    path.write_text(GOOD)
    with pytest.raises(InputError) as exc:
        handoff_inputs(load_rack(path), None, {"key_file": None, "known_hosts": None,
                                               "sudo": False})
    assert "site.nova" in str(exc.value)
    assert str(path) in str(exc.value)
    for name in ("NOVA_RABBIT", "NOVA_PLACEMENT"):  # credential sets from the environment
        monkeypatch.setenv(f"METALCTL_CRED_{name}_USERNAME", "nova")
        monkeypatch.setenv(f"METALCTL_CRED_{name}_PASSWORD", "not-shown")
    nova = tmp_path / "nova-site.yaml"
    nova.write_text(yaml.safe_dump({
        "nova": {"transport": {"hosts": ["192.0.2.1:5672"], "credentials": "nova-rabbit"},
                 "placement": {"auth_type": "password", "auth_url": "https://192.0.2.1:5000/v3",
                               "credentials": "nova-placement", "project_name": "service",
                               "user_domain_name": "Default",
                               "project_domain_name": "Default"}},
        "handoff": {"api": {"compute_endpoint": "http://192.0.2.1:8774/v2.1",
                            "placement_endpoint": "http://192.0.2.1:8778",
                            "placement_credentials": "nova-placement"},
                    "cell_mapping": {"method": "interval"}}}))
    data = yaml.safe_load(GOOD)
    data["site"] = {"nova": str(nova)}
    data["audit"] = {"gate": "medium"}
    path.write_text(yaml.safe_dump(data))
    site, opts = handoff_inputs(load_rack(path), None, {"key_file": None,
                                                        "known_hosts": None, "sudo": False})
    assert opts.gate_severity == "medium"
    assert site.nova is not None


IRONIC_RACK = """\
bmc: {ranges: [127.0.0.1], credentials: [lab]}
provision:
  via: ironic
  boot_url: ${BOOT_T}
  kernel: ${BOOT_T}/files/vmlinuz
  initrd: ${BOOT_T}/files/initrd.img
  stage2: ${BOOT_T}/files/stage2.img
  ironic:
    image_source: ${BOOT_T}/files/liveimg.tar.gz
    deploy_kernel: ${BOOT_T}/files/vmlinuz
    deploy_ramdisk: ${BOOT_T}/files/initrd.img
    boot_mode: bios
"""


def test_a_rack_installs_through_ironics_anaconda_deploy(tmp_path, monkeypatch):
    """``provision.via: ironic``: the anaconda deploy's URLs come from the rack file, with
    ``${VAR}``s, and a missing or non-URL one names its field."""
    from metalctl.run.inputs import provision_request

    monkeypatch.setenv("BOOT_T", "http://10.203.0.1:8080")
    path = tmp_path / "rack.yaml"
    path.write_text(IRONIC_RACK)
    req = provision_request(load_rack(path), {})
    assert req.via == "ironic"
    assert req.deploy is not None
    assert req.deploy.image_source == "http://10.203.0.1:8080/files/liveimg.tar.gz"
    assert req.deploy.stage2 == "http://10.203.0.1:8080/files/stage2.img"
    assert req.deploy.boot_mode == "bios"
    for change, field in (("    image_source: ${BOOT_T}/files/liveimg.tar.gz\n",
                           "provision.ironic.image_source"),
                          ("  kernel: ${BOOT_T}/files/vmlinuz\n", "provision.kernel")):
        path.write_text(IRONIC_RACK.replace(change, change.replace("${BOOT_T}", "files")
                                            if "kernel" in change else ""))
        with pytest.raises(InputError) as exc:
            provision_request(load_rack(path), {})
        assert f"{path}: {field}: " in str(exc.value), exc.value
