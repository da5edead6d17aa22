"""What a run shows while it runs: a rich table of nodes × stages (each node's current
step and elapsed time), or one plain line per step when stderr is not a terminal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from metalctl.run.rackfile import STAGES
from metalctl.run.scheduler import RunEvent

_STYLE = {"ok": "green", "failed": "bold red", "running": "yellow", "skipped": "dim",
          "pending": "dim", "stopped": "magenta"}
#: more nodes than this: the table shows the running and failed ones, and counts the rest
MAX_ROWS = 40


class LiveView:
    """Follows :class:`RunEvent`s; renders a table (tty) or plain lines (a pipe)."""

    def __init__(self, console: Console, stream: IO[str] | None = None) -> None:
        self.console = console
        self.stream = stream
        self.rows: dict[str, dict[str, Any]] = {}
        self.t0 = time.monotonic()
        self.stopped: str | None = None

    def __call__(self, event: RunEvent) -> None:
        if event.kind == "stopped":
            self.stopped = event.reason
            self._line(f"run: {event.reason}")
            return
        if event.key is None:
            return
        row = self.rows.setdefault(event.key, {"steps": {}, "since": time.monotonic()})
        row["name"] = event.name or row.get("name")
        if event.kind == "start" and event.stage:
            row["steps"][event.stage] = ("running", None)
            row["since"] = time.monotonic()
        elif event.kind == "end" and event.stage:
            row["steps"][event.stage] = (event.status, event.elapsed_s)
            tail = f": {event.reason}" if event.reason and event.status == "failed" else ""
            self._line(f"{event.name or _short(event.key)} {event.stage} {event.status} "
                       f"{event.elapsed_s or 0:.1f}s{tail}")

    def _line(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()

    def table(self) -> Table:
        t = Table(title=f"metalctl run — {time.monotonic() - self.t0:.0f} s"
                  + (f" — {self.stopped}" if self.stopped else ""), expand=False)
        t.add_column("node")
        for stage in STAGES:
            t.add_column(stage)
        t.add_column("in step")
        rows = list(self.rows.items())
        if len(rows) > MAX_ROWS:
            busy = [(k, r) for k, r in rows if any(s in ("running", "failed")
                                                   for s, _ in r["steps"].values())]
            rows = busy[:MAX_ROWS]
        now = time.monotonic()
        for key, row in rows:
            cells = []
            for stage in STAGES:
                status, elapsed = row["steps"].get(stage, (None, None))
                text = "" if status is None else status if elapsed is None else \
                    f"{status} {elapsed:.1f}s"
                cells.append(f"[{_STYLE.get(status or '', '')}]{text}[/]" if status else "")
            running = any(s == "running" for s, _ in row["steps"].values())
            t.add_row(row.get("name") or _short(key), *cells,
                      f"{now - row['since']:.0f}s" if running else "")
        if len(self.rows) > len(rows):
            t.caption = f"{len(self.rows) - len(rows)} more node(s) not running"
        return t


def _short(key: str) -> str:
    return key.removeprefix("https://").removeprefix("http://")


@contextmanager
def live(console: Console, stream: IO[str] | None, enabled: bool) -> Iterator[LiveView]:
    """A refreshing table on a terminal; plain lines on ``stream`` otherwise."""
    view = LiveView(console, None if enabled else stream)
    if not enabled:
        yield view
        return
    with Live(get_renderable=view.table, console=console, refresh_per_second=2,
              transient=False):
        yield view
