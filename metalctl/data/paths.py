"""Where the shipped data lives: the repository's top-level folders in a checkout,
``metalctl/_data/<name>`` in an installed wheel (see pyproject's force-include)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # the metalctl package


def data_dir(name: str) -> Path:
    """``profiles``, ``kickstart``, ``hardening`` or ``inventory``."""
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    return _PACKAGE / "_data" / name
