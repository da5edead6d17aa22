#!/usr/bin/env bash
# The main job on the embedded default: bring up the emulated rack on 127.10.0.0/16,
# discover it, enroll it into the lab's Ironic, derive an NFV plan and bring the
# libvirt-backed nodes' BIOS to the compute profile, harden two SSH hosts and audit them
# and the BMCs, and print the summary.
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
# harden + audit: SSH hosts with their own /etc in network namespaces (10.200.0.0/24)
metalctl lab hosts-up --hosts 2
hosts=$METALCTL_LAB_DIR/hosts
ssh_opts=(--inventory "$hosts/inventory.yaml" --ssh-key "$hosts/ssh/id_ed25519" --known-hosts "$hosts/ssh/known_hosts")
export METALCTL_PKI_DIR=$METALCTL_LAB_DIR/pki
metalctl pki init
metalctl harden "${ssh_opts[@]}" --check > "$METALCTL_LAB_DIR/harden-check.diff" || true   # exit 2: changes planned
metalctl harden "${ssh_opts[@]}"
metalctl audit "${ssh_opts[@]}" --bmc --fail-on none --html "$METALCTL_LAB_DIR/audit.html" \
  --junit "$METALCTL_LAB_DIR/audit.xml" --sarif "$METALCTL_LAB_DIR/audit.sarif" > "$METALCTL_LAB_DIR/audit.txt"
echo "audit report: $METALCTL_LAB_DIR/audit.html (table: audit.txt, JUnit, SARIF beside it)" >&2
metalctl nodes
echo "lab still running; stop it with: METALCTL_LAB_DIR=$METALCTL_LAB_DIR .venv/bin/metalctl lab down" >&2
