#!/usr/bin/env bash
# One command: install what is needed, run the benchmarks, print ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the bench rack's Ironic runs on PostgreSQL, as production Ironic does
[ -d /usr/lib/postgresql ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
.venv/bin/python bench/run.py
.venv/bin/python bench/pipeline.py
.venv/bin/python bench/handoff.py
# two lab machines at once against one, whole pipeline (real PXE installs: ~20 min)
.venv/bin/python bench/provision_lab.py
exec .venv/bin/python bench/audit.py
