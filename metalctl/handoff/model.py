"""What the hand-off stage takes (options) and gives back (one result per host)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl.model.compliance import ValueEnum
from metalctl.model.result import HostResultMixin
from metalctl.pki import SitePKI


class HandoffStatus(ValueEnum):
    """What ``handoff`` made of one host."""

    HANDED_OFF = "handed-off"      # configured (or already), registered, inventories verified
    WOULD_CHANGE = "would-change"  # check mode: nova.conf would change
    UNCHANGED = "unchanged"        # check mode: nova.conf is already what the plan says
    REFUSED = "refused"            # the audit gate said no; nothing was touched
    FAILED = "failed"              # registration or verification failed (see error/log_line)
    UNREACHABLE = "unreachable"    # no SSH session
    DISABLED = "disabled"          # --disable: out of scheduling

    @property
    def ok(self) -> bool:
        return self in (HandoffStatus.HANDED_OFF, HandoffStatus.WOULD_CHANGE,
                        HandoffStatus.UNCHANGED, HandoffStatus.DISABLED)


@dataclass
class HandoffOptions:
    """How to hand off.

    Attributes:
        check: only render, validate and diff; change nothing.
        gate_severity: lowest unwaived audit failure severity that refuses a host.
        audit_max_age_s: the oldest audit the gate accepts.
        pki: the site PKI (TLS live migration needs each host's certificates).
        plans: host name -> profile plan, instead of the store's (library use).
        key_file, known_hosts, sudo, connect_timeout_s: the SSH policy, as for harden.
        concurrency: hosts worked on at once.
        conf_path: where nova.conf goes on the host.
        log_path: nova-compute's log on the host (its lines explain failures).
        canary: boot the canary guest before a host is declared handed off (a failing
            canary leaves the host disabled); False skips it and the result says so.
    """

    check: bool = False
    gate_severity: str = "high"
    audit_max_age_s: float = 24 * 3600
    pki: SitePKI | None = None
    plans: dict[str, dict[str, Any]] | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    sudo: bool = False
    connect_timeout_s: float = 10.0
    concurrency: int = 16
    conf_path: str = "/etc/nova/nova.conf"
    log_path: str = "/var/log/nova/nova-compute.log"
    canary: bool = True


@dataclass
class Mismatch:
    """One inventory value Placement reports differently from the plan."""

    inventory: str  # e.g. PCPU
    field: str      # total, reserved, allocation_ratio
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.inventory} {self.field}: expected {self.expected}, Placement has " \
               f"{self.actual}"


@dataclass
class HandoffResult(HostResultMixin):
    """What the hand-off did to one host, with the evidence it was judged on."""

    host: str
    status: HandoffStatus
    changed: list[str] = field(default_factory=list)
    diff: str = ""
    notes: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = None
    log_line: str | None = None  # nova-compute's own words on a failure
    duration_s: float = 0.0

    key: str = ""  # the node's key (the stage contract; ``evidence`` is the field above)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain data (JSON/YAML output, the store's event)."""
        return {"host": self.host, "status": self.status.value, "changed": self.changed,
                "notes": self.notes, "error": self.error, "log_line": self.log_line,
                "mismatches": [m.__dict__ for m in self.mismatches],
                "evidence": self.evidence, "duration_s": self.duration_s, "diff": self.diff}
