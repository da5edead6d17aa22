"""nova.conf validated against Nova's own option definitions, before anything is written.

Nova's options (their types, ranges and choices) and its CPU-set and PCI parsers live in
the ``nova`` package, which metalctl does not import: it pins a whole OpenStack release
of its own. So the check runs ``validate_nova_conf.py`` (shipped beside this module) with
an interpreter that has nova, by default the Nova venv of
:mod:`metalctl_lab.nova_venv` (``$METALCTL_NOVA_PYTHON`` names another), handing it the
configuration on stdin and reading one JSON answer. It takes about 3 s (oslo.config's
option discovery across Nova's 17 generator namespaces dominates).

What is validated is the *masked* rendering: secrets never reach the subprocess, and
every option that carries one (``transport_url``, ``password``, ``token``) is a plain
string to Nova, so ``***`` in their place cannot change the verdict.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl import settings
from metalctl.errors import InputError, MetalctlError

LOG = logging.getLogger(__name__)

VALIDATOR = Path(__file__).resolve().parent / "validate_nova_conf.py"
TIMEOUT_S = 120.0  # measured about 3 s; a loaded 2-core machine may take several times that


class NovaConfigError(InputError):
    """A nova.conf option is unknown to Nova, or its value fails Nova's type, choices or
    parser (or metalctl's allow-list). ``field`` is ``[section] option``; ``problems``
    lists every problem found, not only the first."""

    def __init__(self, path: str, field: str, reason: str, line: int | None = None,
                 problems: list[Problem] | None = None) -> None:
        super().__init__(path, field, reason, line)
        self.problems = list(problems or [])


class NovaValidatorError(MetalctlError):
    """Nova's option definitions could not be consulted (no nova, the checker crashed)."""

    message = "nova.conf validator: %(reason)s"


@dataclass(frozen=True)
class Problem:
    """One finding of the validator."""

    section: str
    option: str
    reason: str
    line: int | None = None

    @property
    def field(self) -> str:
        return f"[{self.section}] {self.option}".rstrip() if self.section else "(document)"


@dataclass(frozen=True)
class Validation:
    """The validator's answer for a configuration that passed."""

    warnings: list[Problem] = field(default_factory=list)
    nova_version: str = ""
    elapsed_s: float = 0.0  # wall time of the subprocess, as metalctl measured it


def validate(text: str, *, label: str = "nova.conf", python: Path | None = None,
             timeout_s: float = TIMEOUT_S) -> Validation:
    """Validate a nova.conf text (give the masked rendering) against Nova's options.

    Args:
        text: the configuration, an INI document.
        label: how errors name the document (for example ``nova.conf for cn-07``).
        python: an interpreter with nova; default :func:`default_python`.
        timeout_s: bound on the validator's run.

    Returns:
        The warnings (deprecated names, options set twice) and the Nova version checked.

    Raises:
        NovaConfigError: unknown sections or options, or bad values; names the first as
            ``[section] option`` with its line, and carries all of them in ``problems``.
        NovaValidatorError: the validator could not run or answered nonsense.
    """
    outcome = validate_many({label: text}, python=python, timeout_s=timeout_s)[label]
    if isinstance(outcome, NovaConfigError):
        raise outcome
    return outcome


def validate_many(documents: Mapping[str, str], *, python: Path | None = None,
                  timeout_s: float = TIMEOUT_S) -> dict[str, Validation | NovaConfigError]:
    """Validate several configurations (label -> masked text) in one validator run.

    Nova's option discovery is most of a run's time, so a fleet's configurations are
    checked together: one result per label, a :class:`Validation` or the
    :class:`NovaConfigError` that :func:`validate` would raise (one host's bad option
    does not hide another host's verdict).

    Raises:
        NovaValidatorError: the validator could not run or answered nonsense.
    """
    interpreter = python or default_python()
    labels = list(documents)
    started = time.monotonic()
    try:
        proc = subprocess.run([str(interpreter), str(VALIDATOR), "--batch"],
                              input=json.dumps({"documents": [documents[k] for k in labels]}),
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise NovaValidatorError(reason=f"no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise NovaValidatorError(reason=f"cannot run {interpreter}: {exc.strerror}") from None
    elapsed = time.monotonic() - started
    answer = _answer(proc)
    if len(answer["results"]) != len(labels):
        raise NovaValidatorError(reason="answered for a different number of documents")
    LOG.debug("%d nova.conf document(s) validated by nova %s in %.2f s", len(labels),
              answer.get("nova_version"), elapsed)
    return {label: _outcome(label, documents[label], result, answer, elapsed)
            for label, result in zip(labels, answer["results"], strict=True)}


def _outcome(label: str, text: str, result: dict[str, Any], answer: dict[str, Any],
             elapsed: float) -> Validation | NovaConfigError:
    lines = _line_index(text)
    errors = [_problem(e, lines) for e in result["errors"]]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return NovaConfigError(label, first.field, first.reason + more, first.line, errors)
    return Validation(warnings=[_problem(w, lines) for w in result["warnings"]],
                      nova_version=str(answer.get("nova_version", "")), elapsed_s=elapsed)


def default_python() -> Path:
    """The interpreter with nova: ``$METALCTL_NOVA_PYTHON``, else the Nova venv's
    (``$METALCTL_NOVA_VENV``, default ``~/.cache/metalctl/nova``, the same place
    ``metalctl_lab.nova_venv`` installs to; a stage does not import the lab).

    Raises:
        NovaValidatorError: neither exists.
    """
    explicit = settings.path("METALCTL_NOVA_PYTHON")
    python = explicit or Path(str(settings.get("METALCTL_NOVA_VENV"))) / "bin" / "python"
    if not python.exists():
        raise NovaValidatorError(
            reason=f"{python} does not exist; Nova's option definitions need an interpreter "
                   "with nova installed: set METALCTL_NOVA_PYTHON, or METALCTL_NOVA_VENV to a venv "
                   "with nova (scripts/setup.sh makes one)")
    return python


def _answer(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise NovaValidatorError(reason=f"exit {proc.returncode}, no JSON answer: {tail}") \
            from None
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and {"errors", "warnings"} <= set(r) for r in results):
        raise NovaValidatorError(reason="answer lacks results with errors and warnings")
    return answer


_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*[=:]")


def _line_index(text: str) -> dict[tuple[str, str], int]:
    """The first line of each ``[section]`` (option "") and ``[section] option``."""
    out: dict[tuple[str, str], int] = {}
    section = "DEFAULT"
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _SECTION.match(line):
            section = m.group(1)
            out.setdefault((section, ""), number)
        elif m := _KEY.match(line):
            out.setdefault((section, m.group(1)), number)
    return out


def _problem(raw: dict[str, Any], lines: dict[tuple[str, str], int]) -> Problem:
    section, option = str(raw.get("section", "")), str(raw.get("option", ""))
    return Problem(section, option, str(raw.get("reason", "")),
                   lines.get((section, option)) or lines.get((section, "")))
