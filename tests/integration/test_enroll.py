"""Enrollment into a real standalone Ironic, driving real emulated BMCs."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from metalctl import discover, enroll
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.enroll import inventory
from metalctl.errors import IronicUnavailable
from metalctl.ironic import Ironic, IronicConfig
from metalctl.netaddrs import parse_targets

from .conftest import SPEC
from .faults import TcpProxy

FAST = Budget(connect_timeout_s=2.0, read_timeout_s=30.0, attempts=1, deadline_s=120.0,
              concurrency=8)


def lab_records(lab, creds, addresses=None):
    targets = parse_targets(addresses or lab.ranges)
    opts = discover.DiscoverOptions(verify=lab.ca_bundle,
                                    budget=Budget(connect_timeout_s=1, read_timeout_s=5))
    return [r for r in discover.discover(targets, creds, opts) if r.status.value == "ok"]


def options(lab, **kw):
    return enroll.EnrollOptions(**{"verify_ca": lab.ca_bundle, "budget": FAST,
                                   "poll_interval_s": 0.5, **kw})


def ironic_view(ir):
    nodes, ports = ir.nodes(), ir.ports()
    return nodes, ports


def test_enroll_reaches_manageable_and_rerun_changes_nothing(lab, lab_creds, ironic):
    records = lab_records(lab, lab_creds)
    opts = options(lab)
    desired = enroll.desired_from_records(records, {"lab": lab_creds}, opts)
    first = enroll.enroll(desired, ironic, opts)
    assert Counter(r.action.value for r in first) == {"created": len(records)}
    nodes, ports = ironic_view(ironic)
    assert len(nodes) == len(records)
    assert {n["provision_state"] for n in nodes} == {"manageable"}  # Ironic checked the BMCs
    assert {n["driver"] for n in nodes} == {"redfish", "ipmi"}
    macs = [n.mac for r in records for n in r.hardware.nics]
    assert sorted(p["address"] for p in ports) == sorted(macs)
    kvm = next(n for n in nodes if n["extra"]["system_uuid"] == SPEC.system_uuid("libvirt", 0, 0))
    assert kvm["properties"]["memory_mb"] == 8192
    assert kvm["properties"]["local_gb"] == 39  # largest disk less 1 GiB, as Ironic inspection does
    # re-run: matched, nothing created twice
    second = enroll.enroll(desired, ironic, opts)
    assert Counter(r.action.value for r in second) == {"unchanged": len(records)}
    nodes2, ports2 = ironic_view(ironic)
    assert len(nodes2) == len(nodes)
    assert len(ports2) == len(ports)


def test_drift_is_updated_and_missing_port_recreated(lab, lab_creds, ironic):
    records = lab_records(lab, lab_creds, [SPEC.redfish_address(0)])
    opts = options(lab)
    desired = enroll.desired_from_records(records, {"lab": lab_creds}, opts)
    enroll.enroll(desired, ironic, opts)
    victim = ironic.nodes()[0]
    ironic.update_node(victim["uuid"], [{"op": "add", "path": "/resource_class",
                                         "value": "wrong"}])
    port = next(p for p in ironic.ports() if p["node_uuid"] == victim["uuid"])
    ironic.client.port.delete(port["uuid"])
    again = {r.uuid: r for r in enroll.enroll(desired, ironic, opts)}
    assert again[victim["uuid"]].action.value == "updated"
    assert "resource_class" in again[victim["uuid"]].changes
    assert f"port {port['address']}" in again[victim["uuid"]].changes
    assert ironic.node(victim["uuid"])["resource_class"] == "baremetal"


def _files(lab, tmp_path, password):
    bm = {"nodes": [
        {"name": "bm-redfish", "driver": "redfish",
         "driver_info": {"redfish_address": f"https://{SPEC.redfish_address(0)}",
                         "redfish_system_id": "/redfish/v1/Systems/"
                                              + SPEC.system_uuid("redfish", 0, 0),
                         "redfish_username": "admin", "redfish_password": password,
                         "redfish_verify_ca": lab.ca_bundle},
         "ports": [{"address": SPEC.system_mac(0, 0, 0)}]},
        {"name": "bm-ipmi", "driver": "ipmi",
         "driver_info": {"ipmi_address": SPEC.ipmi_address(0), "ipmi_username": "admin",
                         "ipmi_password": password}},
    ]}
    instack = {"nodes": [
        {"name": "tripleo-redfish", "pm_type": "redfish", "pm_addr": SPEC.redfish_address(1),
         "pm_system_id": "/redfish/v1/Systems/" + SPEC.system_uuid("redfish", 1, 1),
         "pm_user": "admin", "pm_password": password, "pm_verify_ca": lab.ca_bundle,
         "mac": [SPEC.system_mac(1, 1, 0)], "cpu": 4, "memory": 8192, "arch": "x86_64"},
        {"name": "tripleo-ipmi", "pm_type": "ipmi", "pm_addr": SPEC.ipmi_address(1),
         "pm_user": "admin", "pm_password": password},
    ]}
    a, b = tmp_path / "nodes.yaml", tmp_path / "instackenv.json"
    import yaml

    a.write_text(yaml.safe_dump(bm))
    b.write_text(json.dumps(instack))
    return a, b


def test_import_baremetal_create_and_instackenv(lab, lab_password, ironic, tmp_path):
    files = _files(lab, tmp_path, lab_password)
    desired = [n for f in files for n in inventory.load(f)]
    opts = options(lab)
    results = enroll.enroll(desired, ironic, opts)
    assert {r.name: (r.action.value, r.provision_state) for r in results} == {
        name: ("created", "manageable")
        for name in ("bm-redfish", "bm-ipmi", "tripleo-redfish", "tripleo-ipmi")}
    again = enroll.enroll([n for f in files for n in inventory.load(f)], ironic, opts)
    assert {r.action.value for r in again} == {"unchanged"}
    assert len(ironic.nodes()) == 4


def test_existing_node_matched_by_mac_even_when_renamed(lab, lab_creds, ironic):
    records = lab_records(lab, lab_creds, [SPEC.redfish_address(1)])
    opts = options(lab)
    desired = enroll.desired_from_records(records, {"lab": lab_creds}, opts)
    enroll.enroll(desired, ironic, opts)
    renamed = enroll.desired_from_records(records, {"lab": lab_creds},
                                          options(lab, name_template="r01-{index}"))
    results = enroll.enroll(renamed, ironic, opts)
    assert {r.action.value for r in results} == {"updated"}
    assert sorted(n["name"] for n in ironic.nodes()) == ["r01-000", "r01-001"]


def test_ambiguous_match_is_refused_and_changes_nothing(lab, lab_creds, ironic):
    records = lab_records(lab, lab_creds, [SPEC.redfish_address(0)])
    opts = options(lab)
    desired = enroll.desired_from_records(records, {"lab": lab_creds}, opts)[0]
    # two pre-existing nodes: one owns the BMC identity, another owns a MAC of it
    ironic.create_node(driver="redfish", name="holds-bmc", driver_info=desired.driver_info)
    other = ironic.create_node(driver="ipmi", name="holds-mac",
                               driver_info={"ipmi_address": "127.20.9.9"})
    ironic.create_port(other["uuid"], desired.macs[0])
    [res] = enroll.enroll([desired], ironic, opts)
    assert res.action.value == "failed"
    assert "several" in res.error or "matches" in res.error
    assert sorted(n["name"] for n in ironic.nodes()) == ["holds-bmc", "holds-mac"]


def test_wrong_bmc_password_leaves_node_in_enroll_with_reason(lab, ironic):
    bad = CredentialSet("lab", (Credential("admin", Secret("not-the-password")),))
    records = lab_records(lab, CredentialSet("lab", bad.entries), [SPEC.redfish_address(0)])
    assert records == []  # discovery already says auth-failed; build the node by hand
    desired = inventory.DesiredNode(
        key="k", origin="test", driver="redfish",
        driver_info={"redfish_address": f"https://{SPEC.redfish_address(0)}",
                     "redfish_system_id": "/redfish/v1/Systems/"
                                          + SPEC.system_uuid("redfish", 0, 1),
                     "redfish_username": "admin", "redfish_verify_ca": lab.ca_bundle},
        password=Secret("not-the-password"), password_field="redfish_password", name="badpw")
    [res] = enroll.enroll([desired], ironic, options(lab))
    assert res.action.value == "failed"
    assert res.provision_state is None or res.provision_state == "enroll"
    assert ironic.nodes()[0]["provision_state"] == "enroll"
    assert "not-the-password" not in res.error


def test_ironic_down_mid_batch_then_rerun_converges(lab, lab_creds, ironic):
    host, port = lab.ironic_url.rsplit("//", 1)[1].split(":")
    proxy = TcpProxy("127.20.9.20", 6385, (host, int(port)))
    try:
        via_proxy = Ironic(IronicConfig(url="http://127.20.9.20:6385", max_retries=0)).connect()
        records = lab_records(lab, lab_creds)
        opts = options(lab, budget=Budget(**{**FAST.__dict__, "concurrency": 1}))
        desired = enroll.desired_from_records(records, {"lab": lab_creds}, opts)
        created = []
        create = via_proxy.create_node

        def create_then_die_on_second(**attrs):
            node = create(**attrs)
            created.append(node["uuid"])
            if len(created) == 2:  # Ironic vanishes right after its 2nd node POST
                proxy.down()
            return node

        via_proxy.create_node = create_then_die_on_second
        results = enroll.enroll(desired, via_proxy, opts)
        assert {r.action.value for r in results} == {"failed"}
        assert all("re-run" in r.error for r in results)
        assert len(ironic.nodes()) == 2  # what landed before the failure
        with pytest.raises(IronicUnavailable):
            enroll.enroll(desired, via_proxy, opts)  # still down: cannot even plan
        proxy.up()
        via_proxy.create_node = create
        again = enroll.enroll(desired, via_proxy, opts)
        counts = Counter(r.action.value for r in again)
        assert counts["created"] == len(records) - 2, again
        assert counts["failed"] == 0
        nodes, ports = ironic.nodes(), ironic.ports()
        assert len(nodes) == len(records)  # no duplicate for the two created before
        assert len({n["extra"]["metalctl_key"] for n in nodes}) == len(records)
        assert len(ports) == sum(len(d.macs) for d in desired)
        assert {n["provision_state"] for n in nodes} == {"manageable"}
    finally:
        proxy.down()


def test_clouds_yaml_connection_and_provide(lab, lab_creds, ironic, tmp_path, monkeypatch):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(f"clouds:\n  metal-lab:\n    auth_type: none\n"
                      f"    baremetal_endpoint_override: {lab.ironic_url}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    via_cloud = Ironic(IronicConfig(cloud="metal-lab")).connect()
    records = lab_records(lab, lab_creds, [SPEC.ipmi_address(0)])
    opts = options(lab, provide=True)
    [res] = enroll.enroll(enroll.desired_from_records(records, {"lab": lab_creds}, opts),
                          via_cloud, opts)
    assert (res.action.value, res.provision_state) == ("created", "available")
    assert ironic.node(res.uuid)["provision_state"] == "available"


def test_one_bmc_reached_by_two_addresses_is_one_node_and_reruns_converge(lab, lab_creds,
                                                                          ironic):
    """A second address in front of the same BMC (127.22.0.30 forwards to Redfish BMC 0)
    yields the same systems twice; the plan keeps the lowest address, records the alias,
    and every re-run leaves Ironic unchanged instead of flipping the address."""
    direct = SPEC.redfish_address(0)
    proxy = TcpProxy("127.22.0.30", 443, (direct, 443))
    try:
        records = lab_records(lab, lab_creds, [direct])
        opts = discover.DiscoverOptions(verify=False,  # the certificate names the BMC
                                        budget=Budget(connect_timeout_s=1, read_timeout_s=5))
        aliased = [r for r in discover.discover(parse_targets(["127.22.0.30"]), lab_creds,
                                                opts) if r.status.value == "ok"]
        assert sorted(r.uuid for r in aliased) == sorted(r.uuid for r in records)
        eopts = options(lab)
        for order in (records + aliased, aliased + records):
            desired = enroll.desired_from_records(order, {"lab": lab_creds}, eopts)
            assert len(desired) == len(records)
            assert {d.driver_info["redfish_address"] for d in desired} == {f"https://{direct}"}
        first = enroll.enroll(desired, ironic, eopts)
        assert Counter(r.action.value for r in first) == {"created": len(records)}
        for _ in range(2):
            desired = enroll.desired_from_records(aliased + records, {"lab": lab_creds}, eopts)
            again = enroll.enroll(desired, ironic, eopts)
            assert Counter(r.action.value for r in again) == {"unchanged": len(records)}
        nodes = ironic.nodes()
        assert len(nodes) == len(records)
        assert sorted(a for n in nodes for a in n["extra"]["metalctl_aliases"]) == \
            sorted(r.key for r in aliased)
    finally:
        proxy.down()


def test_plan_refuses_repeated_names_macs_and_unusable_macs_from_discovery(lab, lab_creds,
                                                                          ironic):
    records = lab_records(lab, lab_creds, [SPEC.redfish_address(0)])
    opts = options(lab, manage=False)
    good = enroll.desired_from_records(records, {"lab": lab_creds}, opts)
    assert len(good) >= 2
    twin = dataclasses.replace(good[1], name=good[0].name)
    broadcast = dataclasses.replace(good[1], key=good[1].key + "-b", name="bcast",
                                    macs=("ff:ff:ff:ff:ff:ff",),
                                    driver_info={**good[1].driver_info,
                                                 "redfish_system_id": "/redfish/v1/Systems/x"})
    results = {r.key: r for r in enroll.enroll([good[0], twin, broadcast], ironic, opts)}
    assert results[good[0].key].action.value == "created"
    assert results[twin.key].action.value == "failed"
    assert f"name {good[0].name!r} is already {good[0].key}'s" in results[twin.key].error
    assert results[broadcast.key].action.value == "failed"
    assert "broadcast MAC" in results[broadcast.key].error
    assert [n["name"] for n in ironic.nodes()] == [good[0].name]  # nothing else was written
    assert {p["address"] for p in ironic.ports()} == set(good[0].macs)
