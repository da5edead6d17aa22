"""Render lists of records as a rich table, JSON or YAML.

Every verb builds ``to_dict()`` rows once; the table is a view of selected
columns of those same rows, JSON/YAML carry all keys (the documented contract).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml
from rich.table import Table

from metalctl.logredact import scrub_values
from metalctl.output.safe import console, plain

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


def render(rows: Sequence[dict[str, Any]], fmt: str, *, columns: Sequence[tuple[str, Any]],
           title: str | None = None, out: TextIO | None = None) -> None:
    """Print ``rows``.

    ``columns`` are (header, key or callable(row)) pairs used by the table format.
    """
    out = out or sys.stdout
    if fmt == "json":
        out.write(scrub_values(json.dumps(list(rows), indent=2, default=str)) + "\n")
        return
    if fmt == "yaml":
        out.write(scrub_values(yaml.safe_dump(json.loads(json.dumps(list(rows), default=str)),
                                              sort_keys=False)))
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        cells = []
        for _, key in columns:
            value = key(row) if callable(key) else row.get(key)
            text = _cell(value)
            style = STYLES.get(text)
            cells.append(f"[{style}]{text}[/]" if style else plain(text))
        table.add_row(*cells)
    console(out).print(table)


def summary_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n)


Column = tuple[str, str | Callable[[dict[str, Any]], Any]]
