"""Progress of long operations on stderr (rich): one line per item with its latest step
and elapsed time, silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import threading
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class NodeLines:
    """One line per node: its latest step (``step``) until it is ``done``."""

    def __init__(self, nodes: list[str], console: Console) -> None:
        self.prog = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                             TextColumn("{task.fields[step]}"), TimeElapsedColumn(),
                             console=console, transient=False,
                             disable=not sys.stderr.isatty())
        self.tasks = {n: self.prog.add_task(n, total=None, step="waiting") for n in nodes}
        self.lock = threading.Lock()

    def step(self, node: str, step: str) -> None:
        with self.lock:
            task = self.tasks.get(node)
            if task is None:
                task = self.tasks[node] = self.prog.add_task(node, total=None, step="")
            self.prog.update(task, step=step)

    def done(self, result: Any) -> None:
        """A result with ``node``, ``status`` and ``reason`` (a stage's per-node result)."""
        self.step(result.node, f"{result.status}" + (f": {result.reason[:60]}"
                                                      if result.reason else ""))
        with self.lock:
            task = self.tasks.get(result.node)
            if task is not None:
                self.prog.update(task, total=1, completed=1)
