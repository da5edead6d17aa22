"""Last line of defence: secrets and terminal control out of every text a peer can echo.

:class:`~metalctl.credentials.Secret` already refuses to render, but third-party
libraries log the *revealed* value (keystoneauth and ironicclient log request
bodies at DEBUG, and a node create carries ``driver_info.*_password``), and a
peer may echo what it was sent (an Ironic error that quotes the request body).
Two defences, applied by :func:`scrub`:

- every value registered here (:func:`register`: the CLI registers each secret it
  resolves, enrollment every credential field it sends) is replaced by the mask
  wherever it appears;
- whatever was registered, the value of any credential *field* a peer spells out
  (``*_password``, ``*_kg_key``, ``*token*``, ``*secret*``, as JSON, ``key=value``,
  an HTTP header, or a JSON patch ``path``/``value`` pair) is masked, and the userinfo
  of any URL (``http://user:password@host``). Ordinary words are kept: a path
  (``/etc/passwd``), a dotted field path (``lab[0].password``) and a field that only
  names where a secret is (``password_env``, ``*_file``) are not values.

:class:`RedactingFilter` applies :func:`scrub` to every log record, and also
replaces terminal control characters (an ESC from a BMC's string would otherwise
reach the operator's terminal through the log handler).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from metalctl.credentials import MASK, Secret, revealed_values
from metalctl.errors import mask_url

#: A field name that holds a credential (Ironic driver_info, Redfish, HTTP headers).
SECRET_FIELD = r"[\w-]*(?:password|passwd|kg_key|token|secret|api_key|private_key)[\w-]*"  # noqa: S105 - a pattern of field names

_FIELD_VALUE = re.compile(
    # "field": "value" | 'field': 'value' | field=value | field: value (header form);
    # a word inside a path or a dotted field path (/etc/passwd:3, lab[0].password: ...)
    # is not a field that holds a value
    r"(?P<key>(?<![\w/.\\\]-])[\"']?(?P<name>" + SECRET_FIELD + r")[\"']?\s*[:=]\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&}\]\"']+)",
    re.IGNORECASE)
_PATCH_VALUE = re.compile(
    # {"path": "/driver_info/ipmi_password", "op": "add", "value": "x"}, either order
    r"(?P<key>[\"']path[\"']\s*:\s*[\"'][^\"']*" + SECRET_FIELD + r"[\"']"
    r"(?:\s*,\s*[\"']\w+[\"']\s*:\s*[\"'][^\"']*[\"'])*\s*,\s*[\"']value[\"']\s*:\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,}]+)",
    re.IGNORECASE)
_PATCH_VALUE_FIRST = re.compile(
    r"(?P<key>[\"']value[\"']\s*:\s*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"(?=(?:\s*,\s*[\"']\w+[\"']\s*:\s*[\"'][^\"']*[\"'])*\s*,\s*[\"']path[\"']\s*:\s*"
    r"[\"'][^\"']*" + SECRET_FIELD + r"[\"'])",
    re.IGNORECASE)

#: C0 controls but tab and newline, DEL, and C1 controls (CSI 0x9b is an ESC '[').
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_values: set[str] = set()
_values_lock = threading.Lock()


def register(values: Iterable[Secret | str]) -> None:
    """Remember secret values so :func:`scrub` masks them in any text, from now on.

    Values shorter than 3 characters are not registered: masking them would
    blank ordinary text (and such a password is refused elsewhere anyway).
    """
    with _values_lock:
        for value in values:
            text = value.reveal() if isinstance(value, Secret) else str(value)
            if len(text) >= 3:
                _values.add(text)


def is_secret_field(name: str) -> bool:
    """True for a field name that holds a credential (``ipmi_kg_key``, ``x_auth_token``...)."""
    return re.fullmatch(SECRET_FIELD, name, re.IGNORECASE) is not None


#: field names that *name* where a secret is, never hold it (``password_env: VAR``)
_REFERENCE = re.compile(r".*_(?:env|file|path|dir|name|set|sets|credentials)$", re.IGNORECASE)


def _mask(match: re.Match[str]) -> str:
    name = match.groupdict().get("name")
    if name and _REFERENCE.fullmatch(name):
        return match.group(0)
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def scrub(text: str) -> str:
    """``text`` with every registered secret and every credential field's value masked."""
    text = mask_url(text)  # http://user:password@host: the userinfo, whatever it is
    with _values_lock:
        # registered values, and every Secret ever revealed to a peer (library callers
        # that never registered anything are covered too)
        values = sorted(_values | revealed_values(), key=len, reverse=True)  # longest first
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    for pattern in (_PATCH_VALUE, _PATCH_VALUE_FIRST, _FIELD_VALUE):
        text = pattern.sub(_mask, text)
    return text


def defang(text: str) -> str:
    """Terminal control characters shown as ``\\xNN`` instead of acting on the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class RedactingFilter(logging.Filter):
    """Apply :func:`scrub` and :func:`defang` to log messages, arguments and tracebacks."""

    def add(self, secrets: Iterable[Secret]) -> None:
        """Register ``secrets`` (see :func:`register`)."""
        register(secrets)

    def scrub(self, text: str) -> str:
        """Return ``text`` with secrets masked and control characters defanged."""
        return defang(scrub(text))

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record's message and traceback in place; never drops a record."""
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
