"""The audit gate: no host is handed to Nova unless its latest audit is recent and has no
unwaived failure at or above the gate severity.

Reads the audit history the audit stage keeps in the store (``audit_scans`` and
``audit_results``; waived results are stored as ``waived``, never as ``fail``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from metalctl.model.compliance import AuditStatus
from metalctl.rules.severity import blocks
from metalctl.store import Store

FAIL = AuditStatus.FAIL.value  # as the audit history stores a status


@dataclass
class Verdict:
    """Whether a host may be handed off, and why not."""

    host: str
    passed: bool
    reason: str = ""
    scan_id: str | None = None
    age_s: float | None = None
    failing: list[str] = field(default_factory=list)  # rule ids at or above the floor

    def to_dict(self) -> dict[str, object]:
        """Return the verdict as plain data (the hand-off event's evidence)."""
        return {"passed": self.passed, "reason": self.reason, "scan_id": self.scan_id,
                "age_s": self.age_s, "failing": self.failing}


def _age_s(at: str, now: datetime) -> float:
    when = datetime.fromisoformat(at)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (now - when).total_seconds()


def check(store: Store | None, host: str, severity: str = "high", max_age_s: float = 86400,
          now: datetime | None = None) -> Verdict:
    """Judge ``host`` on its latest audit in ``store``.

    Args:
        store: the store with the audit history (None: nothing to judge on, refused).
        host: the host name the audit used.
        severity: the lowest severity that blocks (``info``..``high``; ``none``: no
            failure blocks, but the audit must still be recent and complete).
        max_age_s: the oldest audit accepted, in seconds.
        now: the current time (tests).
    """
    now = now or datetime.now(timezone.utc)
    if store is None:
        return Verdict(host, False, "no store: the audit history is needed to hand off")
    for scan in reversed(store.audit_scans()):
        results = store.audit_host_results(scan["scan_id"], host)
        errored = host in (scan["summary"].get("errors") or [])
        if not results and not errored:
            continue
        age = round(_age_s(scan["at"], now), 1)
        v = Verdict(host, False, scan_id=scan["scan_id"], age_s=age)
        if errored:
            v.reason = f"its latest audit ({scan['scan_id']}) could not scan it"
        elif age > max_age_s:
            v.reason = (f"its latest audit ({scan['scan_id']}, {scan['at']}) is older than "
                        f"{max_age_s:g} s; run `metalctl audit` again")
        else:
            # "none" (a rack's audit gate): a fresh audit is still required
            v.failing = [r["rule"] for r in results if r["status"] == FAIL
                         and blocks(r["severity"], severity)]
            if v.failing:
                v.reason = (f"unwaived audit failures at or above {severity}: "
                            + ", ".join(v.failing))
            else:
                v.passed = True
        return v
    return Verdict(host, False, "never audited; run `metalctl audit` first")
