"""The hand-off's other cell-mapping method: ``nova-manage cell_v2 discover_hosts`` run on
a controller over SSH, against a control plane whose scheduler never maps computes
itself (``discover_hosts_in_cells_interval = -1``). The controller is a real sshd on
127.96.0.1 serving this machine, where the lab's Nova databases live; the compute runs in
a lab host on net 207 (the shared hand-off lab, which may be up beside it, has 206). The
gate reads an audit record written here (the gate itself is tested in test_handoff.py).
It keeps a Nova of its own: the shared one maps computes itself every 2 s."""

from __future__ import annotations

import time

import pytest

from metalctl import handoff, hosts
from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.pki import SitePKI
from metalctl.store import Store, now
from metalctl_lab import nova, nova_hosts, sshd
from metalctl_lab.hosts import HostLab

from . import novalab

pytestmark = pytest.mark.peers

CONTROLLER = "127.96.0.1"
#: not the shared lab's net (novalab.NET): that lab may be up beside this one
NET = 207


def test_discover_hosts_on_a_controller_maps_the_compute(tmp_path):
    novalab.ensure_rabbitmq()
    hostlab = HostLab(tmp_path / "hosts", net=NET, layers=nova_hosts.LAYERS)
    peer = None
    try:
        hostlab.start(1)
        nova_hosts.install(hostlab, 1)
        lab = nova.up(tmp_path / "nova", hostlab.gateway, bind_address=hostlab.gateway,
                      discover_interval_s=-1)
        peer = sshd.start(tmp_path / "controller", CONTROLLER, 2222)
        # one key and one known_hosts for the hosts and the controller, as on a site
        with (peer.directory / "authorized_keys").open("a") as f:
            f.write(hostlab.client_key.with_suffix(".pub").read_text())
        with hostlab.known_hosts.open("a") as f:
            f.write(peer.known_hosts.read_text())
        pki = SitePKI(tmp_path / "pki")
        pki.init()
        pki.issue("h1", [], [hostlab.address(1)])
        store = Store(tmp_path / "store.db").open()
        rec = DiscoveryRecord(address=hostlab.address(1), port=623, protocol=Protocol.IPMI,
                              status=Status.OK)
        store.save_discovered(rec)
        store.set_state(rec.key, Lifecycle.AUDITED, name="h1")
        store.put_data(rec.key, "plan", {"profile": "hpc-lab", "plan": nova_hosts.lab_plan()})
        store.save_audit("cell-test", now(), {"hosts": 1, "fail": 0, "errors": []},
                         [("h1", "LVT-001", "pass", "high", "{}")])
        site = handoff.site.from_dict(
            {"nova": nova_hosts.site(lab),
             "handoff": {"api": nova_hosts.handoff_api(lab), "register_timeout_s": 60,
                         "cell_mapping": {"method": "discover_hosts",
                                          "controller": f"root@{CONTROLLER}:2222",
                                          "command": lab.discover_hosts_command()}}},
            "cell site", credentials_file=lab.credentials_file)
        opts = handoff.HandoffOptions(pki=pki, key_file=hostlab.client_key,
                                      known_hosts=hostlab.known_hosts,
                                      canary=False)  # this lab has no Glance: cell mapping only
        spec = hosts.HostSpec("h1", f"root@{hostlab.address(1)}", hostlab.address(1))
        started = time.monotonic()
        [res] = handoff.handoff([spec], site, opts, store=store)
        print(f"\nhandoff with discover_hosts: {time.monotonic() - started:.1f} s "
              f"{res.evidence.get('timings_s')}")
        assert res.status is handoff.HandoffStatus.HANDED_OFF, (res.error, res.log_line)
        assert res.evidence["cell_mapping"].startswith("discover_hosts: ")
        assert "h1" in res.evidence["cell_mapping"]  # nova-manage named the host it mapped
        assert res.evidence["inventories"]["PCPU"]["total"] == 1
        # the scheduler never discovers hosts here: the mapping was metalctl's
        assert "discover_hosts_in_cells_interval = -1" in \
            (lab.dir / "nova" / "nova.conf").read_text()
    finally:
        if peer:
            peer.stop()
        nova.down(tmp_path / "nova")
        hostlab.down()
