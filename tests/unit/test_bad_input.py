"""Issue 19, bad input: one test per class of input that reached the code or misled.

Every refusal is one line naming the file or option and the field, with the README's exit
code (3 invalid input, nothing changed; 4 a peer everything depends on is unavailable).
The CLI runs in-process through the fuzz test's ``cli`` fixture (stages replaced by a
guard); nothing here needs a peer: "Ironic unreachable" is a closed loopback port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from metalctl.errors import IronicUnavailable, PeerUnavailable
from metalctl.run import STAGES, Adapter, StepResult
from metalctl.run.scheduler import ScheduleOptions, Scheduler
from metalctl.store import Store
from tests.unit.test_input_fuzz import REACHED, cli  # noqa: F401 - the fixture

CLOSED = "127.0.0.1"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((CLOSED, 0))
        return s.getsockname()[1]


def one_error_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1, out
    assert "Traceback" not in out, out
    assert "internal error" not in out, out
    return lines[0]


@pytest.fixture
def creds(cli):  # noqa: F811
    path = cli.home / "creds.yaml"
    path.write_text("lab: [{username: admin, password: pw-12345}]\n")
    path.chmod(0o600)
    return path


def rack(tmp: Path, body: str = "", name: str = "rack.yaml") -> Path:
    path = tmp / name
    path.write_text("bmc:\n  ranges: [127.0.0.1]\n  credentials: [lab]\n"
                    "profiles: {default: compute-general}\n" + body)
    return path


# --- exit codes that disagree with the docs --------------------------------------------


def test_run_with_ironic_unreachable_exits_4_before_any_probe(cli, creds, monkeypatch):  # noqa: F811
    from metalctl.cli import common  # the fixture's guard stands in for Ironic: restore it
    from metalctl.ironic import Ironic, IronicConfig

    monkeypatch.setattr(common, "ironic",
                        lambda a: Ironic(IronicConfig(url=a.ironic_url, max_retries=0)).connect())
    code, out = cli(["run", str(rack(cli.home, "until: enroll\n")), "--credentials-file",
                     str(creds), "--ironic-url", f"http://{CLOSED}:{closed_port()}"])
    assert code == 4, out
    assert "Ironic" in one_error_line(out)


def test_a_stage_finding_its_peer_down_stops_the_run_and_raises(tmp_path):
    """An adapter raising IronicUnavailable: the run raises it (exit 4 in the CLI) and
    starts nothing new, rather than reporting every node failed with exit 1."""
    from metalctl.model.node import DiscoveryRecord, Protocol, Status

    store = Store(tmp_path / "s.db").open()
    recs = [DiscoveryRecord(address=f"127.25.9.{i}", port=443, protocol=Protocol.REDFISH,
                            status=Status.OK, scheme="https", name=f"n{i}") for i in range(3)]
    later: list[str] = []

    def discover(keys, emit):
        for r in recs:
            store.save_discovered(r)
            emit(StepResult(r.key, True))

    def enroll(keys, emit):
        raise IronicUnavailable(reason="API unreachable (ConnectFailure)")

    adapters = [Adapter("discover", discover, recheck=True), Adapter("enroll", enroll)]
    adapters += [Adapter(s, lambda keys, emit, s=s: later.extend(keys)) for s in STAGES[2:]]
    sched = Scheduler(adapters, store, ScheduleOptions(limits={"enroll": 1}))
    with pytest.raises(PeerUnavailable):
        sched.run()
    assert later == []
    assert "Ironic" in (sched.stopped or "")
    assert sum(n.status == "failed" for n in sched.nodes.values()) == 1  # only the one tried
    store.close()


def test_every_peer_error_maps_to_exit_4_in_main():
    """One mapping: each "peer unavailable" class is a PeerUnavailable."""
    from metalctl.cloud import CloudUnavailable
    from metalctl.errors import LabError, StoreError
    from metalctl.provision.errors import BootServiceError

    for cls in (CloudUnavailable, LabError, StoreError, BootServiceError, IronicUnavailable):
        assert issubclass(cls, PeerUnavailable), cls
