"""Test tiers (README.md "Tests").

* ``pytest`` with no arguments: the fast tier, ``tests/unit`` without the tests that need
  the peers' or Nova's venvs (marker ``venvs``). It starts no lab, no QEMU, installs
  nothing; a contributor runs it while working (about a minute on 2 cores).
* ``pytest tests`` (the README's test command, CI): every tier. Integration modules carry
  markers for what they start (``lab``, ``hosts``, ``nova``, ``install``, ``bench``, ...:
  ``tests/integration/conftest.py``), so ``pytest tests -m "not install"`` leaves out
  the QEMU installs, for example.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.file_or_dir or config.option.markexpr or config.option.keyword:
        return  # the caller chose
    deselected = [item for item in items if item.get_closest_marker("venvs")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("venvs")]
