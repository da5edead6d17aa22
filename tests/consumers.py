"""The real programs that read metalctl's reports, as the tests run them.

Each helper runs the consumer (or its published schema) on a document and returns what it
said; a missing consumer fails the test with how to install it (scripts/setup.sh), never
skips it: an output is done when the program that reads it accepts it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import xmlschema

SCHEMAS = Path(__file__).parent / "schemas"
#: the JUnit consumers' schemas (header comments say where each came from)
JUNIT_SCHEMAS = ("jenkins-xunit-junit-10.xsd", "ant-junit.xsd")
GITHUB_POLICY = SCHEMAS / "sarif-multitool-github.config.xml"


def validate_junit(text: str) -> None:
    """Validate JUnit XML against Jenkins xUnit's junit-10.xsd and Ant's JUnit schema."""
    for name in JUNIT_SCHEMAS:
        xmlschema.XMLSchema(str(SCHEMAS / name)).validate(text)


def tool(name: str) -> str:
    """Return the path of a consumer program on PATH, or fail saying how to get it."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: run scripts/setup.sh (it installs the report consumers)")
    return path


def sarif_multitool() -> Path:
    """Return Microsoft's SARIF Multitool binary as scripts/setup.sh installs it."""
    base = Path(os.environ.get("METALCTL_SARIF_TOOLS",
                               Path.home() / ".cache/metalctl/sarif-multitool"))
    found = sorted(base.glob("node_modules/@microsoft/sarif-multitool-*/Sarif.Multitool"))
    if not found:
        pytest.fail(f"SARIF Multitool not in {base}: run scripts/setup.sh")
    return found[0]


def sarif_github_findings(log: Path) -> list[dict]:
    """Run ``Sarif.Multitool validate`` with GitHub's policy on ``log``; return its findings.

    The GH rules are off unless a policy enables them (``--config``) and their kind is
    selected (``--rule-kind Gh;Sarif``); the tool exits 0 with errors, so its own SARIF
    output is read. Each finding: ``{"rule", "level", "message"}``.
    """
    out = log.with_suffix(".validation.sarif")
    out.unlink(missing_ok=True)
    proc = subprocess.run([str(sarif_multitool()), "validate", "--rule-kind", "Gh;Sarif",
                           "--config", str(GITHUB_POLICY), "-o", str(out), str(log)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), proc.stdout + proc.stderr
    run = json.loads(out.read_text())["runs"][0]
    assert run["invocations"][0]["executionSuccessful"], proc.stdout
    return [{"rule": r["ruleId"], "level": r.get("level", "warning"),
             "message": r["message"].get("text") or str(r["message"].get("arguments"))}
            for r in run.get("results", [])]


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a consumer; return the finished process (its output in text)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
