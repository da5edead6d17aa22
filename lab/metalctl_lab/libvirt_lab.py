"""A Redfish BMC in front of a private libvirtd and its domains.

sushy-tools' libvirt driver gives what the fake driver lacks: Processors,
MemorySummary, Storage (a real qcow2 disk), EthernetInterfaces and a BIOS
resource with pending settings. The libvirtd is private (own /etc/libvirt,
/run/libvirt, /var/lib/libvirt through bind mounts in a mount namespace, recipe
1b of reference/lab-host-recipes.md), so the machine's own libvirt is untouched.
It listens on its UNIX socket only.

Without a provisioning network the domains have user-mode NICs and are only defined
(powering one on starts a QEMU that boots nothing). With one (``RackSpec.provnet``,
:mod:`metalctl_lab.provnet`), libvirtd runs inside its namespace, the NICs are on its
bridge, and powering a domain on through the BMC starts QEMU under TCG (``/dev/kvm``
here is kvm-pvm, which hangs ordinary guest kernels) whose own iPXE ROM asks dnsmasq.
Every domain logs its serial console to :func:`serial_log`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metalctl.errors import LabError
from metalctl_lab import nova_venv, novadisk, peers
from metalctl_lab.procs import alive, https_ready, spawn, wait_up
from metalctl_lab.provnet import ProvNet
from metalctl_lab.spec import LabState, RackSpec

LOG = logging.getLogger(__name__)


DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <metadata>
    <sushy:bios xmlns:sushy="http://openstack.org/xmlns/libvirt/sushy">
      <sushy:attributes>
{bios}
      </sushy:attributes>
    </sushy:bios>
  </metadata>
  <os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>
  <features><acpi/><tcg><tb-cache unit='MiB'>{tb_cache_mib}</tb-cache></tcg></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model>
    <topology sockets='2' dies='1' cores='{cores}' threads='{threads}'/>
    <numa>
      <cell id='0' cpus='0-{half_last}' memory='{half_mib}' unit='MiB'/>
      <cell id='1' cpus='{half}-{last}' memory='{half_mib}' unit='MiB'/>
    </numa>
  </cpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
    </disk>
{nova_disk}{nics}
    <serial type='file'><source path='{serial_log}' append='on'/><target port='0'/></serial>
  </devices>
</domain>
"""

#: NICs of a rack without a provisioning network: user-mode, never booted from
USER_NIC = ("    <interface type='user'><mac address='{mac}'/><model type='virtio'/>"
            "</interface>")
#: NICs on the provisioning network's bridge; the first one PXE-boots with QEMU's own
#: iPXE ROM (never romfile=: an explicit pxe-virtio.rom made SeaBIOS skip the NIC), the
#: second has no ROM so the firmware never tries to boot from it
BRIDGE_NIC = ("    <interface type='bridge'><mac address='{mac}'/><source bridge='{bridge}'/>"
              "<model type='virtio'/>{rom}</interface>")
#: TCG's translation cache: about 0.7 GB of RSS per machine with it, 1.8 GB without
TB_CACHE_MIB = 128


#: factory defaults of the lab's BIOS: the emulator's own attributes plus the ones the
#: sushy-emulator vendor map (profiles/bios/sushy-emulator.yaml) names, set the way a
#: server often leaves the factory (virtualisation off, balanced power)
BIOS_DEFAULTS = {
    "BootMode": "Uefi", "EmbeddedSata": "Raid", "NicBoot1": "NetworkBoot", "NumCores": "8",
    "QuietBoot": "true", "SecureBootStatus": "Enabled", "SerialNumber": "LABKVM0",
    "ProcTurboMode": "Enabled", "ProcVirtualization": "Disabled", "ProcVtd": "Disabled",
    "SriovGlobalEnable": "Disabled", "LogicalProc": "Enabled", "ProcCStates": "Enabled",
    "WorkloadProfile": "Balanced", "SubNumaCluster": "Disabled", "SysProfile": "PerfOptimized",
}


def bios_xml(attributes: dict[str, str]) -> str:
    return "\n".join(f'        <sushy:attribute name="{k}" value="{v}"/>'
                     for k, v in sorted(attributes.items()))


def socket_path(directory: Path) -> Path:
    return directory / "libvirt" / "run" / "libvirt-sock"


def uri(directory: Path) -> str:
    return f"qemu:///system?socket={socket_path(directory)}"


def domain_name(spec: RackSpec, index: int) -> str:
    return f"metalctl-lab{spec.octet}-kvm-{index}"


