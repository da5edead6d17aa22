"""The one loader for metalctl's data files (YAML or JSON), with one error wording.

Every data file (profiles, BIOS maps, hardening rules, inventories, credentials,
waivers, site, hosts, rack files) is read here and is treated as untrusted input:

* bounded: a file larger than ``max_bytes`` is refused before it is parsed;
* UTF-8 only: binary or other encodings are refused with the byte offset;
* no YAML aliases: a few bytes of ``&a [*a, *a, ...]`` expand to gigabytes
  ("billion laughs"); anchors without aliases are harmless and allowed;
* validated against a JSON Schema (draft 2020-12) from :mod:`metalctl.data.schemas`
  or given inline, so an unknown key is an error, not a silently ignored typo. A
  subschema may carry ``x-error``, the wording used when it fails (for patterns).

Errors are :class:`~metalctl.errors.InputError` naming the file, the field as a path
(``nodes[3].bmc.mac``) and the line: ``inventory/rack-a.yaml:14: nodes[3].bmc.mac: ...``.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import stat
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from metalctl.data import fields
from metalctl.errors import InputError, mask_url, one_line

LOG = logging.getLogger(__name__)

MAX_BYTES = 4 * 2**20  # far above any real profile, rule file or rack inventory
SCHEMAS = Path(__file__).resolve().parent / "schemas"

FieldPath = tuple[str | int, ...]


def field_name(path: Sequence[str | int]) -> str:
    """``("nodes", 3, "bmc")`` -> ``nodes[3].bmc``; the empty path is ``(top level)``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and remembers the line of every node."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML API
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem="YAML aliases (*name) are not accepted in metalctl data files",
                problem_mark=event.start_mark)
        return super().compose_node(parent, index)


# Dates stay text (as in JSON): a schema checks them with ``format: date``, so
# ``2027-02-30`` is a field error rather than a ValueError deep inside PyYAML.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _no_duplicate_keys(node: yaml.Node, path: FieldPath, label: str, depth: int = 0) -> None:
    """A key given twice in one mapping is an error (PyYAML keeps the last silently).

    Raises:
        InputError: ``file:line: field.key: duplicate key (first on line N)``.
    """
    if depth > 200:  # the constructor reports the nesting itself
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                ident = (key.tag, key.value)
                line = key.start_mark.line + 1
                if ident in seen:
                    raise InputError(label, field_name((*path, key.value)),
                                     f"duplicate key (first on line {seen[ident]}); "
                                     "YAML would keep only the last", line)
                seen[ident] = line
                _no_duplicate_keys(value, (*path, key.value), label, depth + 1)
            else:
                _no_duplicate_keys(value, path, label, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, (*path, i), label, depth + 1)


def _json_object(label: str) -> Any:  # noqa: ANN401 - json's object_pairs_hook
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InputError(label, one_line(str(key))[:80], "duplicate key; JSON "
                                                                  "would keep only the last")
            out[key] = value
        return out
    return hook


