"""The ``firewall`` kind beyond its rule cases: the nftables interpreter on rulesets it
must not take at their word, firewalld's fix, and the kickstart opening what harden opens."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from kscases import CALLBACK, KS_SITE, NODE, parse_kickstart, stored_plan

from metalctl.provision import kickstart as ks
from metalctl.rules.kinds import firewall as fw

ROOT = Path(__file__).resolve().parents[2]
RULES = yaml.safe_load((ROOT / "hardening" / "rules" / "firewall.yaml").read_text())
RECORDED = ROOT / "tests" / "data" / "rule-cases" / "firewall"
MGMT = "192.0.2.10"
WANT = fw.parse_ports([16514, "49152-49215", "5900-5999"])


def ruleset(*rules: list[dict], policy: str = "drop", extra: tuple = ()) -> dict:
    chain = {"family": "inet", "table": "t", "name": "input", "type": "filter",
             "hook": "input", "prio": 0, "policy": policy}
    items = [{"chain": chain}, *extra]
    items += [{"rule": {"family": "inet", "table": "t", "chain": "input", "handle": i,
                        "expr": e}} for i, e in enumerate(rules)]
    return {"nftables": items}


def dport(right, proto: str = "tcp") -> dict:
    return {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}},
                      "right": right}}


ACCEPT, DROP = {"accept": None}, {"drop": None}


def test_port_sets():
    assert fw.minus(fw.ALL, ((22, 22),)) == ((1, 21), (23, 65535))
    assert fw.union(((1, 5),), ((6, 9),)) == ((1, 9),)
    assert fw.inter(((1, 10),), ((5, 20),)) == ((5, 10),)
    assert fw.show(WANT) == "5900-5999,16514,49152-49215"


def test_the_recorded_harden_ruleset_opens_exactly_the_plan():
    j = fw.judge_nft(json.loads((RECORDED / "nft-metalctl.json").read_text()), MGMT)
    assert j.open_must == j.open_may
    assert not j.unknown
    assert j.drop_policy
    assert j.open_may[("tcp", True)] == fw.union(WANT, ((22, 22),))
    assert j.open_may[("tcp", False)] == ((22, 22),)


def test_an_expression_it_does_not_know_is_no_proof_either_way():
    # a rate limit may refuse the port: not certainly open; nor certainly closed
    doc = ruleset([dport(22), ACCEPT], [{"limit": {"rate": 10, "per": "second"}},
                                        dport(16514), ACCEPT])
    j = fw.judge_nft(doc, MGMT)
    assert j.open_must[("tcp", True)] == ((22, 22),)
    assert j.open_may[("tcp", True)] == ((22, 22), (16514, 16514))
    assert any("limit" in u for u in j.unknown)


def test_a_drop_in_another_base_chain_wins_and_a_policy_accept_chain_opens_nothing():
    other = {"chain": {"family": "ip", "table": "o", "name": "in", "type": "filter",
                       "hook": "input", "prio": 10, "policy": "accept"}}
    block = {"rule": {"family": "ip", "table": "o", "chain": "in", "handle": 1,
                      "expr": [dport(16514), DROP]}}
    opens = {"rule": {"family": "ip", "table": "o", "chain": "in", "handle": 2,
                      "expr": [dport(8080), ACCEPT]}}
    doc = ruleset([dport({"set": [22, 16514]}), ACCEPT], extra=(other, block, opens))
    j = fw.judge_nft(doc, MGMT)
    assert j.open_may[("tcp", True)] == ((22, 22),)


def test_jump_return_and_a_daddr_elsewhere():
    sub = {"chain": {"family": "inet", "table": "t", "name": "compute"}}
    rules = [{"rule": {"family": "inet", "table": "t", "chain": "compute", "handle": 10 + i,
                       "expr": e}}
             for i, e in enumerate([[dport(5900), {"return": None}], [dport(16514), ACCEPT]])]
    doc = ruleset([{"match": {"op": "==", "left": {"payload": {"protocol": "ip",
                                                                "field": "daddr"}},
                              "right": MGMT}}, {"jump": {"target": "compute"}}],
                  [dport(5900), ACCEPT], extra=(sub, *rules))
    j = fw.judge_nft(doc, MGMT)
    assert j.open_must[("tcp", True)] == ((5900, 5900), (16514, 16514))
    assert j.open_may[("tcp", False)] == ((5900, 5900),)  # 5900 open on every address


def test_udp_open_is_beyond_the_plan():
    j = fw.judge_nft(ruleset([dport(53, "udp"), ACCEPT]), MGMT)
    assert j.open_may[("udp", True)] == ((53, 53),)
    assert j.open_may[("tcp", True)] == ()


def test_no_ruleset_opens_everything():
    j = fw.judge_nft(json.loads((RECORDED / "nft-empty.json").read_text()), MGMT)
    assert j.open_must[("tcp", True)] == fw.ALL
    assert not j.drop_policy


def test_firewalld_fix_builds_the_zone_it_then_judges_compliant():
    fix = fw.firewalld_fix(MGMT, 22, WANT)
    rich = fw.rich_rules(MGMT, WANT)
    assert all(f"--add-rich-rule='{r}'" in fix for r in rich)
    assert fix.index("nftables.service") < fix.index("--reload") < fix.index("--set-default")
    zone = ("state: running\ndefault: metalctl\nactive: metalctl\nmetalctl (default, active)\n"
            "  target: DROP\n  services: ssh\n  ports: \n  rich rules: \n"
            + "".join(f"\t{r}\n" for r in rich))
    assert fw.judge_firewalld(fw.parse_firewalld(zone), MGMT, 22, WANT) == []


def test_the_rules_open_the_same_ports_and_qemu_is_held_to_them():
    by_id = {r["id"]: r for r in RULES}
    assert by_id["FWL-001"]["check"] == by_id["FWL-002"]["check"]
    ports = fw.parse_ports(by_id["FWL-001"]["check"]["ports"])
    q = by_id["FWL-004"]["check"]["values"]
    assert fw.inter(ports, ((q["remote_display_port_min"], q["remote_display_port_max"]),)) \
        == ((q["remote_display_port_min"], q["remote_display_port_max"]),)
    assert fw.inter(ports, ((q["migration_port_min"], q["migration_port_max"]),)) \
        == ((q["migration_port_min"], q["migration_port_max"]),)


@pytest.mark.parametrize("dhcp", [False, True])
def test_the_kickstart_opens_what_harden_opens(tk_row, dhcp):
    node = NODE if not dhcp else dataclasses.replace(NODE, address=None, gateway=None)
    variables = {**ks.variables_for(tk_row, KS_SITE, node, callback=CALLBACK)}
    text = ks.render("rhel9-kvm", variables).text
    handler = parse_kickstart(text)
    assert handler.firewall.enabled
    assert "ssh" in handler.firewall.services
    assert set(handler.firewall.remove_services) == {"cockpit", "dhcpv6-client"}
    [ports] = re.findall(r"for port in (.*); do", text)
    assert fw.parse_ports(ports.split()) == fw.parse_ports(RULES[0]["check"]["ports"])
    assert "--set-target=DROP" in text
    assert "--set-default-zone=metalctl" in text
    if dhcp:
        assert '= "52:54:00:aa:bb:01" ]' in text
    else:
        assert "mgmt=10.0.0.21\n" in text


@pytest.fixture(scope="module")
def tk_row(tmp_path_factory):
    return stored_plan(tmp_path_factory.mktemp("store"), "r750-2s-48c-512g.txt",
                           "nfv-sriov")
