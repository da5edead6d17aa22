"""Peer text made safe for a terminal: a BMC's strings (names, models, error messages)
are untrusted input.

Raw escape sequences in them would reach the operator's terminal (cursor moves, title
changes, hyperlinks), and rich would interpret ``[markup]`` and ``:emoji:`` codes in them
(``:-1:`` became an emoji). :func:`plain` removes control characters and escapes markup;
:func:`console` makes a rich console that never replaces emoji codes. JSON and YAML keep
the exact text (their encoders escape control characters themselves).
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from metalctl.logredact import scrub_values

#: C0 controls except tab and newline, DEL, and C1 controls (ESC-less CSI is 0x9b)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: Any) -> str:
    """``value`` as text a terminal shows literally, with no secret revealed to a peer."""
    text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", str(value))
    return escape(scrub_values(text))


def console(file: TextIO | None = None, *, stderr: bool = False) -> Console:
    """A rich console for tables of peer data (no emoji codes, no auto-highlighting)."""
    out = file or (sys.stderr if stderr else sys.stdout)
    return Console(file=out, soft_wrap=False, emoji=False, highlight=False,
                   width=None if out.isatty() else 200)
