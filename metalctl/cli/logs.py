"""Logging of every verb: stderr (rich on a terminal, one line per record otherwise), an
optional file, secrets redacted from every record, peer libraries quiet unless -vv."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rich.logging import RichHandler

from metalctl.cli.common import REDACT, STDERR
from metalctl.errors import InputError

# paramiko's transport thread logs an ERROR traceback for every refused handshake (a
# host still booting, sshd re-executing); metalctl's ssh module reports those itself
_NOISY = ("sushy", "urllib3", "ironicclient", "keystoneauth", "stevedore", "openstack",
          "pyghmi", "paramiko")


def setup_logging(verbosity: int, log_file: Path | None) -> None:
    """-v: info, -vv/--debug: debug including peer libraries. Logs go to stderr/file."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    console: logging.Handler
    if sys.stderr.isatty():
        console = RichHandler(console=STDERR, show_path=False, rich_tracebacks=False)
        # RichHandler prints the level in its own column; basicConfig's default format
        # ("%(levelname)s:%(name)s:%(message)s") would print it a second time
        console.setFormatter(logging.Formatter("%(message)s"))
    else:
        # a pipeline or a log collector reads stderr: one line per record, never wrapped
        # or cut to a terminal width it does not have
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file:
        handlers.append(_file_handler(log_file))
    for h in handlers:
        h.addFilter(REDACT)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL
                                         if verbosity == 0 else logging.WARNING)


def _file_handler(path: Path) -> logging.Handler:
    """A log file handler, or an InputError naming ``--log-file`` (missing directory...)."""
    try:
        fh = logging.FileHandler(path)
    except OSError as exc:
        raise InputError("--log-file", str(path), exc.strerror or "cannot open") from None
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return fh
