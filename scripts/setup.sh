#!/usr/bin/env bash
# Installs everything metalctl, its tests and its lab need on a fresh Debian 12 machine:
#   Debian packages (ipmitool: Ironic's ipmi driver; libvirt + qemu: the lab's libvirt BMC;
#   openssh-server: real sshd test hosts; debootstrap: root filesystems of SSH test hosts;
#   systemd-container: nspawn boots systemd in the test hosts that need it),
#   .venv with metalctl[test] (editable), and the peers venv (Ironic, sushy-tools).
# Idempotent: a second run only checks. Needs root for apt-get (skipped when present).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need_apt=()
command -v ipmitool >/dev/null || need_apt+=(ipmitool)
[ -x /usr/sbin/libvirtd ] || need_apt+=(libvirt-daemon-system)
command -v virsh >/dev/null || need_apt+=(libvirt-clients)
command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
command -v qemu-img >/dev/null || need_apt+=(qemu-utils)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
dpkg -s libvirt-dev >/dev/null 2>&1 || need_apt+=(libvirt-dev)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# the stand-in installer's tool set (lab/metalctl_lab/installer.py copies them into its initramfs)
command -v busybox >/dev/null || need_apt+=(busybox-static)
command -v sfdisk >/dev/null || need_apt+=(fdisk)
command -v extlinux >/dev/null || need_apt+=(extlinux)
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || need_apt+=(syslinux-common)
command -v cpio >/dev/null || need_apt+=(cpio)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
[ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)  # the lab's Nova message bus   # DHCP/TFTP of the boot service (never home-made)
# --- the real consumers of metalctl's reports, run by the tests (issue 24) ---------------
# oscap validates and renders the XCCDF results; headless Chromium renders the run report
command -v oscap >/dev/null || need_apt+=(openscap-scanner)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.metalctl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ lab/pyproject.toml -nt "$stamp" ]; then
  # metalctl, and the lab beside it (its own distribution: `metalctl lab`, lab/README.md)
  echo "setup: pip install -e .[test] -e lab into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" -e lab 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import metalctl, metalctl_lab, sushy, pyghmi, ironicclient" 
  touch "$stamp"
fi

# Microsoft's SARIF Multitool (validate with GitHub's rules), from npm into a cache folder,
# not globally; the tests find it there ($METALCTL_SARIF_TOOLS). npm does not run the
# platform package's postinstall (chmod) under its install-script policy: done here.
SARIF_TOOLS=${METALCTL_SARIF_TOOLS:-$HOME/.cache/metalctl/sarif-multitool}
SARIF_VERSION=5.7.0
if [ ! -x "$SARIF_TOOLS/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool" ] \
    || ! grep -q "\"version\": \"$SARIF_VERSION\"" \
        "$SARIF_TOOLS/node_modules/@microsoft/sarif-multitool/package.json" 2>/dev/null; then
  echo "setup: npm install @microsoft/sarif-multitool@$SARIF_VERSION into $SARIF_TOOLS" >&2
  mkdir -p "$SARIF_TOOLS"
  npm install --prefix "$SARIF_TOOLS" --no-audit --no-fund --loglevel=error \
    "@microsoft/sarif-multitool@$SARIF_VERSION" >/dev/null
  chmod u+x "$SARIF_TOOLS/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool"
fi
# (ansible-core, for ansible-inventory, comes with the test extras in pyproject.toml)

export METALCTL_PEERS_VENV=${METALCTL_PEERS_VENV:-$HOME/.cache/metalctl/peers}
# quick when the venv already holds the pinned requirements (a stamp file records them)
echo "setup: peers venv $METALCTL_PEERS_VENV (Ironic, sushy-tools, libvirt-python)" >&2
.venv/bin/python -c "from metalctl_lab import peers; peers.ensure_venv()"
echo "setup: Nova venv ${METALCTL_NOVA_VENV:-$HOME/.cache/metalctl/nova} (nova 34.0.0, placement 16)" >&2
.venv/bin/python -c "from metalctl_lab import nova_venv; nova_venv.ensure()"
echo "setup: ok ($ROOT/.venv, peers in $METALCTL_PEERS_VENV)" >&2
