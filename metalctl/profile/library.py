"""Performance profiles: YAML intent files with ``extends:``, validated by a schema.

A profile is looked up by name in the directories given (a site's own first) and
then in the shipped ``profiles/``. Each file is validated on its own before the
merge, so an error names the file that holds the bad key; the merged result is
validated again (a child may complete what a parent left out).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl import data as datafiles
from metalctl.data.merge import deep_merge
from metalctl.data.paths import data_dir
from metalctl.errors import InputError, ProfileError

MAX_DEPTH = 8
#: a profile name is a file stem in a profile directory, never a path
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: keys of which a profile gives one; a child's choice replaces its parent's
EXCLUSIVE = {"hugepages": ("percent_per_numa", "gib_per_numa", "mib_per_numa")}


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
                seen.setdefault(p.stem, None)
        return list(seen)

    def path(self, name: str) -> Path:
        """The file of profile ``name``, only ever inside the profile directories.

        Raises:
            ProfileError: unknown, or not a plain name (``../../x``, ``a/b``).
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProfileError(path=str(name), field="profile",
                               reason="not a profile name (letters, digits, '.', '-', '_'; "
                                      "no path separators)")
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
            try:
                current = self.path(parent) if parent else None
            except ProfileError as exc:
                raise ProfileError(path=str(chain[-1]), field="extends",
                                   reason=f"{parent!r}: {exc.reason}") from None
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


def schema() -> dict[str, Any]:
    """The profile JSON Schema (``metalctl/data/schemas/profile.yaml``)."""
    return datafiles.schema("profile")


def read_file(path: Path) -> dict[str, Any]:
    """Load and validate one profile file on its own (through :func:`metalctl.data.load`).

    Raises:
        ProfileError: naming the file, the field and the line.
    """
    try:
        data, lines = datafiles.load_with_lines(path)
    except InputError as exc:
        raise ProfileError(path=exc.path, field=exc.field, reason=exc.reason,
                           line=exc.line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(path=str(path), field="(top level)",
                           reason="a profile is a mapping of keys")
    validate(data, str(path), lines)
    return data


def validate(data: dict[str, Any], path: str,
             lines: dict[tuple[str | int, ...], int] | None = None) -> None:
    """Raise ProfileError for the most relevant schema violation (file, field, line)."""
    hugepages = data.get("hugepages")
    if isinstance(hugepages, dict) and len(set(EXCLUSIVE["hugepages"]) & set(hugepages)) > 1:
        line = (lines or {}).get(("hugepages",))
        raise ProfileError(path=path, field="hugepages", line=line,
                           reason="give exactly one of percent_per_numa, gib_per_numa or "
                                  "mib_per_numa")
    try:
        datafiles.validate(data, "profile", path, lines)
    except InputError as exc:
        raise ProfileError(path=exc.path, field=exc.field, reason=exc.reason,
                           line=exc.line) from None
