"""Last line of defence: a logging filter that blanks known secret values.

:class:`~metalctl.credentials.Secret` already refuses to render, but third-party
libraries log the *revealed* value (keystoneauth and ironicclient log request
bodies at DEBUG, and a node create carries ``driver_info.*_password``). The CLI
registers every secret it resolves here, and the filter replaces those strings in
every record before any handler formats it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from metalctl.credentials import MASK, Secret


class RedactingFilter(logging.Filter):
    """Replace registered secret values in log messages and arguments."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()

    def add(self, secrets: Iterable[Secret]) -> None:
        for s in secrets:
            value = s.reveal()
            if len(value) >= 3:  # a 1-2 character password would blank ordinary text
                self._values.add(value)

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._values:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is not our concern here
            return True
        record.msg = self.scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True
