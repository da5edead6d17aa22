"""The one wait helper, on a fake clock: nothing here sleeps."""

from __future__ import annotations

import pytest

from metalctl.errors import BmcTimeout, MetalctlError, WaitTimeout
from metalctl.poll import wait_for


class Clock:
    """A clock that only moves when slept on, recording every pause."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def reads(*values):
    """A check returning ``values`` in turn, then the last one forever."""
    seq = list(values)
    return lambda: seq.pop(0) if len(seq) > 1 else seq[0]


def test_returns_the_first_ready_value_without_waiting_when_ready_at_once():
    clock = Clock()
    got = wait_for(lambda: "on", timeout_s=10, interval_s=1, what="power", clock=clock,
                   sleep=clock.sleep)
    assert got == "on"
    assert clock.pauses == []


def test_polls_at_the_interval_until_ready():
    clock = Clock()
    got = wait_for(reads("PoweringOn", "PoweringOn", "On"), ready=lambda s: s == "On",
                   timeout_s=10, interval_s=0.5, what="power", clock=clock, sleep=clock.sleep)
    assert got == "On"
    assert clock.pauses == [0.5, 0.5]


def test_none_is_not_ready_by_default_but_a_falsy_value_is():
    clock = Clock()
    assert wait_for(reads(None, None, ""), timeout_s=10, interval_s=1, what="x",
                    clock=clock, sleep=clock.sleep) == ""
    assert len(clock.pauses) == 2


def test_timeout_names_what_and_the_last_state_and_reads_once_more_at_the_deadline():
    clock = Clock()
    calls = []

    def check():
        calls.append(clock.now)
        return "PoweringOn"

    with pytest.raises(WaitTimeout) as info:
        wait_for(check, ready=lambda s: s == "On", timeout_s=2, interval_s=0.75,
                 what="BMC 10.0.0.5: power state", clock=clock, sleep=clock.sleep)
    err = info.value
    assert isinstance(err, MetalctlError)
    assert str(err) == ("BMC 10.0.0.5: power state: not ready after 2 s "
                        "(last seen: 'PoweringOn')")
    assert (err.what, err.timeout_s, err.last, err.error) == (
        "BMC 10.0.0.5: power state", 2, "PoweringOn", None)
    # 0.75 + 0.75 + 0.5: the last pause is cut to end at the deadline, read there once more
    assert clock.pauses == [0.75, 0.75, 0.5]
    assert calls[-1] == 1002.0


def test_zero_timeout_reads_once():
    clock = Clock()
    with pytest.raises(WaitTimeout):
        wait_for(lambda: None, timeout_s=0, interval_s=1, what="x", clock=clock,
                 sleep=clock.sleep)
    assert clock.pauses == []


def test_transient_errors_are_not_yet_and_the_last_one_is_kept():
    clock = Clock()
    attempts = []

    def check():
        attempts.append(1)
        if len(attempts) < 3:
            raise BmcTimeout(address="10.0.0.5", reason="busy while the host POSTs")
        return {"ProcTurboMode": "Enabled"}

    got = wait_for(check, timeout_s=10, interval_s=1, what="BIOS", transient=(BmcTimeout,),
                   clock=clock, sleep=clock.sleep)
    assert got == {"ProcTurboMode": "Enabled"}

    def never():
        raise BmcTimeout(address="10.0.0.5", reason="busy")

    with pytest.raises(WaitTimeout) as info:
        wait_for(never, timeout_s=3, interval_s=1, what="BIOS", transient=(BmcTimeout,),
                 clock=clock, sleep=clock.sleep)
    assert info.value.last is None
    assert isinstance(info.value.error, BmcTimeout)
    assert "nothing read; last error: BMC 10.0.0.5: busy" in str(info.value)


def test_a_value_read_before_a_transient_error_stays_the_last_seen():
    clock = Clock()
    values = iter(["off", "off"])

    def check():
        try:
            return next(values)
        except StopIteration:
            raise BmcTimeout(address="a", reason="gone") from None

    with pytest.raises(WaitTimeout) as info:
        wait_for(check, ready=lambda s: s == "on", timeout_s=5, interval_s=1, what="x",
                 transient=(BmcTimeout,), clock=clock, sleep=clock.sleep)
    assert info.value.last == "off"
    assert "last seen: 'off'; last error: BMC a: gone" in str(info.value)


def test_other_errors_end_the_wait_at_once():
    clock = Clock()

    def check():
        raise MetalctlError("clean failed")

    with pytest.raises(MetalctlError, match="clean failed"):
        wait_for(check, timeout_s=10, interval_s=1, what="x", transient=(BmcTimeout,),
                 clock=clock, sleep=clock.sleep)
    assert clock.pauses == []


def test_sleep_first_pauses_before_the_first_read():
    clock = Clock()
    seen = []
    wait_for(lambda: seen.append(clock.now) or clock.now, timeout_s=10, interval_s=2,
             what="x", sleep_first=True, clock=clock, sleep=clock.sleep)
    assert seen == [1002.0]


def test_on_tick_sees_every_value_read():
    clock = Clock()
    ticks = []
    wait_for(reads(1, 2, 3), ready=lambda v: v == 3, timeout_s=10, interval_s=1, what="x",
             clock=clock, sleep=clock.sleep, on_tick=ticks.append)
    assert ticks == [1, 2, 3]


def test_a_long_last_value_is_cut_and_the_message_stays_one_line():
    clock = Clock()
    with pytest.raises(WaitTimeout) as info:
        wait_for(lambda: "x\n" * 500, ready=lambda _: False, timeout_s=0, interval_s=1,
                 what="node r01\nevil", clock=clock, sleep=clock.sleep)
    text = str(info.value)
    assert "\n" not in text
    assert len(text) < 300
