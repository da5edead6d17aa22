#!/usr/bin/env bash
# The main job on the embedded default: bring up the emulated rack on 127.10.0.0/16,
# discover it, enroll it into the lab's Ironic, derive an NFV plan and bring the
# libvirt-backed nodes' BIOS to the compute profile, and print the summary.
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
# profile: the plan for a recorded 2-socket NFV server, then BIOS through the lab BMCs
metalctl profile derive r750-sample -p nfv-dpdk --facts tests/samples/facts/r750-2s-48c-512g.txt
kvm=$(metalctl nodes -o json | python3 -c 'import json,sys; print(" ".join(n["name"] for n in json.load(sys.stdin) if n["record"]["manufacturer"] == "Sushy Emulator" and n["record"]["cpu"]["sockets"]))')
metalctl profile diff $kvm -p compute-general || true   # exit 2: drift before apply
metalctl profile apply $kvm -p compute-general
metalctl nodes
echo "lab still running; stop it with: METALCTL_LAB_DIR=$METALCTL_LAB_DIR .venv/bin/metalctl lab down" >&2
