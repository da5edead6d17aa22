"""Where on a host a rule's finding is: the file and, where the rule knows it, the line.

Reports that point at code (SARIF for GitHub code scanning) need a file and a line. The
rules engine judges effective state; this module maps a rule back to the file an operator
would edit: the rule's own ``file``/``path`` (templates rendered with the host's
variables), ``/etc/ssh/sshd_config`` for ``sshd -T`` keys, ``/proc/sys/...`` for sysctls,
``/proc/cmdline`` for kernel arguments. The line is the first uncommented line that sets
the rule's ``key`` in the content gathered from the host; a key that is not set has no
line (the finding is about the whole file).
"""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules.gather import HostFacts
from metalctl.rules.plan import render

#: the file an operator edits for rule kinds that judge effective state
EFFECTIVE_FILES = {"sshd": "/etc/ssh/sshd_config", "cmdline": "/proc/cmdline"}


def rule_path(kind: str, check: dict[str, Any], variables: dict[str, Any]) -> str | None:
    """Return the absolute path a rule of ``kind`` is about on the host, or None."""
    if kind == "sysctl" and isinstance(check.get("key"), str):
        return "/proc/sys/" + check["key"].replace(".", "/")
    path = EFFECTIVE_FILES.get(kind) or check.get("file") or check.get("path")
    if not isinstance(path, str):
        return None
    path = render(path, variables)
    if not isinstance(path, str) or "{" in path or not path.startswith("/"):
        return None
    return path


def key_line(text: str, key: str, case_insensitive: bool = False) -> int | None:
    """Return the 1-based line of the first uncommented ``key = value``/``key value``."""
    flags = re.IGNORECASE if case_insensitive else 0
    pattern = re.compile(rf"^\s*{re.escape(key)}(\s*=|\s)", flags)
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def locate(kind: str, check: dict[str, Any], facts: HostFacts,
           variables: dict[str, Any]) -> tuple[str | None, int | None]:
    """Return ``(path, line)`` of a rule's finding on a host (either may be None)."""
    path = rule_path(kind, check, variables)
    key = check.get("key")
    if path is None or not isinstance(key, str) or kind == "sysctl":
        return path, None
    return path, key_line(facts.text(path), key, case_insensitive=kind == "sshd")
