"""The lab is not the product: metalctl never imports it, and its wheel leaves it out.

The emulated rack (``lab/metalctl_lab``: BMC emulators, Ironic and Nova launchers, image
builders) is a distribution of its own that adds ``metalctl lab`` through the
``metalctl.verbs`` entry point; a site installs metalctl without it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

from metalctl.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_product_module_imports_the_lab():
    offenders = sorted(str(p.relative_to(REPO)) for p in (REPO / "metalctl").rglob("*.py")
                       if any(n == "metalctl_lab" or n.startswith("metalctl_lab.")
                              for n in _imports(p)))
    assert offenders == []
    assert not (REPO / "metalctl" / "lab").exists()


def test_the_metalctl_wheel_has_no_lab_and_the_lab_adds_its_verb():
    product = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert product["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["metalctl"]
    lab = tomllib.loads((REPO / "lab" / "pyproject.toml").read_text())
    assert lab["project"]["entry-points"][cli_main.VERB_PLUGINS] == {
        "lab": "metalctl_lab.cli:register"}


def test_without_the_lab_metalctl_has_no_lab_verb(monkeypatch):
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])
    verbs = cli_main.parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    assert "lab" not in verbs
    assert {"discover", "enroll", "run", "handoff"} <= set(verbs)
