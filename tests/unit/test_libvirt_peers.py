"""Hosts hardened one at a time in a run still accept each other's libvirt client
certificates: the DN list is the site's compute hosts, not the host alone (live migration
connects from the other host)."""

from __future__ import annotations

from metalctl.hosts import HostSpec, allowed_dns
from metalctl.model.node import Lifecycle
from metalctl.pki import SitePKI
from metalctl.run.adapters import _peers
from metalctl.store import Store


def test_the_dn_list_names_the_peers_once_after_the_hosts(tmp_path):
    pki = SitePKI(tmp_path / "pki", organization="site")
    host = HostSpec(name="c1", ssh="root@192.0.2.1", mgmt_address="192.0.2.1")
    dns = allowed_dns([host], pki, {"libvirt": {"extra_allowed_dns": ["C=US,O=ops,CN=x"]}},
                      peers=("c1", "c2"))
    assert dns == [pki.client_dn("c1"), pki.client_dn("c2"), "C=US,O=ops,CN=x"]


def test_a_runs_peers_are_its_named_nodes_past_discovery(tmp_path):
    from metalctl.model.node import DiscoveryRecord, Protocol, Status

    with Store(tmp_path / "s.db") as store:
        for i, state in enumerate((Lifecycle.DISCOVERED, Lifecycle.ENROLLED,
                                   Lifecycle.HANDED_OFF)):
            rec = DiscoveryRecord(address=f"127.0.0.{i + 1}", port=443,
                                  protocol=Protocol.REDFISH, status=Status.OK)
            store.save_discovered(rec)
            store.set_state(rec.key, state, name=f"n{i}")
        assert _peers(store) == ("n1", "n2")
