"""Performance profiles: YAML intent files with ``extends:``, validated by a schema.

A profile is looked up by name in the directories given (a site's own first) and
then in the shipped ``profiles/``. Each file is validated on its own before the
merge, so an error names the file that holds the bad key; the merged result is
validated again (a child may complete what a parent left out).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from metalctl.data.merge import deep_merge
from metalctl.data.paths import data_dir
from metalctl.errors import ProfileError

MAX_DEPTH = 8
#: keys of which a profile gives one; a child's choice replaces its parent's
EXCLUSIVE = {"hugepages": ("percent_per_numa", "gib_per_numa")}


@dataclass(frozen=True)
class Profile:
    """A resolved profile: ``data`` is the merged intent, ``chain`` the files used."""

    name: str
    data: dict[str, Any]
    chain: tuple[Path, ...] = ()
    description: str = ""

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


@dataclass
class ProfileLibrary:
    """Profiles found in ``dirs`` (searched in order) plus the shipped ones."""

    dirs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        shipped = data_dir("profiles")
        if shipped not in self.dirs:
            self.dirs = [*self.dirs, shipped]

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for d in self.dirs:
            for p in sorted(d.glob("*.yaml")):
                if p.stem != "schema":
                    seen.setdefault(p.stem, None)
        return list(seen)

    def path(self, name: str) -> Path:
        for d in self.dirs:
            p = d / f"{name}.yaml"
            if p.is_file():
                return p
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(self.names())}"
        raise ProfileError(path=name, field="profile", reason="no such profile" + hint)

    def load(self, name_or_path: str) -> Profile:
        """Resolve a profile by name (or a path to a .yaml file) with its extends chain."""
        if name_or_path.endswith((".yaml", ".yml")) and Path(name_or_path).is_file():
            first = Path(name_or_path)
        else:
            first = self.path(name_or_path)
        chain: list[Path] = []
        layers: list[dict[str, Any]] = []
        current: Path | None = first
        while current is not None:
            if current in chain:
                names = " -> ".join(p.stem for p in [*chain, current])
                raise ProfileError(path=str(current), field="extends",
                                   reason=f"extends loop: {names}")
            if len(chain) >= MAX_DEPTH:
                raise ProfileError(path=str(current), field="extends",
                                   reason=f"more than {MAX_DEPTH} levels of extends")
            data = read_file(current)
            chain.append(current)
            layers.append(data)
            parent = data.get("extends")
            current = self.path(parent) if parent else None
        merged: dict[str, Any] = {}
        for layer in reversed(layers):
            for section, keys in EXCLUSIVE.items():
                given = set(keys) & set(layer.get(section) or {})
                if given and isinstance(merged.get(section), dict):
                    for key in set(keys) - given:
                        merged[section].pop(key, None)
            merged = deep_merge(merged, layer)
        merged.pop("extends", None)
        validate(merged, str(first))
        return Profile(name=first.stem, data=merged, chain=tuple(chain),
                       description=str(merged.get("description", "")).strip())


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    with (data_dir("profiles") / "schema.yaml").open() as f:
        return yaml.safe_load(f)


def read_file(path: Path) -> dict[str, Any]:
    """Load and validate one profile file on its own."""
    try:
        with path.open() as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ProfileError(path=str(path), field="-", reason=exc.strerror or str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "-"
        raise ProfileError(path=str(path), field=where,
                           reason=f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(path=str(path), field="-", reason="a profile is a mapping of keys")
    validate(data, str(path))
    return data


def validate(data: dict[str, Any], path: str) -> None:
    """Raise ProfileError for the first (most specific) schema violation."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (-len(e.absolute_path), e.path))
    if not errors:
        return
    err = errors[0]
    where = ".".join(str(p) for p in err.absolute_path) or "-"
    if err.validator == "additionalProperties":
        known = sorted((err.schema.get("properties") or {}).keys())
        extra = sorted(set(err.instance) - set(known))
        key = extra[0]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
        field_name = f"{where}.{key}" if where != "-" else key
        raise ProfileError(path=path, field=field_name, reason="unknown key" + hint)
    if err.validator == "oneOf" and where.endswith("hugepages"):
        raise ProfileError(path=path, field=where,
                           reason="give exactly one of percent_per_numa or gib_per_numa")
    raise ProfileError(path=path, field=where, reason=_short(err))


def _short(err: jsonschema.ValidationError) -> str:
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
    if err.validator == "type":
        return f"{err.instance!r} is not of type {err.validator_value}"
    return err.message