def domain_mac(spec: RackSpec, index: int, nic: int = 0) -> str:
    """The MAC of NIC ``nic`` of domain ``index`` (NIC 0 is the provisioning one)."""
    return spec.system_mac(0xEE, index, nic)


def serial_log(directory: Path, index: int) -> Path:
    """Domain ``index``'s serial console, appended across power cycles (``append='on'``:
    libvirt otherwise truncates the file at every start)."""
    return Path(directory) / "consoles" / f"kvm-{index}.log"


#: the machine's libvirt directories the private daemon sees, each bind-mounted from the
#: lab's ``libvirt/<sub>`` inside its own mount namespace
PRIVATE_MOUNTS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
                  "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}


def private_files(lv: Path) -> dict[str, str]:
    """The private libvirtd's ``/etc/libvirt``, written whole (pure): nothing is copied
    from the machine's, so a network set to autostart or a qemu.conf edited there by
    an earlier run changes nothing here."""
    return {
        "etc/libvirtd.conf": ('unix_sock_group = "root"\nunix_sock_rw_perms = "0700"\n'
                              f'log_outputs = "3:file:{lv}/log/libvirtd.log"\n'),
        # stdio to files: no virtlogd needed. root: the private state dirs are root's, and
        # QEMU's capability probe (run as libvirt-qemu by default) cannot write there,
        # which leaves every capabilities call (and so any domain redefine) hanging.
        "etc/qemu.conf": 'stdio_handler = "file"\nuser = "root"\ngroup = "root"\n',
    }


def libvirtd_script(lv: Path) -> str:
    """The shell that runs inside the private mount namespace: the machine's libvirt
    directories become mount points of the lab's (``mkdir`` only creates a mount point
    the libvirt package did not), then libvirtd with its pid file in the lab."""
    points = " ".join(PRIVATE_MOUNTS.values())
    binds = "".join(f"mount --bind {lv}/{sub} {point}; " for sub, point in PRIVATE_MOUNTS.items())
    return (f"mkdir -p {points}; {binds}"
            f"exec /usr/sbin/libvirtd --pid-file {lv}/run/libvirtd.pid")


def _start_libvirtd(directory: Path, state: LabState,
                    netns_argv: list[str] | None = None) -> tuple[int, Path]:
    """Start the private libvirtd; ``netns_argv`` (``ip netns exec NS``) runs it inside
    the provisioning network's namespace, so QEMU's tap devices join its bridge."""

    lv = directory / "libvirt"
    if lv.exists():
        shutil.rmtree(lv)
    for sub in ("run", "lib/qemu", "lib/images", "cache", "log", "etc/qemu/networks"):
        (lv / sub).mkdir(parents=True)
    for name, text in private_files(lv).items():
        (lv / name).write_text(text)
    script = libvirtd_script(lv)
    log = directory / "libvirtd.log"
    pid = spawn([*(netns_argv or []), "unshare", "--mount", "--propagation", "private", "--",
                 "/bin/sh", "-euc", script], log)
    state.pids["libvirtd"] = pid
    wait_up("private libvirtd (its socket)", socket_path(directory).exists,
            lambda: alive(pid), log, 20, interval_s=0.1)
    return pid, log


