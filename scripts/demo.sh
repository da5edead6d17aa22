#!/usr/bin/env bash
# The main job on the embedded default: bring up the emulated rack on 127.10.0.0/16,
# discover it, enroll it into the lab's Ironic, and print the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=$PWD/.venv/bin:$PATH
export METALCTL_LAB_DIR=${METALCTL_LAB_DIR:-$PWD/.lab/demo}
metalctl lab up --no-install
eval "$(metalctl lab env)"
ranges=$(metalctl lab status -o json | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)[0]["ranges"]))')
metalctl discover $ranges --credentials lab   # dead addresses are no-bmc, not failures
metalctl enroll
metalctl nodes
echo "lab still running; stop it with: METALCTL_LAB_DIR=$METALCTL_LAB_DIR .venv/bin/metalctl lab down" >&2
