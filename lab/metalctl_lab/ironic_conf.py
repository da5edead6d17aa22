"""ironic.conf for the lab's standalone Ironic (recipe verified in ../shared/LAB.md).

Every path Ironic reads or writes is set here to a place inside the lab directory, with
or without a provisioning network: Ironic's defaults (``/httpboot``, ``/tftpboot``,
``/var/lib/ironic/...``, ``/etc/ironic/...``, ``/tmp``) would make the lab depend on, and
write to, the machine it runs on. The ``ipxe`` boot interface, for one, refuses to load
when ``[deploy] http_root`` does not exist, and the ``pxe`` one creates ``tftp_root``.
``tests/lab/test_lab_paths.py`` holds this against Ironic's own option list.
"""

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

    def options(self) -> dict[str, dict[str, str]]:
        return {
            "deploy": {"http_url": self.http_url, "http_root": str(self.http_root)},
            "pxe": {"kernel_append_params": self.kernel_append,
                    # QEMU's own iPXE ROM, chained by dnsmasq to http_url/boot.ipxe
                    "ipxe_timeout": "60"},
            "anaconda": {"insecure_heartbeat": "true"},
            # the heartbeat URL Ironic writes into the kickstart (no Keystone catalog here)
            "service_catalog": {"endpoint_override": self.api_url},
        }


BASE: dict[str, dict[str, str]] = {
    "DEFAULT": {
        "auth_strategy": "noauth",
        "rpc_transport": "none",
        "host": "metalctl-lab-conductor",
        "use_stderr": "true",
        "enabled_hardware_types": "redfish,ipmi,fake-hardware",
        "enabled_power_interfaces": "redfish,ipmitool,fake",
        "enabled_management_interfaces": "redfish,ipmitool,fake",
        "enabled_boot_interfaces": "fake,redfish-virtual-media,pxe,ipxe",
        "enabled_deploy_interfaces": "fake,direct,anaconda",
        "enabled_inspect_interfaces": "redfish,no-inspect,fake",
        "enabled_bios_interfaces": "redfish,no-bios,fake",
        "enabled_network_interfaces": "noop",
        "default_network_interface": "noop",
        "enabled_vendor_interfaces": "no-vendor,ipmitool,redfish,fake",
        "enabled_raid_interfaces": "no-raid,fake",
        "enabled_console_interfaces": "no-console,fake",
        "enabled_firmware_interfaces": "no-firmware,redfish,fake",
    },
    "conductor": {"automated_clean": "false"},
    # BIOS apply through Ironic waits for this periodic check after the reboot (default 60 s)
    "redfish": {"firmware_update_status_interval": "5"},
    "dhcp": {"dhcp_provider": "none"},
}


def path_options(directory: Path) -> dict[str, dict[str, str]]:
    """Every Ironic option whose default is a path outside Ironic's own package, pointed
    into ``directory`` (files that need not exist are named there all the same, so a file
    an earlier run left in ``/etc/ironic`` is never read)."""
    d = Path(directory)
    http_root, tftp = d / "httpboot", d / "tftpboot"
    return {
        "DEFAULT": {"tempdir": str(d / "tmp"),
                    "http_basic_auth_user_file": str(d / "etc" / "htpasswd")},
        "deploy": {"http_root": str(http_root), "iso_master_path": str(d / "master_iso")},
        "pxe": {"tftp_root": str(tftp), "tftp_master_path": str(tftp / "master_images"),
                "images_path": str(d / "images"),
                "instance_master_path": str(d / "master")},
        "agent": {"deploy_logs_local_path": str(d / "deploy-logs"),
                  "certificates_path": str(d / "agent-certificates")},
        "agent_containers": {"container_steps_file": str(d / "etc" / "container-steps.yaml")},
        "audit": {"audit_map_file": str(d / "etc" / "api_audit_map.conf")},
        "conductor": {"file_url_allowed_paths": str(d),
                      "trait_based_networking_config_file":
                          str(d / "etc" / "trait_based_networking.yaml")},
        "ironic_networking": {"driver_config_dir": str(d / "networking")},
        "json_rpc": {"http_basic_auth_user_file": str(d / "etc" / "htpasswd-json-rpc")},
        "ironic_networking_json_rpc": {
            "http_basic_auth_user_file": str(d / "etc" / "htpasswd-json-rpc")},
        # oslo.policy otherwise searches ~/.ironic, ~/, /etc/ironic and /etc for these
        "oslo_policy": {"policy_file": str(d / "etc" / "policy.yaml"),
                        "policy_dirs": str(d / "etc" / "policy.d")},
        "oslo_concurrency": {"lock_path": str(d / "ironic-locks")},
    }


#: directories of :func:`path_options` Ironic expects to exist (it creates none of them)
_DIRS = ("tmp", "etc", "httpboot", "tftpboot", "tftpboot/master_images", "images", "master",
         "master_iso", "deploy-logs", "agent-certificates", "networking", "ironic-locks")


def render(directory: Path, address: str, port: int, db_url: str,
           anaconda: AnacondaConf | None = None) -> str:
    """The text of ``ironic.conf``; pure (see :func:`write`)."""
    sections: dict[str, dict[str, str]] = {}
    extra = {"api": {"host_ip": address, "port": str(port)},
             "database": {"connection": db_url}}
    for layer in (BASE, path_options(directory), extra, anaconda.options() if anaconda else {}):
        for section, opts in layer.items():
            sections.setdefault(section, {}).update(opts)
    return "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items()) + "\n"
                   for s, opts in sections.items())


def write(directory: Path, address: str, port: int, db_url: str | None = None,
          anaconda: AnacondaConf | None = None) -> Path:
    """Write ``ironic.conf`` into ``directory``; sqlite there unless ``db_url`` is given.

    ``anaconda``: also configure the ``ipxe`` boot and ``anaconda`` deploy interfaces for
    a provisioning network (the lab's machines that really boot).
    """
    directory = Path(directory)
    for sub in _DIRS:
        (directory / sub).mkdir(parents=True, exist_ok=True)
    if anaconda is not None:
        anaconda.http_root.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        db = directory / "ironic.db"
        if db.exists():
            db.unlink()
        db_url = f"sqlite:///{db}"
    conf = directory / "ironic.conf"
    conf.write_text(render(directory, address, port, db_url, anaconda))
    return conf
