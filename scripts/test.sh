#!/usr/bin/env bash
# The test command: installs what is needed, lints, then runs unit and integration tests
# (integration tests start their own real peers on 127.20.0.0/16 and stop them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check metalctl lab tests bench
# every tier (bare `pytest` is the fast one: tests/conftest.py)
exec .venv/bin/python -m pytest -q tests "$@"
