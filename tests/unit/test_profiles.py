from pathlib import Path

import pytest

from metalctl.errors import ProfileError
from metalctl.profile.library import ProfileLibrary

SHIPPED = ["compute-general", "compute-small", "hpc", "nfv-dpdk", "nfv-sriov"]


def write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.yaml"
    p.write_text(text)
    return p


def test_shipped_profiles_load_with_their_chain():
    lib = ProfileLibrary()
    assert lib.names() == SHIPPED
    dpdk = lib.load("nfv-dpdk")
    assert [p.stem for p in dpdk.chain] == ["nfv-dpdk", "nfv-sriov", "compute-general"]
    # deep merge: inherited keys stay, lists are replaced
    assert dpdk.get("cpu.isolation") == "tuned"
    assert dpdk.get("cpu.pmd_cores_per_numa_with_nic") == 2
    assert dpdk.get("sriov.nics")[0]["match"] == {"driver": "ice"}
    assert dpdk.get("bios.virtualization") is True


def test_site_profile_overrides_and_extends_shipped(tmp_path):
    write(tmp_path, "edge-nfv", "extends: nfv-sriov\nhugepages: {size: 2M, gib_per_numa: 4}\n")
    p = ProfileLibrary([tmp_path]).load("edge-nfv")
    # the child's gib_per_numa replaces the parent's percent_per_numa (one of them only)
    assert p.get("hugepages.gib_per_numa") == 4
    assert "percent_per_numa" not in p.get("hugepages")
    assert p.get("cpu.guest_cpus") == "dedicated"


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "bad", "extends: nfv-sriov\ncpu:\n  host_cores_per_numaa: 2\n")
    with pytest.raises(ProfileError) as exc:
        ProfileLibrary([tmp_path]).load("bad")
    assert str(exc.value) == (f"{path}:3: cpu.host_cores_per_numaa: unknown key; "
                              "did you mean 'host_cores_per_numa'?")


def test_bad_value_and_type(tmp_path):
    write(tmp_path, "v", "cpu: {isolation: maybe}\n")
    with pytest.raises(ProfileError, match=r"v.yaml:1: cpu.isolation: 'maybe' is not one of"):
        ProfileLibrary([tmp_path]).load("v")
    write(tmp_path, "t", "sriov:\n  nics:\n    - {match: {driver: ice}, vfs: many, "
                         "physical_network: p}\n")
    with pytest.raises(ProfileError, match=r"t.yaml:3: sriov.nics\[0\].vfs"):
        ProfileLibrary([tmp_path]).load("t")
    write(tmp_path, "h", "hugepages: {size: 1G, percent_per_numa: 50, gib_per_numa: 4}\n")
    with pytest.raises(ProfileError, match="exactly one of percent_per_numa, gib_per_numa"):
        ProfileLibrary([tmp_path]).load("h")


def test_unknown_profile_loop_and_yaml_errors(tmp_path):
    with pytest.raises(ProfileError, match="did you mean 'nfv-sriov'"):
        ProfileLibrary().load("nfv-sriv")
    write(tmp_path, "a", "extends: b\n")
    write(tmp_path, "b", "extends: a\n")
    with pytest.raises(ProfileError, match="extends loop: a -> b -> a"):
        ProfileLibrary([tmp_path]).load("a")
    write(tmp_path, "y", "cpu: [unclosed\n")
    with pytest.raises(ProfileError, match=r"y.yaml:\d+: \(syntax\): "):
        ProfileLibrary([tmp_path]).load("y")
