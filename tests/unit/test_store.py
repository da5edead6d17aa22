import os

from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.store import Store


def rec(**kw):
    base = {"address": "127.0.0.1", "port": 623, "protocol": Protocol.IPMI, "status": Status.OK}
    return DiscoveryRecord(**{**base, **kw})


def test_lifecycle_never_moves_backwards_and_events_are_kept(tmp_path):
    with Store(tmp_path / "s.db") as store:
        assert store.save_discovered(rec(serial="A")) == "discovered"
        store.set_state(rec().key, Lifecycle.ENROLLED, name="n1", ironic_uuid="u1")
        assert store.save_discovered(rec(serial="B")) == "rediscovered"
        node = store.nodes()[0]
        assert (node["state"], node["name"], node["record"]["serial"]) == ("enrolled", "n1", "B")
        events = list(store.events(rec().key))
        assert [e.action for e in events] == ["discovered", "rediscovered"]
        assert events[1].changes["serial"] == {"from": "A", "to": "B"}
    assert oct(os.stat(tmp_path / "s.db").st_mode & 0o777) == "0o600"
