#!/usr/bin/env bash
# The main job on the embedded default, the emulated rack: bring it up on 127.10.0.0/16
# with a provisioning network (10.203.0.0/24 in a namespace) and the lab's Nova on it,
# then one `metalctl run` takes the rack's libvirt machines from power-off to Nova
# compute nodes: discover their BMC, enroll them in the lab's Ironic, profile them,
# PXE-install them for real (QEMU under TCG, the stand-in installer), harden and audit
# them over SSH with the host keys their install delivered, then hand them to the lab's
# Nova: nova.conf from each machine's own plan, nova-compute registered, Placement's
# inventories checked against the plan, and a canary guest started on each. Last, libvirt
# TLS between the two machines with the site's certificates, refused with another CA's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=$PWD/.venv/bin:$PATH
export METALCTL_LAB_DIR=${METALCTL_LAB_DIR:-$PWD/.lab/demo}
metalctl lab up --no-install --nova --provnet "${METALCTL_DEMO_PROVNET:-203}"
eval "$(metalctl lab env)"
export METALCTL_PKI_DIR=$METALCTL_LAB_DIR/pki
metalctl pki init
# the whole rack as discovery sees it (fake-driver and IPMI BMCs, dead addresses: no-bmc)
ranges=$(metalctl lab status -o json | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)[0]["ranges"]))')
metalctl discover $ranges --credentials lab -o table >/dev/null
# the pipeline, per node, resumable (run it again: nothing is repeated)
metalctl run inventory/rack.lab.yaml --report-dir "$METALCTL_LAB_DIR/reports"
metalctl nodes
# libvirt TLS between the two handed-off machines, both ways (live migration's channel),
# and refused with a client certificate from another CA
hosts=$(metalctl nodes -o ansible | python3 -c 'import sys, yaml
inv = yaml.safe_load(sys.stdin)["all"]
print(" ".join(inv["hosts"][h]["ansible_host"] for h in inv["children"]["state_handed_off"]["hosts"]))')
read -r a b <<<"$hosts"
for pair in "$a $b" "$b $a"; do
  # shellcheck disable=SC2086 # two addresses
  bash scripts/libvirt_tls_check.sh "$METALCTL_LAB_DIR/operator/id_ed25519" \
    "$METALCTL_LAB_DIR/known_hosts" $pair
done
echo "run report: $(ls -t "$METALCTL_LAB_DIR"/reports/*.html | head -1)" >&2
echo "lab still running; stop it with: METALCTL_LAB_DIR=$METALCTL_LAB_DIR .venv/bin/metalctl lab down" >&2
