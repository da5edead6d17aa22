"""Hardening rules as data (``hardening/rules/*.yaml``): loading and validation.

One source of truth for ``metalctl harden`` (remediate) and ``metalctl audit``
(check): every rule has an id, title, rationale, severity, references, platforms,
an optional ``when`` (host facts it needs), a ``check`` whose kind is implemented in
:mod:`metalctl.rules.kinds` (the same spec says what compliant means and how to get
there), and the handlers it ``notify``s.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl.data import data_dir, load_with_lines, schema, validate
from metalctl.errors import InputError
from metalctl.rules.severity import SEVERITIES  # noqa: E402,F401 - re-exported for the CLI

PLATFORMS = ("rhel", "debian", "bmc")


@dataclass(frozen=True)
class Rule:
    """One rule: what it checks (``check``), where it applies, and how it is reported."""

    id: str
    title: str
    rationale: str
    severity: str
    platforms: tuple[str, ...]
    check: dict[str, Any]
    references: dict[str, list[str]] = field(default_factory=dict)
    when: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    conflicts: str | None = None
    remediation: str | None = None  # for rules harden does not fix automatically
    source: str = ""

    @property
    def kind(self) -> str:
        return str(self.check["kind"])


def load(dirs: list[Path] | None = None) -> list[Rule]:
    """Every rule of the shipped ``hardening/rules`` plus ``dirs`` (ids must be unique).

    Each file is read through the one data loader and each rule validated twice: its
    frame against ``metalctl/data/schemas/rule.yaml``, its ``check:`` body against its
    kind's own schema, so a misspelled key anywhere is an error naming file, rule, field
    and line, before anything runs.

    Raises:
        InputError: the first invalid rule (or a duplicate id).
    """
    rules: dict[str, Rule] = {}
    for d in [data_dir("hardening") / "rules", *(dirs or [])]:
        for path in sorted(Path(d).glob("*.yaml")):
            for rule in _load_file(path):
                if rule.id in rules:
                    raise InputError(str(path), rule.id,
                                     f"duplicate rule id (also in {rules[rule.id].source})")
                rules[rule.id] = rule
    return list(rules.values())


def _frame_schema() -> dict[str, Any]:
    from metalctl.rules import kinds  # the registry imports this module

    frame = copy.deepcopy(schema("rule"))
    frame["properties"]["check"]["properties"]["kind"] = {"enum": sorted(kinds.REGISTRY)}
    return frame


def _load_file(path: Path) -> list[Rule]:
    from metalctl.rules import kinds

    items, lines = load_with_lines(path)
    label = str(path)
    if not isinstance(items, list):
        raise InputError(label, "(top level)", "a rules file is a list of rules")
    frame = _frame_schema()
    out = []
    for i, item in enumerate(items):
        rid = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) \
            else f"[{i}]"
        try:
            validate(item, frame, label, lines, base=(i,))
            validate(item["check"], kinds.get(item["check"]["kind"]).schema(), label, lines,
                     base=(i, "check"))
        except InputError as exc:  # name the rule by its id, not its position
            raise InputError(label, exc.field.replace(f"[{i}]", rid, 1), exc.reason,
                             exc.line) from None
        out.append(Rule(
            id=item["id"], title=item["title"], rationale=item["rationale"],
            severity=item["severity"], platforms=tuple(item["platforms"]),
            check=item["check"], references=item.get("references") or {},
            when=item.get("when") or {}, tags=tuple(item.get("tags") or ()),
            notify=tuple(item.get("notify") or ()), conflicts=item.get("conflicts"),
            remediation=item.get("remediation"), source=label))
    return out


def benchmarks() -> dict[str, dict[str, str]]:
    """The benchmarks references cite (``hardening/benchmarks.yaml``): id -> title,
    version, platform."""
    import yaml

    return yaml.safe_load((data_dir("hardening") / "benchmarks.yaml").read_text())


def reference_labels(rule: Rule) -> list[str]:
    """Every benchmark reference of ``rule`` as one label naming benchmark, version and
    control (``DISA Red Hat Enterprise Linux 9 STIG V2R9 RHEL-09-255045``)."""
    known = benchmarks()
    return [f"{known[key]['title']} {known[key]['version']} {control}"
            for key, controls in rule.references.items() if key in known
            for control in controls]


def select(rules: list[Rule], ids: list[str] | None = None, tags: list[str] | None = None,
           severities: list[str] | None = None) -> list[Rule]:
    """The rules with these ids (all must exist), any of these tags, these severities."""
    out = rules
    if ids:
        unknown = set(ids) - {r.id for r in rules}
        if unknown:
            raise InputError("--rule", ",".join(sorted(unknown)), "no such rule id")
        out = [r for r in out if r.id in ids]
    if tags:
        out = [r for r in out if set(tags) & set(r.tags)]
    if severities:
        out = [r for r in out if r.severity in severities]
    return out
