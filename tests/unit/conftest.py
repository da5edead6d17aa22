"""Unit tests see a process in the state a fresh one is in.

The whole suite runs in one process, integration tests first: a CLI test calling
``main()`` configures logging (peer libraries' loggers raised to CRITICAL), and a stage
registers its secrets for redaction (the lab's Placement token is ``admin``). Unit tests
that check logging or redaction must not inherit either.
"""

from __future__ import annotations

import logging

import pytest

from metalctl import logredact


@pytest.fixture(autouse=True)
def _fresh_process_state():
    with logredact._values_lock:
        saved = set(logredact._values)
        logredact._values.clear()
    loggers = {name: lg for name, lg in logging.root.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}
    levels = {name: lg.level for name, lg in loggers.items()}
    for lg in loggers.values():
        lg.setLevel(logging.NOTSET)
    yield
    for name, level in levels.items():
        loggers[name].setLevel(level)
    with logredact._values_lock:
        logredact._values.update(saved)
