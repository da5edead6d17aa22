"""Bounded concurrent work over many peers, with per-item results.

Work is submitted through a sliding window of ``concurrency`` items, so the
memory held stays proportional to the window, not to the number of items (a
/16 range is 65,536 addresses). One failing item never stops the others: each
item ends as a value or as the exception it raised.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
    for each, e.g. to advance a progress bar. KeyboardInterrupt (or any exception in
    the caller) cancels what has not started and propagates at once, without waiting
    for items still talking to a slow peer: the caller decides how to end the process
    (the CLI exits 130 at once; every stage's writes are transactional and re-runs
    converge).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="metalctl")
    pending: dict[Future[R], T] = {}

    def refill() -> None:
        for item in itertools.islice(source, concurrency - len(pending)):
            pending[pool.submit(work, item)] = item

    try:
        refill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                exc = fut.exception()
                outcome: TaskOutcome[T, R] = (
                    TaskOutcome(item, error=exc) if exc
                    else TaskOutcome(item, value=fut.result()))
                if on_done:
                    on_done(outcome)
                yield outcome
            refill()
    except BaseException:
        # do not wait for workers blocked on peers (a BMC trickling bytes, a dead
        # Ironic): a single Ctrl-C must end the run within seconds
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
