"""Bounded concurrent work over many peers, with per-item results.

Work is submitted through a sliding window of ``concurrency`` items, so the
memory held stays proportional to the window, not to the number of items (a
/16 range is 65,536 addresses). One failing item never stops the others: each
item ends as a value or as the exception it raised.

Workers are daemon threads, not a ``ThreadPoolExecutor``: the executor's
workers are joined at interpreter exit, so after Ctrl-C the process lived on
until every peer call in flight had timed out (a silent BMC: minutes). A
daemon worker still blocked on a peer when the run is interrupted is simply
abandoned; everything metalctl keeps (the store) is written by the calling
thread, in transactions, so nothing half-written is left behind.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

LOG = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class TaskOutcome(Generic[T, R]):
    """The result of one item: ``value`` or ``error``, never both."""

    item: T
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run(
    items: Iterable[T],
    work: Callable[[T], R],
    *,
    concurrency: int,
    on_done: Callable[[TaskOutcome[T, R]], None] | None = None,
) -> Iterator[TaskOutcome[T, R]]:
    """Run ``work`` on every item with at most ``concurrency`` in flight.

    Yields outcomes as they complete (not in input order). ``on_done`` is called
    for each in the calling thread, e.g. to advance a progress bar or write the
    store. KeyboardInterrupt (or any exception raised by the consumer) starts
    nothing more, abandons the items in flight and propagates at once.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    source = iter(items)
    done: queue.SimpleQueue[TaskOutcome[T, R]] = queue.SimpleQueue()
    in_flight = 0

    def worker(item: T) -> None:
        try:
            outcome: TaskOutcome[T, R] = TaskOutcome(item, value=work(item))
        except BaseException as exc:  # noqa: BLE001 - reported as this item's outcome
            outcome = TaskOutcome(item, error=exc)
        done.put(outcome)

    def refill() -> None:
        nonlocal in_flight
        for item in itertools.islice(source, concurrency - in_flight):
            threading.Thread(target=worker, args=(item,), name="metalctl-worker",
                             daemon=True).start()
            in_flight += 1

    refill()
    while in_flight:
        # a blocking get is interrupted by SIGINT in the main thread (POSIX)
        outcome = done.get()
        in_flight -= 1
        if on_done:
            on_done(outcome)
        yield outcome
        refill()
