"""Outcome vocabularies of the SSH-side stages, one enum each (values are the strings
that reports, JSON and the store have always carried)."""

from __future__ import annotations

import enum


class HardenStatus(str, enum.Enum):
    """What ``harden`` made of one host."""

    COMPLIANT = "compliant"        # nothing to change
    WOULD_CHANGE = "would-change"  # check mode: changes are pending
    HARDENED = "hardened"          # changes applied and verified converged
    FAILED = "failed"              # an apply step failed, or did not converge
    DROPPED = "dropped"            # the SSH session was lost mid-run; re-run converges
    UNREACHABLE = "unreachable"    # no SSH session could be opened

    @property
    def ok(self) -> bool:
        return self in (HardenStatus.COMPLIANT, HardenStatus.WOULD_CHANGE,
                        HardenStatus.HARDENED)
