"""Hardening rules as data (``hardening/rules/*.yaml``): loading and validation.

One source of truth for ``metalctl harden`` (remediate) and ``metalctl audit``
(check): every rule has an id, title, rationale, severity, references, platforms,
an optional ``when`` (host facts it needs), a ``check`` whose kind is implemented in
:mod:`metalctl.harden.kinds` (the same spec says what compliant means and how to get
there), and the handlers it ``notify``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from metalctl.data.paths import data_dir
from metalctl.errors import InputError

KINDS = ("shell_kv", "libvirt_kv", "libvirt_kv_set", "ini_set", "ini_all", "file", "files",
         "units", "command", "selinux_runtime", "dnf_allowlist", "apt_allowlist", "report",
         "service", "listening", "sshd", "sysctl", "cmdline", "probe_lines", "present",
         "process_labels", "certificate", "bmc")
SEVERITIES = ("high", "medium", "low", "info")
PLATFORMS = ("rhel", "debian", "bmc")

RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "title", "rationale", "severity", "platforms", "check"],
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
        "title": {"type": "string", "minLength": 5},
        "rationale": {"type": "string", "minLength": 5},
        "severity": {"enum": list(SEVERITIES)},
        "references": {"type": "object", "additionalProperties": False,
                       "properties": {k: {"type": "array", "items": {"type": "string"}}
                                      for k in ("stig", "cis", "ossg", "scap")}},
        "platforms": {"type": "array", "minItems": 1, "items": {"enum": list(PLATFORMS)}},
        "when": {"type": "object", "additionalProperties": False,
                 "properties": {"lsm": {"enum": ["selinux", "apparmor"]},
                                "init": {"enum": ["systemd", "sysv"]},
                                "pkg": {"enum": ["dnf", "apt"]},
                                "path_exists": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "conflicts": {"type": "string"},
        "remediation": {"type": "string"},
        "notify": {"type": "array", "items": {"enum": ["libvirtd", "selinux-runtime"]}},
        "check": {"type": "object", "required": ["kind"],
                  "properties": {"kind": {"enum": list(KINDS)}}},
    },
}


@dataclass(frozen=True)
class Rule:
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
    """Every rule of the shipped ``hardening/rules`` plus ``dirs`` (ids must be unique)."""
    validator = jsonschema.Draft202012Validator(RULE_SCHEMA)
    rules: dict[str, Rule] = {}
    for d in [data_dir("hardening") / "rules", *(dirs or [])]:
        for path in sorted(Path(d).glob("*.yaml")):
            try:
                items = yaml.safe_load(path.read_text()) or []
            except yaml.YAMLError as exc:
                raise InputError(str(path), "-", f"not valid YAML: {exc}") from None
            if not isinstance(items, list):
                raise InputError(str(path), "-", "a rules file is a list of rules")
            for i, item in enumerate(items):
                errors = sorted(validator.iter_errors(item), key=lambda e: -len(e.absolute_path))
                if errors:
                    where = ".".join(str(p) for p in errors[0].absolute_path)
                    rid = item.get("id", f"[{i}]") if isinstance(item, dict) else f"[{i}]"
                    raise InputError(str(path), f"{rid}.{where}".rstrip("."), errors[0].message)
                if item["id"] in rules:
                    raise InputError(str(path), item["id"],
                                     f"duplicate rule id (also in {rules[item['id']].source})")
                rules[item["id"]] = Rule(
                    id=item["id"], title=item["title"], rationale=item["rationale"],
                    severity=item["severity"], platforms=tuple(item["platforms"]),
                    check=item["check"], references=item.get("references") or {},
                    when=item.get("when") or {}, tags=tuple(item.get("tags") or ()),
                    notify=tuple(item.get("notify") or ()), conflicts=item.get("conflicts"),
                    remediation=item.get("remediation"),
                    source=str(path))
    return list(rules.values())


def select(rules: list[Rule], ids: list[str] | None = None, tags: list[str] | None = None,
           severities: list[str] | None = None) -> list[Rule]:
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
