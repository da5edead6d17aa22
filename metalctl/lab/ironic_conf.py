"""ironic.conf for the lab's standalone Ironic (recipe verified in ../shared/LAB.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AnacondaConf:
    """What Ironic's ``ipxe`` boot and ``anaconda`` deploy interfaces need on the lab's
    provisioning network (recipe: ../shared/LAB.md "Kickstart through Ironic's anaconda
    deploy").

    Attributes:
        http_url: where machines fetch Ironic's iPXE scripts and ks.cfg (``http_root``).
        http_root: the directory an HTTP server of the lab serves at ``http_url``.
        api_url: Ironic's API as machines reach it: the heartbeat URL in the kickstart.
        kernel_append: installer arguments on the iPXE kernel line (serial console).
    """

    http_url: str
    http_root: Path
    api_url: str
    kernel_append: str = "console=ttyS0,115200n8"

    def section(self, directory: Path) -> str:
        tftp = directory / "tftpboot"
        for d in (self.http_root, tftp, directory / "images", directory / "master"):
            d.mkdir(parents=True, exist_ok=True)
        return f"""
[deploy]
http_url = {self.http_url}
http_root = {self.http_root}
[pxe]
tftp_root = {tftp}
tftp_master_path = {tftp}/master_images
images_path = {directory}/images
instance_master_path = {directory}/master
kernel_append_params = {self.kernel_append}
# the lab's machines boot QEMU's own iPXE ROM, chained by dnsmasq to http_url/boot.ipxe
ipxe_timeout = 60
[anaconda]
insecure_heartbeat = true
[service_catalog]
# the heartbeat URL Ironic writes into the kickstart (no Keystone catalog here)
endpoint_override = {self.api_url}
"""

TEMPLATE = """\
[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = metalctl-lab-conductor
use_stderr = true
enabled_hardware_types = redfish,ipmi,fake-hardware
enabled_power_interfaces = redfish,ipmitool,fake
enabled_management_interfaces = redfish,ipmitool,fake
enabled_boot_interfaces = fake,redfish-virtual-media,pxe,ipxe
enabled_deploy_interfaces = fake,direct,anaconda
enabled_inspect_interfaces = redfish,no-inspect,fake
enabled_bios_interfaces = redfish,no-bios,fake
enabled_network_interfaces = noop
default_network_interface = noop
enabled_vendor_interfaces = no-vendor,ipmitool,redfish,fake
enabled_raid_interfaces = no-raid,fake
enabled_console_interfaces = no-console,fake
enabled_firmware_interfaces = no-firmware,redfish,fake
[api]
host_ip = {address}
port = {port}
[database]
connection = {db}
[conductor]
automated_clean = false
[redfish]
# BIOS apply through Ironic waits for this periodic check after the reboot (default 60 s)
firmware_update_status_interval = 5

[dhcp]
dhcp_provider = none
[oslo_concurrency]
lock_path = {locks}
"""


def write(directory: Path, address: str, port: int, db_url: str | None = None,
          anaconda: AnacondaConf | None = None) -> Path:
    """Write ``ironic.conf`` into ``directory``; sqlite there unless ``db_url`` is given.

    ``anaconda``: also configure the ``ipxe`` boot and ``anaconda`` deploy interfaces for
    a provisioning network (the lab's machines that really boot).
    """
    locks = directory / "ironic-locks"
    locks.mkdir(exist_ok=True)
    if db_url is None:
        db = directory / "ironic.db"
        if db.exists():
            db.unlink()
        db_url = f"sqlite:///{db}"
    conf = directory / "ironic.conf"
    text = TEMPLATE.format(address=address, port=port, db=db_url, locks=locks)
    if anaconda is not None:
        text += anaconda.section(directory)
    conf.write_text(text)
    return conf
