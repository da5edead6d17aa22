"""ironic.conf for the lab's standalone Ironic (recipe verified in ../shared/LAB.md)."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """\
[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = metalctl-lab-conductor
use_stderr = true
enabled_hardware_types = redfish,ipmi,fake-hardware
enabled_power_interfaces = redfish,ipmitool,fake
enabled_management_interfaces = redfish,ipmitool,fake
enabled_boot_interfaces = fake,redfish-virtual-media,pxe
enabled_deploy_interfaces = fake,direct
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


def write(directory: Path, address: str, port: int, db_url: str | None = None) -> Path:
    """Write ``ironic.conf`` into ``directory``; sqlite there unless ``db_url`` is given."""
    locks = directory / "ironic-locks"
    locks.mkdir(exist_ok=True)
    if db_url is None:
        db = directory / "ironic.db"
        if db.exists():
            db.unlink()
        db_url = f"sqlite:///{db}"
    conf = directory / "ironic.conf"
    conf.write_text(TEMPLATE.format(address=address, port=port, db=db_url, locks=locks))
    return conf
