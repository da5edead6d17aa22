"""Waivers: a rule (optionally for some hosts or a profile) accepted, with a reason and
an expiry date. A waived result is reported as ``waived`` (never as pass) and keeps
its original status; an expired waiver no longer applies and is reported."""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metalctl.audit.model import FAIL, WAIVED, Report
from metalctl.errors import InputError


@dataclass(frozen=True)
class Waiver:
    rule: str
    reason: str
    expires: dt.date
    hosts: str = "*"  # glob over host names
    profile: str | None = None  # only hosts whose stored plan uses this profile
    by: str | None = None

    def active(self, today: dt.date) -> bool:
        return today <= self.expires


def load(path: Path, known_rules: set[str]) -> list[Waiver]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(str(path), "-", f"cannot read waivers: {exc}") from None
    out = []
    for i, w in enumerate(data.get("waivers") or []):
        where = f"waivers[{i}]"
        if not isinstance(w, dict):
            raise InputError(str(path), where, "a waiver is a mapping")
        for key in ("rule", "reason", "expires"):
            if not w.get(key):
                raise InputError(str(path), f"{where}.{key}", "required")
        if w["rule"] not in known_rules:
            raise InputError(str(path), f"{where}.rule", f"unknown rule {w['rule']!r}")
        expires = w["expires"]
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                raise InputError(str(path), f"{where}.expires",
                                 "not a date (YYYY-MM-DD)") from None
        if len(str(w["reason"]).strip()) < 10:
            raise InputError(str(path), f"{where}.reason", "give a real justification")
        out.append(Waiver(rule=w["rule"], reason=str(w["reason"]).strip(), expires=expires,
                          hosts=str(w.get("hosts", "*")), profile=w.get("profile"),
                          by=w.get("by")))
    return out


def apply(report: Report, waivers: list[Waiver], profiles: dict[str, str] | None = None,
          today: dt.date | None = None) -> list[dict[str, Any]]:
    """Mark matching failures waived; returns the expired waivers that matched something."""
    today = today or dt.date.today()
    profiles = profiles or {}
    expired: list[dict[str, Any]] = []
    for r in report.results():
        for w in waivers:
            if w.rule != r.rule or not fnmatch.fnmatch(r.host, w.hosts):
                continue
            if w.profile and profiles.get(r.host) != w.profile:
                continue
            if not w.active(today):
                expired.append({"rule": w.rule, "host": r.host, "expired": w.expires.isoformat(),
                                "reason": w.reason})
                continue
            if r.status == FAIL:
                r.original_status, r.status = r.status, WAIVED
                r.waiver = {"reason": w.reason, "expires": w.expires.isoformat(), "by": w.by,
                            "profile": w.profile}
            break
    return expired
