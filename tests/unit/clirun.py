"""``metalctl ARGV`` run in this process, as the unit tests of options and bad input do:
what it printed (the rich console and stderr) and its exit code, with process-wide
logging put back as it was afterwards."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from rich.console import Console

from metalctl.cli import common, logs
from metalctl.cli import main as cli_main


def runner(monkeypatch: pytest.MonkeyPatch, reached: type[BaseException], code_reached: Any,
           ) -> Callable[[list[str]], tuple[Any, str]]:
    """A function running ``metalctl ARGV``: ``reached`` (raised by a stubbed stage) ends
    it with ``code_reached``; stdout is captured too (tables and data are not asserted)."""
    def run(argv: list[str]) -> tuple[Any, str]:
        buf, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(common, "STDERR", Console(file=buf, width=10_000))
        monkeypatch.setattr("sys.stderr", err)
        monkeypatch.setattr("sys.stdout", io.StringIO())
        try:
            code: Any = cli_main.main(argv)
        except reached:
            code = code_reached
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, buf.getvalue() + err.getvalue()
    return run


@contextmanager
def logging_restored() -> Iterator[None]:
    """``main()`` configures process-wide logging; leave it as the next test expects."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers),
             {n: logging.getLogger(n).level for n in (*logs._NOISY, "metalctl")})
    try:
        yield
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for n, level in saved[2].items():
            logging.getLogger(n).setLevel(level)
