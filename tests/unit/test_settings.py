"""Every environment variable metalctl reads is in :mod:`metalctl.settings` (one table,
listed by ``--help``); code reads the environment nowhere else, but for the variables
whose names come from input (credential sets, a site's ``root_password.env``, a rack
file's ``${VAR}``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from metalctl import settings
from metalctl.cli.main import parser

PKG = Path(__file__).resolve().parents[2] / "metalctl"
#: where a variable's *name* comes from input, not from code
NAMED_BY_INPUT = {"settings.py", "credentials.py", "run/rackfile.py", "provision/kickstart.py"}


def _reads_environment(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                isinstance(node.value, ast.Name) and node.value.id == "os":
            return True
    return False


def test_only_settings_reads_the_environment():
    readers = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if _reads_environment(p)}
    assert readers <= NAMED_BY_INPUT, readers - NAMED_BY_INPUT
    assert "settings.py" in readers  # the scan sees real reads


def test_a_variable_wins_over_its_default_and_an_unknown_name_is_a_bug(monkeypatch,
                                                                       tmp_path):
    monkeypatch.delenv("METALCTL_BOOT_STATE", raising=False)
    assert settings.path("METALCTL_BOOT_STATE") == \
        Path.home() / ".local" / "state" / "metalctl" / "boot"
    assert not settings.is_set("METALCTL_BOOT_STATE")
    monkeypatch.setenv("METALCTL_BOOT_STATE", str(tmp_path))
    assert settings.path("METALCTL_BOOT_STATE") == tmp_path
    monkeypatch.delenv("METALCTL_IRONIC_URL", raising=False)
    assert settings.get("METALCTL_IRONIC_URL") is None
    with pytest.raises(KeyError):
        settings.get("METALCTL_NO_SUCH_THING")


def test_help_lists_every_variable():
    text = parser().format_help()
    for name in settings.VARS:
        assert name in text
