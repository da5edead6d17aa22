"""Every lifecycle transition has exactly one writer: the stage that did the work
(``TRANSITION_OWNERS``). Read from the source, as ``test_boundaries`` reads imports: a
``set_state``/``add_node`` call anywhere in the package names its state literally, and
only the owner's package names it. The scheduler, the CLI and the lab write none."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import metalctl
from metalctl.model.node import TRANSITION_OWNERS, Lifecycle

PACKAGE = Path(metalctl.__file__).parent


def writers(package: Path = PACKAGE) -> tuple[dict[Lifecycle, set[str]], list[str]]:
    found: dict[Lifecycle, set[str]] = defaultdict(set)
    dynamic = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        owner = ".".join(rel.parts[:2])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            if name == "save_discovered":
                found[Lifecycle.DISCOVERED].add(owner)
            elif name in ("set_state", "add_node") and len(node.args) >= 2:
                arg = node.args[1]
                if (isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name)
                        and arg.value.id == "Lifecycle"):
                    found[Lifecycle[arg.attr]].add(owner)
                else:
                    dynamic.append(f"{rel}:{node.lineno}")
    return found, dynamic


def test_each_transition_has_exactly_its_owner_as_writer() -> None:
    found, dynamic = writers()
    assert not dynamic, f"states written from a variable (name the state): {dynamic}"
    for state in Lifecycle:
        assert found.get(state) == {TRANSITION_OWNERS[state]}, (state, found.get(state))


def test_the_scan_sees_a_second_writer_and_a_dynamic_one(tmp_path: Path) -> None:
    # the checker itself, on a package of two modules
    for stage, body in (("harden", "store.set_state(key, Lifecycle.HARDENED)"),
                        ("run", "store.set_state(key, Lifecycle.HARDENED)\n"
                                "    store.set_state(key, STATE_OF[stage])")):
        (tmp_path / "metalctl" / stage).mkdir(parents=True)
        (tmp_path / "metalctl" / stage / "x.py").write_text(f"def f(store, key):\n    {body}\n")
    found, dynamic = writers(tmp_path / "metalctl")
    assert found[Lifecycle.HARDENED] == {"metalctl.harden", "metalctl.run"}
    assert dynamic == ["metalctl/run/x:3"]
