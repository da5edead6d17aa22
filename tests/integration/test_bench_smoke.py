"""Each benchmark in bench/ started on its smallest size, so a broken bench fails CI
(issue 18: ``bench/audit.py`` died on a NameError and nothing noticed).

The figures are not asserted (they live in docs/benchmarks.md, measured by
``bash bench/run.sh``); each script must run to its end and print its summary. The bench
racks' Ironic uses sqlite here: PostgreSQL is the bench's own install (bench/run.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str, env: dict[str, str] | None = None,
          timeout_s: float = 600) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                          capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
                          env={**os.environ, "METALCTL_BENCH_SMOKE": "1",
                               "METALCTL_BENCH_DB": "sqlite", **(env or {})}, check=False)
    assert proc.returncode == 0, f"bench/{script}: {proc.stderr[-3000:]}"
    return proc.stdout


def test_bench_discovery_and_enrollment(tmp_path: Path) -> None:
    out = bench("run.py", env={"METALCTL_BENCH_DIR": str(tmp_path / "lab")})
    assert "discovery" in out


def test_bench_pipeline() -> None:
    assert "nodes" in bench("pipeline.py")


def test_bench_audit() -> None:
    assert "audit fleet: 2 hosts" in bench("audit.py", env={"METALCTL_BENCH_AUDIT_HOSTS": "2"})


def test_bench_bootservice() -> None:
    assert "burst (20 nodes at once)" in bench("bootservice.py", "--nodes", "20",
                                               "--window-s", "1")


def test_bench_handoff() -> None:
    assert bench("handoff.py", env={"METALCTL_BENCH_HANDOFF_HOSTS": "1"})


def test_bench_provision_lab() -> None:
    assert "two machines discovered" in bench("provision_lab.py", "--smoke", "--no-nova")
