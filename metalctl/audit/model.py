"""Audit results: one per host x rule, with evidence and remediation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from metalctl.model.compliance import AuditStatus

PASS, FAIL, ERROR = AuditStatus.PASS, AuditStatus.FAIL, AuditStatus.ERROR
NOTAPPLICABLE, NOTCHECKED, WAIVED = (AuditStatus.NOTAPPLICABLE, AuditStatus.NOTCHECKED,
                                     AuditStatus.WAIVED)
#: report order: what needs attention first
STATUSES = (FAIL, ERROR, WAIVED, NOTCHECKED, NOTAPPLICABLE, PASS)
SEVERITY_RANK = {"high": 3, "medium": 2, "low": 1, "info": 0}
SCHEMA = "metalctl-audit/1"


@dataclass
class Evidence:
    source: str | None = None  # file, command or "sshd -T" the value was read from
    expected: str | None = None
    actual: str | None = None
    detail: str | None = None


@dataclass
class Result:
    host: str
    rule: str
    title: str
    severity: str
    status: AuditStatus
    evidence: Evidence = field(default_factory=Evidence)
    remediation: str | None = None
    references: dict[str, list[str]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    waiver: dict[str, Any] | None = None  # reason, expires, by (when waived)
    original_status: AuditStatus | None = None  # what a waived result would have been

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HostAudit:
    host: str
    kind: str = "host"  # host | bmc
    error: str | None = None
    results: list[Result] = field(default_factory=list)
    duration_s: float = 0.0
    ssh_sessions: int = 0

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            out[r.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "kind": self.kind, "error": self.error,
                "duration_s": self.duration_s, "ssh_sessions": self.ssh_sessions,
                "counts": self.counts(), "results": [r.to_dict() for r in self.results]}


@dataclass
class Report:
    scan_id: str
    started_at: str
    duration_s: float
    hosts: list[HostAudit]
    rules: dict[str, dict[str, Any]]  # id -> title, severity, references, remediation
    fleet: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[str, Any] | None = None  # --since comparison
    #: waivers that would have matched but are past their expiry (not applied)
    expired_waivers: list[dict[str, Any]] = field(default_factory=list)

    def results(self) -> list[Result]:
        return [r for h in self.hosts for r in h.results]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "scan_id": self.scan_id, "started_at": self.started_at,
                "duration_s": self.duration_s, "hosts": [h.to_dict() for h in self.hosts],
                "fleet": self.fleet, "changes": self.changes}
