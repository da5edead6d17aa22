"""Render lists of records as a rich table, JSON or YAML.

Every verb builds ``to_dict()`` rows once; the table is a view of selected
columns of those same rows, JSON/YAML carry all keys (the documented contract).

Cells hold peer text (a BMC's model string, an Ironic error): tables render it
as plain text, never as rich markup or emoji codes, with terminal control
characters shown as ``\\xNN``. JSON and YAML stay exact (both escape controls).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from metalctl.logredact import defang

FORMATS = ("table", "json", "yaml")

#: cell styles by value, so a tech sees failures at a glance
STYLES = {"ok": "green", "created": "green", "updated": "cyan", "unchanged": "dim",
          "failed": "bold red", "no-bmc": "dim", "auth-failed": "red", "tls-error": "red",
          "timeout": "yellow", "protocol-error": "red", "manageable": "green",
          "available": "green", "enroll": "yellow"}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def plain(value: Any) -> Text:
    """Peer text as a rich renderable that is only text: no markup, emoji or controls."""
    return Text(defang(_cell(value)))


def markup_safe(value: Any) -> str:
    """Peer text for a place that parses markup (a progress column): escaped, defanged."""
    return escape(defang(_cell(value)))


class PeerTextColumn(ProgressColumn):
    """A progress column showing a task field that may hold peer text, as plain text.

    rich's ``TextColumn`` parses markup in the formatted field, so a node name or
    error read from a peer would be interpreted; this column never does.
    """

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def render(self, task: Task) -> Text:
        """Render the task's field as plain text (peer text carries no markup)."""
        return plain(task.fields.get(self.field, ""))


def render(rows: Sequence[dict[str, Any]], fmt: str, *, columns: Sequence[tuple[str, Any]],
           title: str | None = None, out: TextIO | None = None) -> None:
    """Print ``rows``.

    ``columns`` are (header, key or callable(row)) pairs used by the table format.
    """
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(list(rows), indent=2, default=str) + "\n")
        return
    if fmt == "yaml":
        out.write(yaml.safe_dump(json.loads(json.dumps(list(rows), default=str)),
                                 sort_keys=False))
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        cells = []
        for _, key in columns:
            value = key(row) if callable(key) else row.get(key)
            cell = plain(value)
            if cell.plain in STYLES:
                cell.stylize(STYLES[cell.plain])
            cells.append(cell)
        table.add_row(*cells)
    # emoji off: ":-1:" or ":warning:" in a peer's string stays as written
    Console(file=out, soft_wrap=False, emoji=False,
            width=None if out.isatty() else 200).print(table)


def summary_line(counts: dict[str, int]) -> str:
    """Return ``"3 created, 1 failed"`` from counts, leaving out zeros."""
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n)


Column = tuple[str, str | Callable[[dict[str, Any]], Any]]
