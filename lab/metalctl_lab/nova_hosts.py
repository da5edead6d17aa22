"""nova-compute on the lab's SSH test hosts, against each host's own libvirtd.

The hosts (:mod:`metalctl_lab.hosts`) are Debian bookworm root filesystems without
network access, so nova is not installed into them. Instead, what a distribution
package would provide is put in place by the lab:

* the Nova venv (:mod:`metalctl_lab.nova_venv`) and the Python it was made from are
  bind-mounted **read-only** into the host's mount namespace at the same paths (the
  venv's scripts name their interpreter by absolute path);
* QEMU comes from the image layer ``nova`` (``qemu-system-x86`` on top of ``kvm``):
  nova's libvirt driver refuses a libvirt without a QEMU to report; ``qemu-img``
  (Debian's ``qemu-utils``, which the layer lacks) is this machine's, bind-mounted
  read-only: nova-compute runs it on every image it boots (the layer has its libraries);
* ``/etc/init.d/nova-compute`` (the Debian service name) runs the venv's nova-compute
  with ``/etc/nova/nova.conf`` and logs to ``/var/log/nova/nova-compute.log``, as
  Debian's package does; ``metalctl handoff`` starts it like any other sysv service;
* virtlogd and libvirtd are started (the hosts have no init system to start them), and
  QEMU's capabilities probed once, as on a host where libvirtd has run since boot;
* each host's libvirtd gets a ``host_uuid`` of its own in ``libvirtd.conf``: libvirt
  takes the host UUID from SMBIOS (``/sys/class/dmi/id/product_uuid``), which every
  host shares with this machine, and refuses a live migration between two hosts with
  the same one ("Attempt to migrate guest to the same host"), as two real machines
  never have;
* a hugetlbfs is mounted at ``/dev/hugepages`` in the host's mount namespace and named
  by qemu.conf's ``hugetlbfs_mount`` (this machine mounts none, and a distribution's
  systemd would): hugepage-backed guests, the canary's, need it. The pages themselves
  are this machine's (the hosts share its kernel): :func:`reserve_hugepages`. QEMU runs
  without libvirt's per-domain mount namespace (``namespaces = []``): the one it builds
  lacks the host's devpts, and QEMU could not open its serial console's PTY.

The hosts reach the control plane on their bridge's gateway
(``nova.up(..., bind_address=hostlab.gateway)``): their 127.x is their own.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from pathlib import Path
from typing import Any

from metalctl.errors import LabError
from metalctl_lab import nova_venv
from metalctl_lab.hosts import HostLab
from metalctl_lab.nova import SHUTDOWN, NovaLab

#: image layers of a host that runs nova-compute
LAYERS = ("kvm", "nova")
LOG_FILE = "/var/log/nova/nova-compute.log"
QEMU_IMG = "/usr/bin/qemu-img"

INIT_SCRIPT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          nova-compute
# Required-Start:    $network libvirtd
# Required-Stop:     $network
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: OpenStack Compute (metalctl lab: the Nova venv, bind-mounted)
### END INIT INFO
DAEMON={daemon}
PIDFILE=/run/nova/nova-compute.pid
case "$1" in
  start)
    mkdir -p /run/nova /var/log/nova /var/lib/nova/instances
    # as Debian's package: /etc/nova/nova-compute.conf, when present, comes second
    EXTRA=; [ -f /etc/nova/nova-compute.conf ] && EXTRA="--config-file /etc/nova/nova-compute.conf"
    start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PIDFILE \\
      --startas $DAEMON -- --config-file /etc/nova/nova.conf $EXTRA --log-file {log} ;;
  stop)
    start-stop-daemon --stop --quiet --retry TERM/15/KILL/5 --pidfile $PIDFILE --oknodo
    rm -f $PIDFILE ;;
  restart|force-reload) "$0" stop; "$0" start ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 3 ;;
esac
"""


def interpreter_home() -> Path:
    """The Python installation the Nova venv was created from (``pyvenv.cfg`` home)."""
    cfg = nova_venv.venv_dir() / "pyvenv.cfg"
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).parent
    raise LabError(reason=f"{cfg} names no home interpreter")


