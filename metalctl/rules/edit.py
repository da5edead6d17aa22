"""Pure text editors for the config formats hardening touches.

Every editor takes the file's current text and returns the new text; it changes the
first effective assignment in place (sshd and libvirt read the first/last one
differently, so duplicates are removed rather than relied on), keeps comments and
order, and appends only when the key is absent. Same input, same output: a second
run is a no-op.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any


def replace_once(lines: Iterable[str], matches: Callable[[str], bool], new: str | None,
                 continues: Callable[[str], bool] | None = None) -> tuple[list[str], bool]:
    """The lines with the first that ``matches`` replaced by ``new`` and every other match
    removed (``new`` None: every match removed), and whether ``new`` went in. Lines that
    ``continues`` right after a match belong to it and go with it. The one way every
    editor here sets a key: one assignment, where the first one stood."""
    out: list[str] = []
    done = skipping = False
    for line in lines:
        if skipping and continues is not None and continues(line):
            continue
        skipping = matches(line)
        if not skipping:
            out.append(line)
        elif new is not None and not done:
            out.append(new)
            done = True
    return out, done

# --- libvirt's conf syntax (libvirtd.conf, qemu.conf): key = value ---------------------


def libvirt_value(value: Any) -> str:
    """Render ``value`` in libvirt's config syntax: 0/1, integer, list or quoted string."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(libvirt_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _assign_re(key: str, sep: str = "=") -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(key)}\s*{re.escape(sep)}")


def get_kv(text: str, key: str, sep: str = "=") -> str | None:
    """The raw value of the effective (last uncommented) assignment, or None."""
    pattern = _assign_re(key, sep)
    value = None
    for line in text.splitlines():
        if pattern.match(line):
            value = line.split(sep, 1)[1].split("#", 1)[0].strip() if sep == "=" else \
                line.split(None, 1)[1].strip()
    return value


def set_kv(text: str, key: str, rendered: str | None, sep: str = "=") -> str:
    """Set ``key`` to the rendered value (None: remove every assignment)."""
    pattern = _assign_re(key, sep)
    line = None if rendered is None else \
        f"{key} {sep} {rendered}" if sep == "=" else f"{key} {rendered}"
    out, done = replace_once(text.splitlines(), lambda s: bool(pattern.match(s)), line)
    if line is not None and not done:
        if out and out[-1].strip():
            out.append("")
        out += ["# set by metalctl harden", line]
    return "\n".join(out) + "\n"


# --- shell-style KEY=value (/etc/selinux/config, /etc/default/*) ------------------------


def get_shell(text: str, key: str) -> str | None:
    """Return the last value of ``key=`` in shell-style text, unquoted, or None."""
    value = None
    for line in text.splitlines():
        m = re.match(rf"^\s*{re.escape(key)}=(.*)$", line)
        if m:
            value = m.group(1).split("#", 1)[0].strip().strip('"').strip("'")
    return value


def set_shell(text: str, key: str, value: str | None, quote: bool = False) -> str:
    """Set ``key=value`` in shell-style text (once, replacing every line of it).

    A None value removes the key.
    """
    pattern = re.compile(rf"^\s*{re.escape(key)}=")
    rendered = None if value is None else f'{key}="{value}"' if quote else f"{key}={value}"
    out, done = replace_once(text.splitlines(), lambda s: bool(pattern.match(s)), rendered)
    if rendered is not None and not done:
        out.append(rendered)
    return "\n".join(out) + "\n"


# --- INI (dnf.conf, *.repo, automatic.conf, nova.conf) -----------------------------------

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


def ini_sections(text: str) -> list[str]:
    """Return the section names of INI text, in order."""
    return [m.group(1).strip() for line in text.splitlines() if (m := _SECTION.match(line))]


def get_ini(text: str, section: str, key: str) -> str | None:
    """Return the last value of ``key`` in ``section`` of INI text, or None."""
    current = None
    value = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = m.group(1).strip()
            continue
        if current == section:
            kv = re.match(rf"^\s*{re.escape(key)}\s*=\s*(.*?)\s*$", line)
            if kv:
                value = kv.group(1)
    return value


