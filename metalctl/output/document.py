"""One document (a mapping, not a list of records) as JSON or YAML on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import yaml


def dump(data: Any, fmt: str, out: TextIO | None = None) -> None:
    """Write ``data`` as ``json`` or ``yaml`` (anything else is JSON's default-str view)."""
    out = out or sys.stdout
    if fmt == "yaml":
        out.write(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
    else:
        out.write(json.dumps(data, indent=2, default=str) + "\n")
