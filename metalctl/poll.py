"""Waiting is one call: read something until it is ready, within a deadline.

Every wait in the stages (a BMC's power state settling, Ironic's provision states, BIOS
values after a reset, an install's end, the installed host answering SSH) is the same
loop: read, decide, sleep, and give up at a deadline naming what was waited for and
what was seen last. :func:`wait_for` is that loop, once; the clock and the sleep are
parameters, so a test drives it with a fake clock and never sleeps.

Why not tenacity: it is not a dependency today, and its model is retrying a call that
fails; here the read succeeds and says "not yet", the timeout has to carry the last
value seen, and provision waits on the boot service's wall clock, which tenacity's
monotonic ``stop_after_delay`` cannot take without patching.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from metalctl.errors import WaitTimeout, describe

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: how much of the last value a timeout's message shows (a whole node list is not a reason)
MAX_SHOWN_CHARS = 200


def _not_none(value: object) -> bool:
    return value is not None


def _shown(last: Any, seen: bool, error: BaseException | None) -> str:
    parts = [f"last seen: {last!r}"[:MAX_SHOWN_CHARS]] if seen else ["nothing read"]
    if error is not None:
        parts.append(f"last error: {describe(error)}"[:MAX_SHOWN_CHARS])
    return "; ".join(parts)


def wait_for(check: Callable[[], T], *, timeout_s: float, interval_s: float, what: str,
             ready: Callable[[T], bool] = _not_none,
             transient: tuple[type[BaseException], ...] = (),
             sleep_first: bool = False,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep,
             on_tick: Callable[[T], None] | None = None) -> T:
    """Call ``check`` every ``interval_s`` until ``ready(value)``; return that value.

    ``check`` is called at least once, and once more at the deadline (the last sleep is
    shortened to end there), so "not ready after ``timeout_s``" is what was seen then.

    Args:
        check: reads the state; anything it raises that is not ``transient`` ends the
            wait at once (a failure state is the caller's to raise from here).
        timeout_s: how long to wait, on ``clock``; 0 or less means one read.
        interval_s: pause between reads.
        what: names what is waited for, for the timeout's message (``"node r01: Ironic
            provision state"``).
        ready: whether a value is the one waited for; by default any value but None.
        transient: errors of ``check`` that mean "not yet" (a BMC busy while its host
            POSTs, sshd not up): logged at debug, the last one kept for the timeout.
        sleep_first: pause once before the first read (a state just asked to change
            can still read as the old one).
        clock: seconds, monotonic by default; provision passes its wall clock, the one
            the boot service's deadlines are on.
        sleep: how to pause (a test passes one that advances its clock).
        on_tick: called with each value read, ready or not (progress).

    Raises:
        WaitTimeout: not ready at the deadline; ``last`` and ``error`` carry what was
            read last.
    """
    deadline = clock() + timeout_s
    last: Any = None
    seen = False
    error: BaseException | None = None
    if sleep_first:
        sleep(max(0.0, min(interval_s, timeout_s)))
    while True:
        try:
            value = check()
        except transient as exc:
            LOG.debug("%s: not yet: %s", what, describe(exc))
            error = exc
        else:
            last, seen = value, True
            if on_tick is not None:
                on_tick(value)
            if ready(value):
                return value
        left = deadline - clock()
        if left <= 0:
            raise WaitTimeout(what, timeout_s, last, error, shown=_shown(last, seen, error))
        sleep(min(interval_s, left))
