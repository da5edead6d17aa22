"""The run scheduler with scripted stage adapters and a real store.

Scripted adapters behave as the real stages do towards the store (each sets the lifecycle
state it owns before it reports), sleep a per-node time, and log every call, so the tests
assert on what happened: order, peaks of concurrency, what was done twice.
Run as a script (``python test_run_scheduler.py STORE LOG KILL_STAGE``), the pipeline kills
its own process with SIGKILL right after a stage boundary, as an operator's kill would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.run import STAGES, Adapter, FailureBudget, StepResult
from metalctl.run.scheduler import STATE_OF, ScheduleOptions, Scheduler
from metalctl.store import Store

HERE = Path(__file__).resolve()


def record(i: int) -> DiscoveryRecord:
    return DiscoveryRecord(address=f"127.25.9.{i}", port=443, protocol=Protocol.REDFISH,
                           status=Status.OK, scheme="https", system_id=f"/redfish/v1/Systems/{i}",
                           name=f"n{i:02d}")


class Script:
    """A scripted pipeline: ``delay[(stage, i)]`` seconds, ``fail`` = {(stage, i)}."""

    def __init__(self, store: Store, n: int, *, delay: dict | None = None,
                 default_s: float = 0.0, fail: set | None = None,
                 log: Path | None = None, kill_after: str | None = None) -> None:
        self.store, self.n = store, n
        self.delay, self.default_s = delay or {}, default_s
        self.fail = fail or set()
        self.log, self.kill_after = log, kill_after
        self.calls: list[tuple[str, str, float, float]] = []  # stage, key, start, end
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.index = {record(i).key: i for i in range(n)}

    def adapters(self, pools: dict | None = None, batch: set | None = None) -> list[Adapter]:
        pools = pools or {}
        out = [Adapter("discover", self.discover, recheck=True)]
        for stage in STAGES[1:]:
            out.append(Adapter(stage, self.stage_call(stage), pools=pools.get(stage, ()),
                               batch=stage in (batch or ()), recheck=stage in ("enroll",
                                                                               "audit")))
        return out

    def discover(self, keys: list[str], emit) -> None:
        for i in range(self.n):
            self.store.save_discovered(record(i))
            emit(StepResult(record(i).key, True))

    def stage_call(self, stage: str):
        def call(keys: list[str], emit) -> None:
            with self.lock:
                self.running[stage] += len(keys)
                self.running["all"] += len(keys)
                self.peak[stage] = max(self.peak[stage], self.running[stage])
                self.peak["all"] = max(self.peak["all"], self.running["all"])
            start = time.monotonic()
            for key in keys:
                i = self.index[key]
                time.sleep(self.delay.get((stage, i), self.default_s))
                ok = (stage, i) not in self.fail
                if self.log:
                    with self.log.open("a") as f:
                        f.write(f"{stage} {key}\n")
                if ok:  # the stage records its own transition, as the real ones do
                    self.store.set_state(key, STATE_OF[stage])
                with self.lock:
                    self.calls.append((stage, key, start, time.monotonic()))
                if ok and stage == self.kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                emit(StepResult(key, ok, None if ok else f"scripted failure of {stage}"))
            with self.lock:
                self.running[stage] -= len(keys)
                self.running["all"] -= len(keys)
        return call


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.db").open()
    yield s
    s.close()


def schedule(script: Script, store: Store, **kw) -> Scheduler:
    pools, batch = kw.pop("pools", None), kw.pop("batch", None)
    sched = Scheduler(script.adapters(pools, batch), store, ScheduleOptions(**kw))
    sched.run()
    return sched


def test_a_fast_node_finishes_while_a_slow_one_is_still_at_its_second_stage(store):
    script = Script(store, 2, delay={("enroll", 1): 0.8}, default_s=0.01)
    sched = schedule(script, store)
    slow, fast = record(1).key, record(0).key
    end = {(s, k): e for s, k, _, e in script.calls}
    assert end[("handoff", fast)] < end[("enroll", slow)]  # per node, not per batch
    assert {n.status for n in sched.nodes.values()} == {"ok"}
    assert store.node(slow)["state"] == Lifecycle.HANDED_OFF.value
    assert set(sched.nodes[fast].timings) == set(STAGES)
    assert sched.nodes[slow].timings["enroll"] >= 0.8


def test_per_stage_and_shared_bmc_power_bounds_hold_and_are_used(store):
    script = Script(store, 12, default_s=0.05)
    limits = {"enroll": 4, "profile": 3, "provision": 2, "bmc_power": 3}
    schedule(script, store, limits=limits,
             pools={"profile": ("profile", "bmc_power"), "provision": ("provision",
                                                                       "bmc_power")})
    assert script.peak["profile"] <= 3
    assert script.peak["provision"] <= 2
    assert script.peak["enroll"] == 4  # reached: the bound is what held it
    # profile and provision share the BMC power slots
    both = [(s, a, b) for s, _, a, b in script.calls if s in ("profile", "provision")]
    peak = max(sum(1 for _, a, b in both if a <= t < b) for _, t, _ in both)
    assert peak <= 3


def test_a_batch_stage_gets_many_nodes_per_call(store):
    script = Script(store, 20, default_s=0.0)
    calls: list[int] = []
    adapters = script.adapters()
    inner = adapters[1].call
    adapters[1] = Adapter("enroll", lambda keys, emit: (calls.append(len(keys)),
                                                       inner(keys, emit)), batch=True,
                          recheck=True)
    Scheduler(adapters, store, ScheduleOptions(limits={"enroll": 50})).run()
    assert sum(calls) == 20
    assert len(calls) < 20


def test_a_failed_node_stops_there_and_the_others_go_on(store):
    script = Script(store, 5, fail={("profile", 2)})
    sched = schedule(script, store)
    bad = sched.nodes[record(2).key]
    assert bad.status == "failed"
    assert bad.reason == "profile: scripted failure of profile"
    assert "provision" not in bad.steps
    assert store.node(bad.key)["state"] == Lifecycle.ENROLLED.value
    assert sum(n.status == "ok" for n in sched.nodes.values()) == 4
    assert not sched.stopped
    events = [e for e in store.events(bad.key) if e.stage == "run"]
    assert [e.action for e in events][-1] == "profile-failed"
    assert events[-1].error == "scripted failure of profile"


@pytest.mark.parametrize(("budget", "stops_after"), [("0", 1), ("2", 3), ("20%", 3),
                                                     ("50%", None)])
def test_failure_budget_stops_new_work(store, budget, stops_after):
    # 10 nodes; nodes 0-4 fail at enroll one after the other; the rest are slow to enroll
    delay = {("enroll", i): 0.1 + 0.02 * i for i in range(5)}
    delay.update({("enroll", i): 0.6 for i in range(5, 10)})
    script = Script(store, 10, delay=delay, fail={("enroll", i) for i in range(5)})
    sched = schedule(script, store, budget=FailureBudget.parse(budget),
                     limits={"enroll": 10})
    failed = sum(n.status == "failed" for n in sched.nodes.values())
    if stops_after is None:
        assert sched.stopped is None
        assert failed == 5
        assert sum(n.status == "ok" for n in sched.nodes.values()) == 5
        return
    assert sched.stopped
    assert "failure budget spent" in sched.stopped
    # in-flight enrolls finish; nothing after enroll is started for anyone
    started_after = [c for c in script.calls if c[0] != "enroll"]
    assert started_after == []
    stopped = [n for n in sched.nodes.values() if n.status == "stopped"]
    assert len(stopped) == 5
    assert all("failure budget" in n.reason for n in stopped)
    assert failed == 5


def test_until_only_and_from(store):
    script = Script(store, 3)
    sched = schedule(script, store, until="profile")
    assert {store.node(k)["state"] for k in sched.nodes} == {"profiled"}
    assert not [c for c in script.calls if c[0] == "provision"]
    script = Script(store, 3)
    sched = schedule(script, store, only=(record(1).key,))
    assert {c[1] for c in script.calls} == {record(1).key}
    assert sched.nodes[record(0).key].reason == "not selected (--only)"
    # resume: the selected node skips profile (done); --from provision redoes provision
    assert ("profile", record(1).key) not in {(c[0], c[1]) for c in script.calls}
    script = Script(store, 3)
    schedule(script, store, only=(record(1).key,), redo=STAGES[3:])
    assert [c[0] for c in script.calls].count("provision") == 1


def pipeline_main(db: str, log: str, kill_after: str) -> None:
    """The subprocess side of the kill test: run until the SIGKILL."""
    with Store(Path(db)).open() as st:
        script = Script(st, 4, default_s=0.01, log=Path(log), kill_after=kill_after)
        Scheduler(script.adapters(), st, ScheduleOptions()).run()


@pytest.mark.parametrize("boundary", STAGES[1:])
def test_resume_after_kill_at_each_boundary_converges_without_repeating(tmp_path, boundary):
    db, log = tmp_path / "store.db", tmp_path / "calls.log"
    proc = subprocess.run([sys.executable, str(HERE), str(db), str(log), boundary],
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    before = Counter(tuple(line.split()) for line in log.read_text().splitlines())
    with Store(db).open() as st:
        state_at_kill = {n["key"]: Lifecycle(n["state"]) for n in st.nodes()}
    assert STATE_OF[boundary] in state_at_kill.values()  # killed right after that boundary
    with Store(db).open() as st:
        script = Script(st, 4, default_s=0.0, log=log)
        sched = Scheduler(script.adapters(), st, ScheduleOptions())
        sched.run()
        assert {n.status for n in sched.nodes.values()} == {"ok"}
        assert {n["state"] for n in st.nodes()} == {Lifecycle.HANDED_OFF.value}
    calls = Counter(tuple(line.split()) for line in log.read_text().splitlines())
    for i in range(4):
        key = record(i).key
        for stage in ("profile", "provision", "harden", "handoff"):
            if state_at_kill.get(key, Lifecycle.DISCOVERED).rank >= STATE_OF[stage].rank:
                # done before the kill: never again (no reinstall of an installed node)
                assert calls[(stage, key)] == before[(stage, key)] == 1, (stage, key)
            else:  # done by the second run, once (a stage cut short is redone by it)
                assert calls[(stage, key)] - before[(stage, key)] == 1, (stage, key)
    # the cheap ones are re-checked: every node was enrolled and audited again
    again = Counter(c[0] for c in script.calls)
    assert again["enroll"] == 4
    assert again["audit"] == 4


def test_enroll_is_rechecked_only_before_install(store):
    script = Script(store, 2)
    adapters = script.adapters()
    adapters[1].recheck_below = Lifecycle.INSTALLED
    for i in range(2):
        store.save_discovered(record(i))
    store.set_state(record(0).key, Lifecycle.INSTALLED)
    store.set_state(record(1).key, Lifecycle.PROFILED)
    Scheduler(adapters, store, ScheduleOptions()).run()
    enrolled = [c[1] for c in script.calls if c[0] == "enroll"]
    assert enrolled == [record(1).key]
    assert [c[1] for c in script.calls if c[0] == "provision"] == [record(1).key]


if __name__ == "__main__":
    pipeline_main(*sys.argv[1:4])
