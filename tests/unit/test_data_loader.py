"""The one data loader: bounds, encodings, aliases, schema errors with field and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metalctl.data import load
from metalctl.errors import InputError

SCHEMA = {"type": "object", "additionalProperties": False,
          "properties": {"hosts": {"type": "array", "items": {
              "type": "object", "additionalProperties": False, "required": ["name"],
              "properties": {"name": {"type": "string"}, "mgmt_address": {"type": "string"},
                             "port": {"type": "integer", "minimum": 1, "maximum": 65535}}}}}}


def write(tmp_path: Path, text: str | bytes, name: str = "hosts.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def refused(path: Path, schema: dict | str | None = None, **kw) -> InputError:
    """The input error ``load`` raises for ``path`` (fails when it loads)."""
    with pytest.raises(InputError) as exc:
        load(path, schema, **kw)
    return exc.value


def test_misspelled_key_names_file_field_line_and_suggestion(tmp_path):
    p = write(tmp_path, "hosts:\n  - name: a\n  - name: b\n    mgmt_adress: 10.0.0.1\n")
    err = refused(p, SCHEMA)
    assert err.field == "hosts[1].mgmt_adress"
    assert err.line == 4
    assert "did you mean 'mgmt_address'" in str(err)
    assert str(err).startswith(f"{p}:4: hosts[1].mgmt_adress: unknown key")


def test_wrong_type_at_depth(tmp_path):
    p = write(tmp_path, "hosts:\n  - name: a\n    port: ssh\n")
    err = refused(p, SCHEMA)
    assert (err.field, err.line) == ("hosts[0].port", 3)
    assert "expected integer, got a string" in err.reason


def test_missing_required_field(tmp_path):
    err = refused(write(tmp_path, "hosts:\n  - port: 22\n"), SCHEMA)
    assert err.field == "hosts[0].name"


@pytest.mark.parametrize(("content", "reason"), [
    (b"\xff\xfe\x00h\x00o", "not UTF-8"),
    (b"hosts: [\x00]", "NUL"),
    ("a: &x [1, 2]\nb: [*x, *x]\n", "aliases"),
    ("hosts: [\n", "(syntax)"),
])
def test_untrusted_bytes_are_input_errors(tmp_path, content, reason):
    err = refused(write(tmp_path, content))
    assert reason in str(err)


def test_directory_missing_file_and_size_bound(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "absent.yaml")
    with pytest.raises(InputError, match="larger than 10 bytes"):
        load(write(tmp_path, "a: " + "x" * 100), max_bytes=10)


def test_json_errors_carry_the_line(tmp_path):
    err = refused(write(tmp_path, '{\n  "a": 1,\n  oops\n}', "x.json"))
    assert err.line == 3


def test_dates_stay_text_and_impossible_dates_are_field_errors(tmp_path):
    p = write(tmp_path, "d: 2027-06-30\n", "d.yaml")
    assert load(p) == {"d": "2027-06-30"}
    schema = {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}
    bad = write(tmp_path, "d: 2027-02-30\n", "bad.yaml")
    err = refused(bad, schema)
    assert (err.field, err.line) == ("d", 1)
    assert "not a date" in err.reason


def test_control_characters_and_fifos_are_input_errors(tmp_path):
    err = refused(write(tmp_path, "a: \x1f\n", "c.yaml"))
    assert err.field == "(syntax)"
    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load(fifo)


def test_errors_never_quote_a_container(tmp_path):
    """A mapping beside the bad field may hold a password: name its type, never print it."""
    p = write(tmp_path, "n: [{password: hunter2-x, port: 1}, 2]\n", "n.yaml")
    schema = {"type": "object", "properties": {"n": {"type": "array", "maxItems": 1}}}
    err = refused(p, schema)
    assert err.field == "n"
    assert "hunter2" not in str(err)


def test_mgmt_address_must_be_an_ip(tmp_path):
    p = write(tmp_path, "hosts:\n  - {name: c1, ssh: c1.example, mgmt_address: c1.example}\n")
    err = refused(p, "hosts")
    assert err.field == "hosts[0].mgmt_address"
