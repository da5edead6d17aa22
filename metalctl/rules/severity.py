"""Rule severities and the gate on them, in one place: the audit's ``--fail-on``, a run's
audit gate and the hand-off's gate all ask :func:`blocks`."""

from __future__ import annotations

SEVERITIES = ("high", "medium", "low", "info")
#: higher is worse
SEVERITY_RANK = {"high": 3, "medium": 2, "low": 1, "info": 0}
#: a gate: a failure at or above it blocks; ``none``: no failure blocks
GATES = ("none", *reversed(SEVERITIES))


def blocks(severity: str | None, gate: str) -> bool:
    """Whether a failed rule of ``severity`` is at or above ``gate``."""
    if gate == "none":
        return False
    return SEVERITY_RANK.get(severity or "", 0) >= SEVERITY_RANK[gate]