def _lines(node: yaml.Node, path: FieldPath, out: dict[FieldPath, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            _lines(value, (*path, name), out)
            out[(*path, name)] = key.start_mark.line + 1  # the key's line, not the value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def read_text(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """Read a UTF-8 text file with a size bound.

    Raises:
        InputError: missing, a directory, unreadable, too large, or not UTF-8.
    """
    label = str(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(label, "(file)", "is a directory; a file is expected")
        if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
            raise InputError(label, "(file)", "not a regular file")
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError(label, "(file)", "no such file") from None
    except PermissionError:
        raise InputError(label, "(file)", "permission denied") from None
    except OSError as exc:
        raise InputError(label, "(file)", f"cannot read: {exc.strerror}") from None
    if len(raw) > max_bytes:
        raise InputError(label, "(file)", f"larger than {max_bytes} bytes; refusing to parse")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(label, "(file)", f"not UTF-8 text (byte {exc.start})", line) from None


def parse(text: str, label: str) -> tuple[Any, dict[FieldPath, int]]:
    """Parse YAML (JSON is accepted as YAML's subset) into data and a line map.

    Raises:
        InputError: a syntax error or an alias, with its line.
    """
    if "\x00" in text:
        raise InputError(label, "(file)", "contains NUL bytes; not a text file")
    try:
        loader = _Loader(text)  # the reader refuses control characters right here
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise InputError(label, "(syntax)", str(reason), mark.line + 1 if mark else None) \
            from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _no_duplicate_keys(node, (), label)
        data = loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        # the tag is the file's own text: named by its line, never echoed
        mark = exc.problem_mark or exc.context_mark
        if "tag" not in (exc.problem or ""):
            raise InputError(label, "(syntax)", (exc.problem or "invalid YAML").strip(),
                             mark.line + 1 if mark else None) from None
        raise InputError(label, "(syntax)", "a YAML tag metalctl does not read (!tag); "
                                            "plain YAML only", mark.line + 1 if mark else None
                         ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = (exc.problem or "invalid YAML").strip()
        raise InputError(label, "(syntax)", reason, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise InputError(label, "(syntax)", str(exc).splitlines()[0]) from None
    except RecursionError:
        raise InputError(label, "(syntax)", "nested too deeply") from None
    finally:
        loader.dispose()
    lines: dict[FieldPath, int] = {}
    _lines(node, (), lines)
    return data, lines


# The formats metalctl's schemas use beyond the draft's own: a value that names a peer
# (a URL, host:port) is checked where the file is read, so a port above 65535 is a field
# error, not an exception where the value is used. Each raises ValueError(reason).
FORMATS = jsonschema.FormatChecker()
FORMATS.checkers = dict(jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers)


@FORMATS.checks("http-url", raises=ValueError)
def _http_url(value: object) -> bool:
    return _ok(fields.url_problem(value) if isinstance(value, str) else None)


@FORMATS.checks("install-url", raises=ValueError)
def _install_url(value: object) -> bool:
    schemes = ("http", "https", "ftp", "nfs", "file")
    return _ok(fields.url_problem(value, schemes) if isinstance(value, str) else None)


@FORMATS.checks("host-port", raises=ValueError)
def _host_port(value: object) -> bool:
    """``host:port``, ``[v6]:port`` or (a port is optional) ``host``."""
    if isinstance(value, str):
        fields.split_host_port(value.rpartition("@")[2])
    return True


OWN_FORMATS = ("http-url", "install-url", "host-port")  # their errors give the reason


def _ok(problem: str | None) -> bool:
    if problem:
        raise ValueError(problem)
    return True


def parse_json(text: str, label: str) -> Any:  # noqa: ANN401 - any JSON document
    """Parse JSON; a key given twice in an object is an error (json keeps the last).

    Raises:
        InputError: a syntax error with its line, a duplicate key, too deep a nesting.
    """
    try:
        return json.loads(text, object_pairs_hook=_json_object(label))
    except json.JSONDecodeError as exc:
        raise InputError(label, "(syntax)", exc.msg, exc.lineno) from None
    except RecursionError:
        raise InputError(label, "(syntax)", "nested too deeply") from None


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``metalctl/data/schemas/<name>.yaml`` (the one schema home)."""
    path = SCHEMAS / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def validate(data: Any, schema_: Mapping[str, Any] | str, label: str,
             lines: Mapping[FieldPath, int] | None = None, base: FieldPath = ()) -> None:
    """Validate ``data`` against a schema (a name in the schema home, or a dict).

    ``base`` prefixes field names when ``data`` is a part of a larger file.

    Raises:
        InputError: the most relevant violation, naming its field and line.
    """
    sch = schema(schema_) if isinstance(schema_, str) else schema_
    validator = jsonschema.Draft202012Validator(sch, format_checker=FORMATS)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    odd = _not_finite(data, ())
    if odd is not None:  # .nan passes every minimum and maximum; .inf every minimum
        path, reason = odd, "not a finite number (.nan, .inf)"
    elif error is None:
        return
    else:
        path, reason = _describe(error)
    full = (*base, *path)
    line = None
    if lines:
        for cut in range(len(full), -1, -1):
            if full[:cut] in lines:
                line = lines[full[:cut]]
                break
    raise InputError(label, field_name(full), reason, line)


def _not_finite(data: Any, path: FieldPath, depth: int = 0) -> FieldPath | None:  # noqa: ANN401
    """The first field holding NaN or an infinity (YAML ``.nan``/``.inf``, JSON ``NaN``)."""
    if isinstance(data, float) and not math.isfinite(data):
        return path
    if depth > 100:
        return None
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else ()
    for key, value in items:
        found = _not_finite(value, (*path, key), depth + 1)
        if found is not None:
            return found
    return None


def _describe(error: jsonschema.ValidationError) -> tuple[FieldPath, str]:
    """Field path and an operator's wording for one jsonschema error."""
    path: FieldPath = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list((error.schema.get("properties") or {}).keys())
        extra = [k for k in error.instance if k not in known]
        patterns = error.schema.get("patternProperties") or {}
        if extra and not patterns:
            key = str(extra[0])
            hint = difflib.get_close_matches(key, known, n=1)
            reason = "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else
                                      f"; known keys: {', '.join(sorted(known))}")
            return (*path, key), reason
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else "?"
        return (*path, missing), "missing (required)"
    if error.validator == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return path, f"expected {want}, got {_type_name(error.instance)}"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return path, f"{_short(error.instance)} is not one of {allowed}"
    if isinstance(error.schema, dict) and "x-error" in error.schema and \
            error.validator != "format":
        # a schema's own wording for a pattern an operator cannot be expected to read
        return path, f"{_short(error.instance)}: {error.schema['x-error']}"
    if error.validator == "format":
        shown = _short(mask_url(error.instance) if isinstance(error.instance, str)
                       else error.instance)
        if error.cause is not None and error.validator_value in OWN_FORMATS:
            return path, f"{shown}: {error.cause}"
        return path, f"not a {error.validator_value}: {shown}"
    if error.validator in ("maxItems", "minItems", "maxLength", "minLength", "pattern",
                           "minimum", "maximum"):
        return path, f"{_short(error.instance)}: {error.validator} {error.validator_value!r}"
    return path, _short_message(error)


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "nothing (null)"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    # containers are named, never quoted: they may hold a password beside the bad field
    if isinstance(value, (dict, list)):
        return _type_name(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _short_message(error: jsonschema.ValidationError) -> str:
    # jsonschema's message repeats the instance: the value may be a password (a
    # credentials file's oneOf) or a line of a file that is not what it should be
    # (never echoed); say what is wrong instead
    if error.validator in ("oneOf", "anyOf"):
        several = "valid under each" in str(error.message)
        return (f"{_type_name(error.instance)} matching "
                f"{'more than one' if several else 'none'} of the allowed shapes")
    if error.validator == "not":
        return f"{_type_name(error.instance)} of a shape that is not allowed here"
    value = error.validator_value
    shown = f" {value!r}" if isinstance(value, (int, float, str, bool)) else ""
    return f"{_type_name(error.instance)} failing {error.validator}{shown}"


def load(path: Path | str, schema_: Mapping[str, Any] | str | None = None, *,
         max_bytes: int = MAX_BYTES) -> Any:
    """Read, parse and validate one data file.

    Args:
        path: the file; ``.json`` files are parsed as JSON, anything else as YAML.
        schema_: a schema name in the schema home, an inline schema, or None.
        max_bytes: refuse larger files before parsing them.

    Returns:
        The parsed data (``None`` for an empty YAML file).

    Raises:
        InputError: naming the file, the field and the line.
    """
    data, _ = load_with_lines(path, schema_, max_bytes=max_bytes)
    return data


def load_with_lines(path: Path | str, schema_: Mapping[str, Any] | str | None = None, *,
                    max_bytes: int = MAX_BYTES) -> tuple[Any, dict[FieldPath, int]]:
    """:func:`load`, also returning the line of each field path (for later errors).

    Raises:
        InputError: naming the file, the field and the line.
    """
    p = Path(path)
    label = str(path)
    text = read_text(p, max_bytes=max_bytes)
    if p.suffix == ".json":
        data = parse_json(text, label)
        lines: dict[FieldPath, int] = {}
    else:
        data, lines = parse(text, label)
    if schema_ is not None:
        validate(data, schema_, label, lines)
    return data, lines
