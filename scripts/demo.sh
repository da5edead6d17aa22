#!/usr/bin/env bash
# The main job on the embedded default, the emulated rack: bring it up on 127.10.0.0/16
# with a provisioning network (10.203.0.0/24 in a namespace), then one `metalctl run`:
# discover the libvirt machines' BMC, enroll them in the lab's Ironic, profile them,
# PXE-install them for real (QEMU under TCG, the stand-in installer), harden and audit
# them over SSH with the host keys their install delivered. Then hand two SSH test hosts
# running nova-compute to the lab's Nova, each proven with a canary guest (the lab machines
# are compute-ready, 1.5 GiB with libvirt, QEMU and the Nova disk; their own hand-off in
# the run is issue 21).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=$PWD/.venv/bin:$PATH
export METALCTL_LAB_DIR=${METALCTL_LAB_DIR:-$PWD/.lab/demo}
metalctl lab up --no-install --provnet "${METALCTL_DEMO_PROVNET:-203}"
eval "$(metalctl lab env)"
export METALCTL_PKI_DIR=$METALCTL_LAB_DIR/pki
metalctl pki init
# the whole rack as discovery sees it (fake-driver and IPMI BMCs, dead addresses: no-bmc)
ranges=$(metalctl lab status -o json | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)[0]["ranges"]))')
metalctl discover $ranges --credentials lab -o table >/dev/null
# the pipeline, per node, resumable (run it again: nothing is repeated)
metalctl run inventory/rack.lab.yaml --report-dir "$METALCTL_LAB_DIR/reports"
# hand-off: harden + audit two SSH test hosts, then hand them to the lab's Nova
metalctl lab nova-up --hosts 2
hosts=$METALCTL_LAB_DIR/hosts
ssh_opts=(--inventory "$hosts/inventory.yaml" --ssh-key "$hosts/ssh/id_ed25519" --known-hosts "$hosts/ssh/known_hosts")
metalctl harden "${ssh_opts[@]}"
metalctl audit "${ssh_opts[@]}" --waivers hardening/waivers.lab.yaml --fail-on none \
  --html "$METALCTL_LAB_DIR/audit.html" > "$METALCTL_LAB_DIR/audit.txt"
# one host at a time: the lab's Nova keeps its databases in sqlite, which two canaries
# at once (with the rack's two TCG machines running) locked ("database is locked")
metalctl handoff "${ssh_opts[@]}" --site "$METALCTL_LAB_DIR/nova-site.yaml" --concurrency 1
metalctl nodes
echo "run report: $(ls -t "$METALCTL_LAB_DIR"/reports/*.html | head -1); audit: $METALCTL_LAB_DIR/audit.html" >&2
echo "lab still running; stop it with: METALCTL_LAB_DIR=$METALCTL_LAB_DIR .venv/bin/metalctl lab down" >&2
