"""Waivers: a rule (optionally for some hosts or a profile) accepted, with a reason and
an expiry date. A waived result is reported as ``waived`` (never as pass) and keeps
its original status; an expired waiver no longer applies and is reported."""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalctl import data as datafiles
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
    """Read a waivers file (schema ``waivers``) through :func:`metalctl.data.load`.

    Raises:
        InputError: naming the file, the field and the line (an unknown rule, an
            expiry that is not a real date, a reason too short to justify anything).
    """
    data, lines = datafiles.load_with_lines(path, "waivers")
    label = str(path)
    out = []
    for i, w in enumerate(data["waivers"]):
        where = ("waivers", i)

        def fail(key: str, reason: str, where: tuple = where) -> InputError:
            return InputError(label, f"waivers[{where[1]}].{key}", reason,
                              lines.get((*where, key)))

        if w["rule"] not in known_rules:
            raise fail("rule", f"unknown rule {w['rule']!r}")
        try:
            expires = dt.date.fromisoformat(w["expires"])
        except ValueError:
            raise fail("expires", "not a date (YYYY-MM-DD)") from None
        if len(w["reason"].strip()) < 10:
            raise fail("reason", "give a real justification")
        out.append(Waiver(rule=w["rule"], reason=w["reason"].strip(), expires=expires,
                          hosts=w.get("hosts", "*"), profile=w.get("profile"),
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
