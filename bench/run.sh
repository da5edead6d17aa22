#!/usr/bin/env bash
# One command: install what is needed, run the benchmarks, print ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python bench/run.py
