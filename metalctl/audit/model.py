"""Audit results: one per host x rule, with evidence and remediation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from metalctl.model.compliance import AuditStatus
from metalctl.rules.catalogue import Rule
from metalctl.rules.severity import SEVERITY_RANK, blocks

__all__ = ["SEVERITY_RANK"]  # the audit's modules read the one table through here

PASS, FAIL, ERROR = AuditStatus.PASS, AuditStatus.FAIL, AuditStatus.ERROR
NOTAPPLICABLE, NOTCHECKED, WAIVED = (AuditStatus.NOTAPPLICABLE, AuditStatus.NOTCHECKED,
                                     AuditStatus.WAIVED)
#: report order: what needs attention first
STATUSES = (FAIL, ERROR, WAIVED, NOTCHECKED, NOTAPPLICABLE, PASS)
SCHEMA = "metalctl-audit/1"


@dataclass
class Evidence:
    """What a result was judged on: where the value came from, expected and actual."""
    source: str | None = None  # file, command or "sshd -T" the value was read from
    expected: str | None = None
    actual: str | None = None
    detail: str | None = None
    #: the file on the host an operator edits about this rule (``source`` may be a command)
    file: str | None = None
    #: the 1-based line of ``file`` that sets what the rule judges (None: unknown, or
    #: the setting is absent and the finding is about the whole file)
    line: int | None = None


@dataclass
class Result:
    """One rule's outcome on one host or BMC, with its evidence and remediation."""
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

    @classmethod
    def of(cls, rule: Rule, host: str, status: AuditStatus, evidence: Evidence,
           remediation: str | None) -> Result:
        """``rule``'s result on ``host``: the rule's id, title, severity, references and
        tags; ``remediation`` is kept only on a failure (nothing to do otherwise)."""
        return cls(host=host, rule=rule.id, title=rule.title, severity=rule.severity,
                   status=status, evidence=evidence,
                   remediation=remediation if status == FAIL else None,
                   references=rule.references, tags=list(rule.tags))

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a plain dict for JSON reports."""
        return asdict(self)


@dataclass
class HostAudit:
    """Every result of one host or BMC, or the error that stopped its scan.

    The stage contract (:class:`metalctl.model.result.StageResult`): ``key`` is the
    node's key (the host's name when it was given without a store), ``ok`` means scanned
    with no failure at or above ``gate`` (``none``: scanned is enough).
    """
    host: str
    kind: str = "host"  # host | bmc
    error: str | None = None
    results: list[Result] = field(default_factory=list)
    duration_s: float = 0.0
    ssh_sessions: int = 0
    key: str = ""
    gate: str = "none"
    scan_id: str | None = None
    report_file: str | None = None  # the HTML report a run wrote beside its own

    def __post_init__(self) -> None:
        self.key = self.key or self.host

    def gate_failures(self) -> list[str]:
        """The rules that failed at or above the gate."""
        return [r.rule for r in self.results if r.status == FAIL
                and blocks(r.severity, self.gate)]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.gate_failures()

    @property
    def reason(self) -> str | None:
        failing = self.gate_failures()
        return self.error or (f"audit gate {self.gate}: {', '.join(failing)} failed"
                              if failing else None)

    @property
    def evidence(self) -> dict[str, Any]:
        out = {"scan_id": self.scan_id, "counts": self.counts(), "gate": self.gate,
               "failing": self.gate_failures()}
        return {**out, "report": self.report_file} if self.report_file else out

    def counts(self) -> dict[str, int]:
        """Return the number of results per status (every status present, zero or more)."""
        out = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            out[r.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the host's audit, with its counts, as a plain dict."""
        return {"host": self.host, "kind": self.kind, "error": self.error,
                "duration_s": self.duration_s, "ssh_sessions": self.ssh_sessions,
                "counts": self.counts(), "results": [r.to_dict() for r in self.results]}


@dataclass
class Report:
    """One audit scan: every host's results, the rules, the fleet roll-up and changes."""
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
        """Return every result of every host, in host order."""
        return [r for h in self.hosts for r in h.results]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as the JSON document of schema ``SCHEMA``."""
        return {"schema": SCHEMA, "scan_id": self.scan_id, "started_at": self.started_at,
                "duration_s": self.duration_s, "hosts": [h.to_dict() for h in self.hosts],
                "fleet": self.fleet, "changes": self.changes}