def _virsh(directory: Path, *args: str) -> str:
    proc = subprocess.run(["virsh", "-c", uri(directory), *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise LabError(reason=f"virsh {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def destroy_domains(directory: Path) -> None:
    """Power off every running domain of the private libvirtd (best effort)."""
    try:
        running = _virsh(directory, "list", "--name").split()
        for name in running:
            _virsh(directory, "destroy", name)
    except LabError as exc:
        LOG.warning("lab: could not stop running domains: %s", exc)


def _nics(spec: RackSpec, index: int, bridge: str | None) -> str:
    if bridge is None:
        return "\n".join(USER_NIC.format(mac=domain_mac(spec, index, n)) for n in range(2))
    return "\n".join(BRIDGE_NIC.format(mac=domain_mac(spec, index, n), bridge=bridge,
                                       rom="" if n == 0 else "<rom enabled='no'/>")
                     for n in range(2))


#: the lab's Nova release (metalctl_lab.novadisk), read-only, shared by every machine, as a
#: site's package mirror would be; after the system disk, so firmware never boots it
NOVA_DISK = ("    <disk type='file' device='disk'><driver name='qemu' type='raw'/>"
             "<source file='{path}'/><target dev='vdb' bus='virtio'/><readonly/>"
             "<serial>{label}</serial></disk>\n")


def domain_xml(spec: RackSpec, index: int, disk: Path, directory: Path,
               bridge: str | None, nova_disk: Path | None = None) -> str:
    """The domain's XML: ``bridge`` set (a provisioning network), the NICs are on it
    and the machine boots from its disk unless the BMC sets a network boot; otherwise
    user-mode NICs and the historical network-then-disk order. ``nova_disk``: the Nova
    release disk to attach read-only."""
    memory_mib, cores, threads = spec.domain_shape
    vcpus = 2 * cores * threads
    boot = "<boot dev='hd'/>" if bridge else "<boot dev='network'/><boot dev='hd'/>"
    return DOMAIN.format(
        name=domain_name(spec, index), uuid=spec.system_uuid("libvirt", 0, index),
        memory_mib=memory_mib, vcpus=vcpus, cores=cores, threads=threads, half=vcpus // 2,
        half_last=vcpus // 2 - 1, last=vcpus - 1, half_mib=memory_mib // 2, disk=disk,
        bios=bios_xml(BIOS_DEFAULTS), boot=boot, tb_cache_mib=TB_CACHE_MIB,
        nics=_nics(spec, index, bridge), serial_log=serial_log(directory, index),
        nova_disk=NOVA_DISK.format(path=nova_disk, label=novadisk.LABEL) if nova_disk else "")


def _define_domains(spec: RackSpec, directory: Path, bridge: str | None) -> None:
    images = directory / "libvirt" / "images"
    images.mkdir(exist_ok=True)
    serial_log(directory, 0).parent.mkdir(exist_ok=True)
    nova_disk = None
    if bridge and nova_venv.installed():  # machines that install become compute hosts
        nova_disk = novadisk.ensure()
    elif bridge:
        LOG.warning("lab: no Nova venv (scripts/setup.sh): machines get no Nova disk")
    for i in range(spec.libvirt_domains):
        disk = images / f"lab-kvm-{i}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "40G"],
                       check=True, capture_output=True)
        path = directory / f"domain-{i}.xml"
        path.write_text(domain_xml(spec, i, disk, directory, bridge, nova_disk))
        _virsh(directory, "define", str(path))
    # The emulator reports only disks that are volumes of a storage pool (SimpleStorage),
    # so the image directory becomes a pool.
    _virsh(directory, "pool-define-as", "metalctl-lab", "dir", "--target", str(images))
    _virsh(directory, "pool-start", "metalctl-lab")
    _virsh(directory, "pool-refresh", "metalctl-lab")


def start(spec: RackSpec, directory: Path, ca: Path, cert: Path, key: Path, htpasswd: Path,
          state: LabState, net: ProvNet | None = None
          ) -> list[tuple[str, Callable[[], bool], int, Path]]:
    """Start libvirtd, define the domains, and put a Redfish emulator in front.

    With ``net`` (a provisioning network that is up), libvirtd runs inside its
    namespace and the domains' NICs are on its bridge.
    """

    _start_libvirtd(directory, state, net.netns_argv([]) if net else None)
    _define_domains(spec, directory, net.bridge if net else None)
    statedir = directory / "redfish-libvirt.state"
    statedir.mkdir(exist_ok=True)
    cfg = directory / "redfish-libvirt.conf.py"
    settings: dict[str, Any] = {
        "SUSHY_EMULATOR_LISTEN_IP": spec.libvirt_address,
        "SUSHY_EMULATOR_LISTEN_PORT": 443,
        "SUSHY_EMULATOR_SSL_CERT": str(cert),
        "SUSHY_EMULATOR_SSL_KEY": str(key),
        "SUSHY_EMULATOR_AUTH_FILE": str(htpasswd),
        "SUSHY_EMULATOR_STATE_DIR": str(statedir),
        "SUSHY_EMULATOR_LIBVIRT_URI": uri(directory),
        # only this lab's domains, whatever else the private daemon might hold
        "SUSHY_EMULATOR_ALLOWED_INSTANCES": [spec.system_uuid("libvirt", 0, i)
                                             for i in range(spec.libvirt_domains)],
    }
    cfg.write_text("".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    log = directory / "redfish-libvirt.log"
    pid = spawn([str(peers.peer_bin("sushy-emulator")), "--config", str(cfg)], log)
    state.pids["redfish-libvirt"] = pid
    url = f"https://{spec.libvirt_address}/redfish/v1/"
    return [(f"Redfish BMC {spec.libvirt_address} (libvirt)", https_ready(url, ca), pid, log)]
