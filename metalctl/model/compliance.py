"""Outcome vocabularies of the SSH-side stages, one enum each (values are the strings
that reports, JSON and the store have always carried)."""

from __future__ import annotations

import enum


class ValueEnum(str, enum.Enum):
    """A str enum that prints as its value everywhere (``str``, f-strings, ``%s``), so
    reports and tables never show ``HardenStatus.HARDENED``."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class HardenStatus(ValueEnum):
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


class AuditStatus(ValueEnum):
    """One audit result (host x rule), as JUnit, SARIF, HTML and JSON report it."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    ERROR = "error"                  # the check could not run (host dropped, bad output)
    NOTAPPLICABLE = "notapplicable"  # the rule's platform or condition does not hold
    NOTCHECKED = "notchecked"        # nothing to compare with (no credentials, no PKI)
    WAIVED = "waived"                # a failure an active waiver accepts


class CheckStatus(ValueEnum):
    """What the rules engine found for one rule on one host."""

    COMPLIANT = "compliant"
    CHANGE = "change"              # harden will (or did) change something
    DEFERRED = "deferred"          # needs a reboot into the right kernel state first
    NOTAPPLICABLE = "notapplicable"
    NOTCHECKED = "notchecked"      # the site gave nothing to check against
    REPORT = "report"              # informational (pending updates)
    MANUAL = "manual"              # not compliant, no automatic fix (audit: fail)
    ERROR = "error"

    @property
    def audit(self) -> AuditStatus:
        """How an audit reports this outcome: whatever is not compliant fails (a change, a
        manual fix, one deferred to a reboot). ``report`` is informational: its detail
        decides (``metalctl.audit.run``), so it maps to ``error`` here."""
        return _AUDIT_OF.get(self, AuditStatus.ERROR)


_AUDIT_OF = {CheckStatus.COMPLIANT: AuditStatus.PASS, CheckStatus.CHANGE: AuditStatus.FAIL,
             CheckStatus.MANUAL: AuditStatus.FAIL, CheckStatus.DEFERRED: AuditStatus.FAIL,
             CheckStatus.NOTAPPLICABLE: AuditStatus.NOTAPPLICABLE,
             CheckStatus.NOTCHECKED: AuditStatus.NOTCHECKED, CheckStatus.ERROR: AuditStatus.ERROR}
