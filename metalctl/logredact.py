"""Last line of defence: a logging filter that blanks known secret values.

:class:`~metalctl.credentials.Secret` already refuses to render, but third-party
libraries log the *revealed* value (keystoneauth and ironicclient log request
bodies at DEBUG, and a node create carries ``driver_info.*_password``). The CLI
registers every secret it resolves here, and the filter replaces those strings in
every record before any handler formats it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from metalctl.credentials import MASK, MIN_SCRUB_LEN, Secret, revealed_values

#: ``key: value`` / ``key=value`` / ``"key": "value"`` where the key names a credential
#: (``ipmi_password``, ``redfish_password``, ``ipmi_kg_key``, ``X-Auth-Token``, ...):
#: peers echo request bodies in their errors and libraries log them at DEBUG, with
#: values metalctl never held as a Secret (an inventory's ``ipmi_kg_key``)
_KEYED = re.compile(
    r"(?i)([\w.-]*(?:password|passwd|kg_key|secret|token|auth_key)[\w.-]*"
    r"(?:\\*[\"'])?\s*[:=]\s*(?:\\*[\"'])?)"  # quotes, JSON-escaped any number of times
    r"([^\s\"'\\,;}&\]]+)")


def scrub_values(text: str, extra: Iterable[str] = ()) -> str:
    """Replace every revealed secret value (and ``extra`` values) with the mask."""
    for value in (*revealed_values(), *extra):
        if len(value) >= MIN_SCRUB_LEN and value in text:
            text = text.replace(value, MASK)
    return text


def scrub_text(text: str, extra: Iterable[str] = ()) -> str:
    """:func:`scrub_values`, and mask the value of every credential-named key: for text a
    peer produced (error messages, request bodies in library logs)."""
    return _KEYED.sub(lambda m: m.group(1) + MASK, scrub_values(text, extra))


class RedactingFilter(logging.Filter):
    """Replace registered secret values in log messages and arguments."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()

    def add(self, secrets: Iterable[Secret]) -> None:
        """Register values to blank (besides every value revealed to a peer)."""
        for s in secrets:
            value = s.reveal()
            if len(value) >= MIN_SCRUB_LEN:  # shorter would blank ordinary text
                self._values.add(value)

    def scrub(self, text: str) -> str:
        """Blank registered and revealed secrets and credential-named keys' values."""
        return scrub_text(text, self._values)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record in place; never drops one."""
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
