"""apt's deb822 source files (``/etc/apt/sources.list.d/*.sources``, sources.list(5)
"DEB822-STYLE FORMAT"): stanzas of ``Field: value`` lines, continuation lines indented,
``#`` comments, stanzas separated by blank lines; field names are case-insensitive.

Edits keep every line they do not touch (comments, other fields, inline keys)."""

from __future__ import annotations

from dataclasses import dataclass, field

from metalctl.rules.edit import replace_once


@dataclass
class Stanza:
    """One stanza: its lines (with comments) and its fields (lower-cased names)."""

    lines: list[str]
    fields: dict[str, str] = field(default_factory=dict)

    def words(self, name: str) -> list[str]:
        """A multi-value field (``Types``, ``URIs``, ``Suites``) as its words."""
        return self.fields.get(name.lower(), "").split()

    @property
    def enabled(self) -> bool:
        return self.fields.get("enabled", "yes").strip().lower() not in ("no", "false", "0")


def parse(text: str) -> list[Stanza]:
    """The stanzas of a ``.sources`` file, in order (comment-only blocks included)."""
    out: list[Stanza] = []
    cur: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            cur.append(line)
            continue
        if cur:
            out.append(_stanza(cur))
            cur = []
    return out


def _stanza(lines: list[str]) -> Stanza:
    fields: dict[str, str] = {}
    last = None
    for line in lines:
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t") and last:
            fields[last] += "\n" + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            fields[last] = value.strip()
    return Stanza(lines, fields)


def render(stanzas: list[Stanza]) -> str:
    """The file text of ``stanzas``."""
    return "\n\n".join("\n".join(s.lines) for s in stanzas) + "\n"


def set_field(stanza: Stanza, name: str, value: str) -> Stanza:
    """The stanza with ``name`` set to ``value`` (replacing every line of its old value,
    continuation lines of an inline key included), appended when absent."""
    out, done = replace_once(stanza.lines, lambda line: _names(line, name),
                             f"{name}: {value}", _continues)
    if not done:
        out.append(f"{name}: {value}")
    return _stanza(out)


def drop_field(stanza: Stanza, name: str) -> Stanza:
    """The stanza without ``name``."""
    return _stanza(replace_once(stanza.lines, lambda line: _names(line, name), None,
                                _continues)[0])


def _names(line: str, name: str) -> bool:
    """Does ``line`` start the field ``name`` (case-insensitive)?"""
    return not line.startswith("#") and ":" in line and \
        line.partition(":")[0].strip().lower() == name.lower()


def _continues(line: str) -> bool:
    """A continuation line: it belongs to the field above it."""
    return line[:1] in (" ", "\t")


def disable(stanza: Stanza, why: str) -> Stanza:
    """The stanza with ``Enabled: no`` and a comment saying why."""
    s = set_field(stanza, "Enabled", "no")
    return _stanza([f"# metalctl: {why}", *s.lines])
