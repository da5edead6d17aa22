"""The sshd allow-list rules cover OpenSSH's whole class: every cipher, MAC and key
exchange OpenSSH knows is either allowed by its rule or recorded weak (with the reason),
and each weak one alone fails its rule (tests/data/openssh-algorithms.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from metalctl.audit import run as audit_run
from metalctl.rules import catalogue, engine
from metalctl.rules.gather import HostFacts

DATA = yaml.safe_load((Path(__file__).parent.parent / "data" /
                       "openssh-algorithms.yaml").read_text())
RULES = {r.id: r for r in catalogue.load()}
BY_LIST = {"ciphers": "SSH-007", "macs": "SSH-008", "kex": "SSH-011"}
KEYWORD = {"ciphers": "ciphers", "macs": "macs", "kex": "kexalgorithms"}


def verdict(rid: str, keyword: str, value: str) -> str:
    f = HostFacts(family="debian", os_id="debian",
                  probes={"sshd-T": f"permitrootlogin no\n{keyword} {value}\n"})
    ctx = engine.Context(host="h", mgmt_address="192.0.2.1", allowed_dns=[], site={})
    [o] = engine.evaluate([RULES[rid]], f, ctx).outcomes
    return audit_run.to_result("h", RULES[rid], o).status


@pytest.mark.parametrize("name", sorted(BY_LIST))
def test_every_openssh_algorithm_is_allowed_or_recorded_weak(name):
    only = set(RULES[BY_LIST[name]].check["only"])
    weak = set(DATA[name]["weak"])
    assert not only & weak
    assert set(DATA[name]["all"]) <= only | weak, set(DATA[name]["all"]) - only - weak


@pytest.mark.parametrize(("name", "alg"), [(n, a) for n in sorted(BY_LIST)
                                           for a in DATA[n]["all"]])
def test_each_algorithm_alone_gets_its_verdict(name, alg):
    expect = "fail" if alg in DATA[name]["weak"] else "pass"
    assert verdict(BY_LIST[name], KEYWORD[name], alg) == expect


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no local OpenSSH")
@pytest.mark.parametrize("name", sorted(BY_LIST))
def test_the_local_openssh_knows_nothing_unclassified(name):
    query = {"ciphers": "cipher", "macs": "mac", "kex": "kex"}[name]
    local = subprocess.run(["ssh", "-Q", query], capture_output=True, text=True,
                           check=True).stdout.split()
    only = set(RULES[BY_LIST[name]].check["only"])
    unclassified = set(local) - only - set(DATA[name]["weak"])
    assert not unclassified, f"classify in tests/data/openssh-algorithms.yaml: {unclassified}"