def set_ini(text: str, section: str, key: str, value: str | None) -> str:
    """Set ``key=value`` in ``section`` of INI text, adding the section if missing.

    A None value removes the key.
    """
    lines = text.splitlines()
    out: list[str] = []
    current = None
    done = False
    seen_section = False
    for line in lines:
        m = _SECTION.match(line)
        if m:
            if current == section and not done and value is not None:
                _insert_before_blank(out, f"{key}={value}")
                done = True
            current = m.group(1).strip()
            seen_section = seen_section or current == section
            out.append(line)
            continue
        if current == section and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            if value is not None and not done:
                out.append(f"{key}={value}")
                done = True
            continue
        out.append(line)
    if value is not None and not done:
        if current == section:
            _insert_before_blank(out, f"{key}={value}")
        elif not seen_section:
            if out and out[-1].strip():
                out.append("")
            out += [f"[{section}]", f"{key}={value}"]
    return "\n".join(out) + "\n"


def _insert_before_blank(out: list[str], line: str) -> None:
    i = len(out)
    while i > 0 and not out[i - 1].strip():
        i -= 1
    out.insert(i, line)


# --- sshd_config: "Keyword value", keywords case-insensitive, the FIRST one wins ----------


def sshd_directives(text: str) -> list[tuple[int, str, str]]:
    """``(line index, keyword lower-cased, value)`` of the global section: every directive
    before the first ``Match`` (what follows it applies only to matching connections)."""
    out = []
    for i, line in enumerate(text.splitlines()):
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].split("=", 1)[0].lower()
        if keyword == "match":
            break
        out.append((i, keyword, words[1].strip() if len(words) > 1 else ""))
    return out


def set_sshd(text: str, keyword: str, value: str) -> str:
    """Set ``Keyword value`` once (in place of the first, every other line of it removed)."""
    def sets(line: str) -> bool:
        words = line.split(None, 1)
        return bool(words) and words[0].lower() == keyword.lower()

    out, done = replace_once(text.splitlines(), sets, f"{keyword} {value}")
    if not done:
        out.append(f"{keyword} {value}")
    return "\n".join(out) + "\n"


def disable_sshd(text: str, keyword: str, why: str) -> str:
    """Comment out the global-section lines that set ``keyword`` (with ``why``)."""
    lines = text.splitlines()
    for i, kw, _ in sshd_directives(text):
        if kw == keyword.lower():
            lines[i] = f"# metalctl: {why}: {lines[i]}"
    return "\n".join(lines) + "\n"


def add_sshd_include(text: str, path: str) -> str:
    """Put ``Include path`` before the first directive (sshd takes the first value)."""
    lines = text.splitlines()
    first = next((i for i, _, _ in sshd_directives(text)), len(lines))
    lines[first:first] = ["# metalctl: its drop-in first (sshd takes the first value)",
                          f"Include {path}"]
    return "\n".join(lines) + "\n"


# --- sysctl.d: "key = value" ----------------------------------------------------------------


def get_sysctl(text: str, key: str) -> str | None:
    """The value of the last assignment of ``key`` (``-key`` too), or None."""
    value = None
    for line in text.splitlines():
        if _sysctl_key(line) == key:
            value = line.partition("=")[2].strip()
    return value


def _sysctl_key(line: str) -> str | None:
    """The key a sysctl.d line assigns (``-key`` and ``a/b`` spellings folded), or None."""
    name, sep, _ = line.partition("=")
    if not sep or name.lstrip().startswith(("#", ";")):
        return None
    return name.strip().lstrip("-").replace("/", ".")


def set_sysctl(text: str, key: str, value: str) -> str:
    """Set ``key = value`` once (in place of the first assignment, others removed)."""
    out, done = replace_once(text.splitlines(), lambda s: _sysctl_key(s) == key,
                             f"{key} = {value}")
    if not done:
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"
