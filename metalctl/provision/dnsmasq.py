"""The dnsmasq configuration metalctl owns for ``--via pxe``: DHCP, TFTP, proxy-DHCP, RA.

metalctl never answers DHCP itself; it writes this file and dnsmasq (Debian's
``dnsmasq-base``, 2.90 here) serves it. What the file does, by mode:

* ``dhcp``: dnsmasq leases addresses from ``dhcp_range`` on an isolated provisioning
  network, and pins known machines with ``dhcp-host=MAC,IP`` (the installed OS asks
  with another client id and would otherwise get a new address);
* ``proxy``: beside a site's DHCP server, which keeps leasing addresses; dnsmasq only
  adds the boot information (``dhcp-range=NET,proxy``, ``pxe-service``).

In both modes iPXE clients are told apart by DHCP option 175 (``dhcp-match=set:ipxe,175``)
and get the boot service's entry script over HTTP; plain PXE ROMs get iPXE over TFTP
first (``undionly.kpxe`` for BIOS, ``snponly.efi`` for x86-64 UEFI, client-arch 7 and 9,
RFC 4578 §2.1). ``enable-ra`` with an ``ra-only`` range sends IPv6 Router
Advertisements, without which iPXE waits about 15 s for IPv6 on every boot.
``known_only`` answers only MACs with a ``dhcp-host`` line, so machines metalctl does
not provision never see a boot offer from it.

Every value is validated before it is written (a newline in any of them would add an
option), and the file is checked with ``dnsmasq --test -C FILE`` before it is used.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from metalctl.errors import BootServiceError, InputError
from metalctl.provision.bootstate import check_node, normalise_mac

BIOS_LOADER = "undionly.kpxe"
EFI_LOADER = "snponly.efi"
_IFACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_URL_RE = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._/-]*)?")
_PATH_RE = re.compile(r"/[A-Za-z0-9._/-]+")
_LOADER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_WHERE = "dnsmasq"


@dataclass(frozen=True)
class DhcpHost:
    """A machine metalctl provisions: its MAC, and in ``dhcp`` mode the address pinned to it."""

    mac: str
    ip: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class DnsmasqConfig:
    """Everything the generated file says.

    Attributes:
        interface: the provisioning interface (dnsmasq binds it only).
        boot_url: the boot service's base URL (``http://10.0.0.1:8080``); iPXE gets
            ``<boot_url>/boot.ipxe``.
        mode: ``dhcp`` (dnsmasq leases) or ``proxy`` (a site DHCP server leases).
        dhcp_range: first and last address to lease (``dhcp`` mode).
        netmask: the range's netmask (``dhcp`` mode, optional).
        proxy_network: the network address of the site's subnet (``proxy`` mode).
        lease_time: dnsmasq lease time (``1h``, ``infinite``).
        router: the default gateway to hand out (``dhcp`` mode), or None.
        tftp_root: directory holding the iPXE loaders for plain PXE ROMs, or None when
            every client already runs iPXE (the lab's QEMU ROMs do).
        ipv6_ra: send Router Advertisements (``enable-ra``) on the interface's prefix.
        hosts: machines to pin or to tag as known.
        known_only: answer only the MACs in ``hosts``.
        lease_file: where dnsmasq keeps leases; pid_file: its pid file (both optional).
        log_dhcp: log every DHCP transaction (``log-dhcp``), for troubleshooting.
    """

    interface: str
    boot_url: str
    mode: str = "dhcp"
    dhcp_range: tuple[str, str] | None = None
    netmask: str | None = None
    proxy_network: str | None = None
    lease_time: str = "1h"
    router: str | None = None
    tftp_root: Path | None = None
    ipv6_ra: bool = True
    hosts: tuple[DhcpHost, ...] = field(default_factory=tuple)
    known_only: bool = False
    lease_file: Path | None = None
    pid_file: Path | None = None
    log_dhcp: bool = False


def _ip(value: str, field_name: str, version: int = 4) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise InputError(_WHERE, field_name, f"{value[:60]!r} is not an IP address") from None
    if addr.version != version:
        raise InputError(_WHERE, field_name, f"{value} is not IPv{version}")
    return str(addr)


def _path(value: Path | None, field_name: str) -> str | None:
    if value is None:
        return None
    if not _PATH_RE.fullmatch(str(value)):
        raise InputError(_WHERE, field_name, f"{str(value)[:80]!r} is not a plain absolute path")
    return str(value)


def validate(cfg: DnsmasqConfig) -> DnsmasqConfig:
    """Return ``cfg`` when every value is well-formed and consistent.

    Raises:
        InputError: naming the field and why (nothing is written).
    """
    if not _IFACE_RE.fullmatch(cfg.interface):
        raise InputError(_WHERE, "interface", f"{cfg.interface[:40]!r} is not an interface name")
    if not _URL_RE.fullmatch(cfg.boot_url):
        raise InputError(_WHERE, "boot_url", f"{cfg.boot_url[:80]!r} is not a base http(s) URL")
    if not re.fullmatch(r"\d+[mhd]?|infinite", cfg.lease_time):
        raise InputError(_WHERE, "lease_time", f"{cfg.lease_time!r} is not a lease time")
    if cfg.mode == "dhcp":
        if cfg.dhcp_range is None or cfg.proxy_network is not None:
            raise InputError(_WHERE, "dhcp_range", "dhcp mode needs dhcp_range (no proxy_network)")
        first, last = (ipaddress.ip_address(_ip(a, "dhcp_range")) for a in cfg.dhcp_range)
        if first > last:
            raise InputError(_WHERE, "dhcp_range", f"{first} comes after {last}")
        if cfg.netmask is not None:
            _ip(cfg.netmask, "netmask")
        if cfg.router is not None:
            _ip(cfg.router, "router")
    elif cfg.mode == "proxy":
        if cfg.proxy_network is None or cfg.dhcp_range is not None:
            raise InputError(_WHERE, "proxy_network",
                             "proxy mode needs proxy_network (and no dhcp_range)")
        _ip(cfg.proxy_network, "proxy_network")
    else:
        raise InputError(_WHERE, "mode", f"{cfg.mode!r} is not 'dhcp' or 'proxy'")
    for i, host in enumerate(cfg.hosts):
        normalise_mac(host.mac)
        if host.ip is not None:
            if cfg.mode == "proxy":
                raise InputError(_WHERE, f"hosts[{i}].ip", "the site's DHCP server assigns "
                                 "addresses in proxy mode; pin them there")
            _ip(host.ip, f"hosts[{i}].ip")
        if host.name is not None:
            check_node(host.name)
            # dnsmasq reads a dhcp-host field shaped like a lease time as one ("1234",
            # "12h"), so such a name would silently become a lease time
            if re.fullmatch(r"\d+[smhdw]?|infinite", host.name):
                raise InputError(_WHERE, f"hosts[{i}].name",
                                 f"{host.name!r} reads as a lease time to dnsmasq")
    if cfg.known_only and not cfg.hosts:
        raise InputError(_WHERE, "known_only", "no hosts: nothing would ever be answered")
    for name in ("tftp_root", "lease_file", "pid_file"):
        _path(getattr(cfg, name), name)
    return cfg


def render(cfg: DnsmasqConfig) -> str:
    """The configuration file's text (validated first).

    Raises:
        InputError: see :func:`validate`.
    """
    validate(cfg)
    lines = [
        "# Written by metalctl (metalctl.provision.dnsmasq); changes are overwritten.",
        "port=0                      # no DNS: metalctl needs DHCP, TFTP and RA only",
        "no-hosts                    # nor the server's /etc/hosts or resolv.conf",
        "no-resolv",
        f"interface={cfg.interface}",
        "bind-interfaces",
        "dhcp-match=set:ipxe,175     # iPXE sends option 175; PXE ROMs do not",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
    ]
    if cfg.mode == "dhcp":
        start, end = cfg.dhcp_range  # type: ignore[misc]
        mask = f",{cfg.netmask}" if cfg.netmask else ""
        lines.append(f"dhcp-range={start},{end}{mask},{cfg.lease_time}")
        if cfg.router:
            lines.append(f"dhcp-option=option:router,{cfg.router}")
        else:
            lines.append("dhcp-option=option:router   # an isolated network: no gateway")
    else:
        lines += [f"dhcp-range={cfg.proxy_network},proxy",
                  'pxe-prompt="metalctl network boot",0']
    boot = f"{cfg.boot_url.rstrip('/')}/boot.ipxe"
    lines.append(f"dhcp-boot=tag:ipxe,{boot}")
    if cfg.tftp_root is not None:
        lines += ["enable-tftp", f"tftp-root={cfg.tftp_root}"]
        if cfg.mode == "dhcp":
            lines += [f"dhcp-boot=tag:!ipxe,tag:!efi64,{BIOS_LOADER}",
                      f"dhcp-boot=tag:!ipxe,tag:efi64,{EFI_LOADER}"]
        else:
            # in proxy mode plain PXE ROMs follow pxe-service (the layer suffix is not
            # added to a basename that has one)
            lines += [f'pxe-service=tag:!ipxe,x86PC,"metalctl: iPXE",{BIOS_LOADER}',
                      f'pxe-service=tag:!ipxe,X86-64_EFI,"metalctl: iPXE",{EFI_LOADER}']
    if cfg.ipv6_ra:
        lines += ["enable-ra", f"dhcp-range=::,constructor:{cfg.interface},ra-only"]
    for host in cfg.hosts:
        parts = [normalise_mac(host.mac)]
        if host.ip:
            parts.append(host.ip)
        if host.name:
            parts.append(host.name)
        lines.append("dhcp-host=" + ",".join(parts))
    if cfg.known_only:
        lines.append("dhcp-ignore=tag:!known      # only machines metalctl provisions")
    if cfg.lease_file:
        lines.append(f"dhcp-leasefile={cfg.lease_file}")
    if cfg.pid_file:
        lines.append(f"pid-file={cfg.pid_file}")
    if cfg.log_dhcp:
        lines.append("log-dhcp")
    return "\n".join(lines) + "\n"


def dnsmasq_binary() -> str:
    """The dnsmasq executable.

    Raises:
        InputError: dnsmasq is not installed (Debian: ``apt-get install dnsmasq-base``).
    """
    found = shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.access("/usr/sbin/dnsmasq", os.X_OK) else None)
    if found is None:
        raise InputError(_WHERE, "dnsmasq", "not installed (apt-get install dnsmasq-base)")
    return found


def check(path: Path, timeout_s: float = 10.0) -> None:
    """Run ``dnsmasq --test -C path``: dnsmasq's own syntax check.

    Raises:
        InputError: dnsmasq refused the file; the reason is dnsmasq's message.
    """
    try:
        proc = subprocess.run([dnsmasq_binary(), "--test", "-C", str(path)],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(str(path), "dnsmasq --test", f"no answer in {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        message = " ".join((proc.stderr or proc.stdout).split())[:500]
        raise InputError(str(path), "dnsmasq --test", message or f"exit {proc.returncode}")


def write(cfg: DnsmasqConfig, path: Path) -> Path:
    """Render, check with ``dnsmasq --test`` and atomically install the file at ``path``.

    The file is checked under a temporary name beside ``path`` and only then renamed,
    so a running dnsmasq never reads a half-written or refused configuration.

    Raises:
        InputError: a bad value, or dnsmasq refused the file (``path`` is left as it was).
    """
    text = render(cfg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class DnsmasqLeases:
    """The addresses dnsmasq gave each MAC: its ``dhcp-host`` pins and its lease file.

    The boot service binds an install to the machine's own address with this
    (:class:`metalctl.provision.bootservice.BootService`, ``dhcp=``): a kickstart fetch
    or a first callback from an address DHCP did not give that MAC is refused. Both
    files are read at each question (they are small, and leases change as machines
    boot), so the configuration may be written after the service started.

    Args:
        conf: the configuration dnsmasq runs with (:func:`write`'s file): its
            ``dhcp-host=MAC,IP`` lines and its ``dhcp-leasefile=``.
        lease_file: the lease file, when the configuration does not name one.
    """

    def __init__(self, conf: Path, lease_file: Path | None = None) -> None:
        self.conf = Path(conf)
        self.lease_file = lease_file

    def addresses(self, mac: str) -> frozenset[str] | None:
        """The IPv4 addresses pinned or leased to ``mac``; None when dnsmasq only
        proxies (a site DHCP server leases, so this file cannot know).

        Raises:
            BootServiceError: a file cannot be read (the request is refused, not let in).
        """
        mac = normalise_mac(mac)
        found: set[str] = set()
        lease_file = self.lease_file
        try:
            for line in self.conf.read_text().splitlines():
                key, _, value = line.split("#", 1)[0].strip().partition("=")
                fields = [f.strip() for f in value.split(",")]
                if key == "dhcp-range" and "proxy" in fields:
                    return None
                if key == "dhcp-leasefile" and value:
                    lease_file = Path(value.strip())
                if key == "dhcp-host" and fields and fields[0].lower() == mac:
                    found.update(f for f in fields[1:] if _is_ipv4(f))
            if lease_file is not None and lease_file.exists():
                # "<expiry> <mac> <ip> <name> <client id>", one lease a line
                for line in lease_file.read_text().splitlines():
                    parts = line.split()
                    if len(parts) >= 3 and parts[1].lower() == mac and _is_ipv4(parts[2]):
                        found.add(parts[2])
        except (OSError, UnicodeDecodeError) as exc:
            raise BootServiceError(where=str(self.conf), reason=f"cannot read dnsmasq's "
                                   f"pins or leases: {exc}") from None
        return frozenset(found)


def _is_ipv4(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 4
    except ValueError:
        return False
