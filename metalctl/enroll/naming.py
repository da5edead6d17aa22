"""The site's node naming scheme: a Python format template over discovery facts.

Fields: ``vendor``, ``model``, ``serial``, ``uuid``, ``uuid8`` (first 8 hex),
``address`` (dots/colons as dashes), ``octets`` (last two octets, dashed),
``system`` (last path element of the Redfish system id), ``index`` (position
in the run, sorted by address). A field that is unknown for a node falls back
to ``uuid8``, so a name is always produced. Names are lower-cased and reduced
to what Ironic accepts (RFC 3986 unreserved characters).
"""

from __future__ import annotations

import re
import string
from typing import Any

from metalctl.errors import InputError
from metalctl.model.node import DiscoveryRecord

DEFAULT_TEMPLATE = "{vendor}-{serial}"
FIELDS = {"vendor", "model", "serial", "uuid", "uuid8", "address", "octets", "system",
          "index"}


def validate(template: str) -> None:
    """Raises InputError for unknown fields or a malformed template."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError as exc:
        raise InputError("--name-template", template, str(exc)) from None
    unknown = names - FIELDS
    if unknown:
        raise InputError("--name-template", template,
                         f"unknown field {sorted(unknown)[0]!r}; use {sorted(FIELDS)}")


def _slug(value: Any) -> str:
    return re.sub(r"[^a-z0-9._~-]+", "-", str(value).lower()).strip("-")


def facts(record: DiscoveryRecord, index: int) -> dict[str, str]:
    """Return the slugged values a naming template may use for ``record``.

    ``index`` is the node's position, rendered as three digits; a missing value falls back
    to the first eight hex digits of the UUID (or key).
    """
    uuid8 = (record.uuid or record.key).replace("-", "")[:8]
    parts = re.split(r"[.:]", record.address)
    out = {
        "vendor": record.vendor, "model": record.model, "serial": record.serial,
        "uuid": record.uuid, "uuid8": uuid8, "address": record.address,
        "octets": "-".join(parts[-2:]),
        "system": (record.system_id or "").rstrip("/").rsplit("/", 1)[-1] or None,
        "index": f"{index:03d}",
    }
    return {k: _slug(v) if v else _slug(uuid8) for k, v in out.items()}


def render(template: str, record: DiscoveryRecord, index: int) -> str:
    """The Ironic node name for ``record``."""
    name = _slug(template.format(**facts(record, index)))
    return name[:255]
