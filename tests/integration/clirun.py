"""The metalctl CLI run as an operator runs it, and the inputs the CLI tests share.

A helper module: test modules import from here, never from each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def run(args: list[str], env: dict[str, str] | None = None, check_rc: int | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m metalctl ARGS`` with ``env`` over this process's environment;
    ``check_rc``: the exit code it must end with (stdout and stderr shown otherwise)."""
    proc = subprocess.run([sys.executable, "-m", "metalctl", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


def lab_env(lab: Any, tmp_path: Path) -> dict[str, str]:
    """The lab's environment with a store of this test's own and a wide table."""
    env = lab.__class__.env(lab)
    env["METALCTL_STORE"] = str(tmp_path / "store.db")
    env["COLUMNS"] = "200"
    return env


def ipmi_nodes_file(path: Path, name: str, address: str, password: str,
                    kg_key: str | None = None, mac: str | None = None) -> Path:
    """An ``enroll --from-file`` document of one IPMI node (credentials in the file)."""
    info = {"ipmi_address": address, "ipmi_username": "admin", "ipmi_password": password}
    if kg_key is not None:
        info["ipmi_kg_key"] = kg_key
    node: dict[str, Any] = {"name": name, "driver": "ipmi", "driver_info": info}
    if mac is not None:
        node["ports"] = [{"address": mac}]
    path.write_text(yaml.safe_dump({"nodes": [node]}))
    return path
