"""The house rules of the package layout, read from the import statements themselves.

* A stage package never imports another stage; only ``run`` drives stages.
* Foundations (everything that is neither a stage, ``run``, ``cli`` nor ``lab``) import
  no stage, no ``run``, no ``cli`` and no ``lab``.
* Peer libraries stay behind their boundary modules: sushy and pyghmi (and raw HTTP to
  a BMC) in ``metalctl/bmc/``, ironicclient/keystoneauth/openstacksdk in
  ``metalctl/ironic.py``, paramiko/fabric in ``metalctl/ssh.py``.
* The lab (``lab/metalctl_lab``, a distribution of its own) has no import circle; that
  metalctl never imports it is ``test_lab_boundary``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "metalctl"
LAB = REPO / "lab" / "metalctl_lab"
STAGES = ("discover", "enroll", "profile", "provision", "harden", "audit", "handoff")
#: third-party module -> the only places (path prefixes in the repository) that may import it
BOUNDARIES = {
    "sushy": ("metalctl/bmc/",),
    "pyghmi": ("metalctl/bmc/", "lab/metalctl_lab/ipmi_bmc.py"),
    "requests": ("metalctl/bmc/", "lab/metalctl_lab/"),
    "urllib3": ("metalctl/bmc/",),
    "ironicclient": ("metalctl/ironic.py",),
    "keystoneauth1": ("metalctl/ironic.py", "metalctl/cloud.py"),
    "openstack": ("metalctl/ironic.py", "metalctl/cloud.py"),
    "paramiko": ("metalctl/ssh.py",),
    "fabric": ("metalctl/ssh.py",),
    "invoke": ("metalctl/ssh.py",),
    "h11": ("metalctl/provision/bootserver.py",),
}


#: scripts shipped as package data and run by another interpreter (never imported):
#: the nova.conf checker runs in the Nova venv, next to nova's own libraries
FOREIGN_SCRIPTS = {"handoff/validate_nova_conf.py"}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted([*PKG.rglob("*.py"), *LAB.rglob("*.py")]):
        if path.is_relative_to(PKG) and str(path.relative_to(PKG)) in FOREIGN_SCRIPTS:
            continue
        rel = path.relative_to(PKG.parent if path.is_relative_to(PKG) else LAB.parent
                               ).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = modules()
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def area(module: str) -> str:
    """``metalctl.profile.derive`` -> ``profile``; foundations -> ``foundation``."""
    parts = module.split(".")
    if parts[0] == "metalctl_lab":
        return "lab"
    top = parts[1] if len(parts) > 1 else ""
    if top == "__main__":
        return "cli"
    if top in (*STAGES, "run", "cli", "lab"):
        return top
    return "foundation"


def internal(names: set[str]) -> set[str]:
    return {n for n in names if n in MODULES}


def test_no_stage_imports_another_stage():
    bad = []
    for mod, names in GRAPH.items():
        mine = area(mod)
        if mine not in STAGES:
            continue
        for dep in internal(names):
            theirs = area(dep)
            if theirs != mine and theirs in (*STAGES, "run", "cli", "lab"):
                bad.append(f"{mod} imports {dep}")
    assert not bad, "\n".join(bad)


def test_foundations_import_no_stage_cli_or_lab():
    bad = [f"{mod} imports {dep}" for mod, names in GRAPH.items()
           if area(mod) == "foundation"
           for dep in internal(names) if area(dep) != "foundation"]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("library", sorted(BOUNDARIES))
def test_peer_library_stays_behind_its_boundary(library):
    allowed = BOUNDARIES[library]
    bad = []
    for mod, names in GRAPH.items():
        rel = str(MODULES[mod].relative_to(REPO))
        if any(n == library or n.startswith(library + ".") for n in names) and \
                not rel.startswith(allowed):
            bad.append(rel)
    assert not bad, f"{library} imported outside {allowed}: {bad}"


def test_lab_has_no_import_circle():
    lab = {m: internal(GRAPH[m]) & {n for n in MODULES if area(n) == "lab"}
           for m in MODULES if area(m) == "lab"}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for dep in lab.get(start, ()):
            if dep == goal or (dep not in seen and reaches(dep, goal, seen | {dep})):
                return True
        return False

    circles = sorted(m for m in lab if reaches(m, m, {m}))
    assert not circles, f"import circle through {circles}"


def test_the_checker_sees_real_imports():
    # a boundary test that finds nothing proves nothing: these edges must be visible
    assert "metalctl.bmc.redfish" in GRAPH
    assert "sushy" in GRAPH["metalctl.bmc.redfish"]
    assert "metalctl_lab.rack" in GRAPH  # the lab's modules are scanned too
    assert "metalctl_lab.spec" in internal(GRAPH["metalctl_lab.rack"])
    assert area("metalctl.profile.derive") == "profile"
    assert "metalctl.discover.scan" in internal(GRAPH["metalctl.discover"])