def _nsenter(hostlab: HostLab, index: int, script: str) -> None:
    """Run ``script`` in host ``index``'s mount namespace (the host's root is at
    ``host_dir/root`` there; the host itself sees it as ``/``)."""
    pid = (hostlab.host_dir(index) / "pid").read_text().strip()
    proc = subprocess.run(["nsenter", "-t", pid, "-m", "--", "/bin/sh", "-euc", script],
                          capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise LabError(reason=f"host h{index}: preparing nova-compute failed: "
                              f"{proc.stderr.strip()[-300:]}")


def install(hostlab: HostLab, index: int) -> None:
    """Make host ``h<index>`` able to run nova-compute (see the module docstring).

    Call after every :meth:`HostLab.start` (a restarted host has a new mount namespace).

    Raises:
        LabError: the venv is missing, the binds or the service script failed, or
            libvirtd did not start.
    """
    if not nova_venv.installed():
        raise LabError(reason=f"no Nova venv in {nova_venv.venv_dir()}: run scripts/setup.sh")
    root = hostlab.host_dir(index) / "root"
    lines = []
    for src in (interpreter_home(), nova_venv.venv_dir()):
        dst = f"{root}{src}"
        lines.append(f"mkdir -p '{dst}'; mountpoint -q '{dst}' || "
                     f"{{ mount --bind '{src}' '{dst}'; mount -o remount,bind,ro '{dst}'; }}")
    lines.append(f"mkdir -p '{root}/dev/hugepages'; mountpoint -q '{root}/dev/hugepages' || "
                 f"mount -t hugetlbfs -o pagesize=2M hugetlbfs '{root}/dev/hugepages'")
    qemu_conf = root / "etc" / "libvirt" / "qemu.conf"
    lines.append(f"grep -q '^hugetlbfs_mount' '{qemu_conf}' || "
                 f"echo 'hugetlbfs_mount = \"/dev/hugepages\"' >> '{qemu_conf}'")
    # libvirt's private /dev for each QEMU copies the host's /dev/ptmx, here a symlink
    # into the host's own devpts instance: QEMU then fails "Failed to create PTY"
    lines.append(f"grep -q '^namespaces' '{qemu_conf}' || "
                 f"echo 'namespaces = []' >> '{qemu_conf}'")
    libvirtd_conf = root / "etc" / "libvirt" / "libvirtd.conf"
    host_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"file://{hostlab.host_dir(index)}")
    lines.append(f"grep -q '^host_uuid' '{libvirtd_conf}' || "
                 f"echo 'host_uuid = \"{host_uuid}\"' >> '{libvirtd_conf}'")
    img = f"{root}{QEMU_IMG}"
    lines.append(f"[ -e '{img}' ] || touch '{img}'; mountpoint -q '{img}' || "
                 f"{{ mount --bind {QEMU_IMG} '{img}'; mount -o remount,bind,ro '{img}'; }}")
    init = root / "etc" / "init.d" / "nova-compute"
    text = INIT_SCRIPT.format(daemon=nova_venv.nova_bin("nova-compute"), log=LOG_FILE)
    lines.append(f"cat > '{init}' <<'EOF'\n{text}EOF\nchmod 755 '{init}'")
    _nsenter(hostlab, index, "\n".join(lines))
    out = hostlab.exec(index, "/etc/init.d/virtlogd start >/dev/null 2>&1 || true; "
                              "pgrep -x libvirtd >/dev/null || /etc/init.d/libvirtd start; "
                              "for i in $(seq 50); do virsh -c qemu:///system version "
                              ">/dev/null 2>&1 && break; sleep 0.2; done; "
                              # QEMU's capabilities probed now (cached on disk, kept
                              # across libvirtd restarts), as on a host that has run
                              # libvirtd since boot: about 8 s nova-compute would wait
                              "virsh -c qemu:///system domcapabilities >/dev/null")
    if out.returncode != 0:
        raise LabError(reason=f"host h{index}: libvirtd did not answer: {out.stderr[-300:]}")


def site(lab: NovaLab) -> dict[str, Any]:
    """The site ``nova:`` section for computes on the lab hosts: QEMU through TCG (no
    hardware virtualisation here), the default ``/var/lib/nova`` state path, privsep
    through the venv's helper (no sudo in the hosts), a quick stop."""
    return {**lab.site(),
            "libvirt": {"virt_type": "qemu"},
            "options": {**lab.peer_options(),
                        "DEFAULT": {"manager_shutdown_timeout":
                                    int(SHUTDOWN["manager_shutdown_timeout"])},
                        "nova_sys_admin": {"helper_command": (
                            f"{nova_venv.nova_bin('privsep-helper')} "
                            "--config-file /etc/nova/nova.conf")}}}


HUGEPAGES_2M = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")


def reserve_hugepages(count: int) -> int:
    """Set this machine's 2 MiB hugepage pool to ``count`` (the lab hosts share its
    kernel); returns the count before, for :func:`release_hugepages`.

    Raises:
        LabError: the kernel gave fewer pages (memory too fragmented).
    """
    before = int(HUGEPAGES_2M.read_text())
    HUGEPAGES_2M.write_text(f"{count}\n")
    got = int(HUGEPAGES_2M.read_text())
    if got < count:
        HUGEPAGES_2M.write_text(f"{before}\n")
        raise LabError(reason=f"asked the kernel for {count} 2 MiB hugepages, got {got}")
    return before


def release_hugepages(before: int) -> None:
    """Give the pool back its size from before :func:`reserve_hugepages`."""
    HUGEPAGES_2M.write_text(f"{before}\n")


def handoff_api(lab: NovaLab) -> dict[str, Any]:
    """The site ``handoff.api`` section that reaches this lab without Keystone."""
    return {"compute_endpoint": lab.api_url, "placement_endpoint": lab.placement_url,
            "noauth_user": "metalctl-lab", "noauth_project": "metalctl-lab",
            "placement_credentials": "nova-lab-placement"}


def lab_plan() -> dict[str, Any]:
    """``hpc`` scaled to a 2-CPU lab host: shared 0, dedicated 1, 512 MiB reserved, no
    hugepages (the lab kernel has none to give). The hosts see this machine's CPUs."""
    from metalctl.profile.derive import derive  # noqa: PLC0415 - only nova-up and tests
    from metalctl.profile.facts import inband  # noqa: PLC0415
    from metalctl.profile.library import Profile, ProfileLibrary  # noqa: PLC0415

    data = copy.deepcopy(ProfileLibrary().load("hpc").data)
    data.pop("hugepages", None)
    data.setdefault("memory", {})["host_reserved_mib"] = 512
    data["memory"].pop("host_reserved_mib_per_numa", None)
    return derive(inband.collect_local(), Profile(name="hpc-lab", data=data), "lab").to_dict()
