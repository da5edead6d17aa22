"""Data files: where the shipped ones live, the one loader, and the one schema home.

``metalctl/data/schemas/<name>.yaml`` holds every JSON Schema of a data file;
:func:`load` reads any data file through the same bounds, parser and error wording.
"""

from metalctl.data.loader import load, load_with_lines, parse_json, read_text, schema, validate
from metalctl.data.paths import data_dir

__all__ = ["data_dir", "load", "load_with_lines", "parse_json", "read_text", "schema",
           "validate"]
