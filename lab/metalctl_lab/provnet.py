"""The lab's provisioning network: a namespace with a bridge, dnsmasq, and a veth to the host.

For net number ``N`` (``ProvNet(directory, net=N)``):

* network namespace ``mcprovN`` holding bridge ``mcprovNbr`` (10.N.0.2/24 and
  fd00:N::2/64: dnsmasq needs an address in the subnets it serves, and the IPv6 prefix
  exists only for Router Advertisements);
* a veth pair: ``mcprovNn`` inside the namespace is a port of the bridge, ``mcprovNh``
  stays in the root namespace with the host-side address 10.N.0.1/24. That is where
  metalctl's boot service, the HTTP roots and Ironic's API listen, as the SSH test hosts
  reach the machine through their bridge (:mod:`metalctl_lab.hosts`). The host end
  never accepts Router Advertisements, so no route leaks into the root namespace;
* dnsmasq (Debian ``dnsmasq-base``) inside the namespace, bound to the bridge, started
  with a configuration file the caller provides (:meth:`ProvNet.start_dnsmasq`).

The lab never renders dnsmasq's configuration: the lab may import foundations only, and
the file metalctl really uses is :mod:`metalctl.provision.dnsmasq`'s (validated by
``dnsmasq --test``), so callers render it from :meth:`ProvNet.dnsmasq_settings` and the
lab runs exactly what ``--via pxe`` runs. The lab's private libvirtd is started inside
the namespace (:mod:`metalctl_lab.libvirt_lab`), so its domains' bridged NICs sit on
the bridge.

Everything is idempotent: :meth:`up` on an existing network checks and completes it,
:meth:`down` kills dnsmasq and deletes the namespace and the veth, whatever is left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalctl.errors import LabError
from metalctl_lab.procs import alive, spawn, wait_gone, wait_up

#: the addresses pinned to lab machines (10.N.0.10 + index); the dynamic range after them
PIN_BASE = 10
DHCP_RANGE = (100, 199)


@dataclass(frozen=True)
class Lease:
    """One line of dnsmasq's lease file."""

    expires: int
    mac: str
    ip: str
    hostname: str | None


@dataclass
class ProvNet:
    """The provisioning network number ``net`` (10.net.0.0/24, fd00:net::/64).

    Args:
        directory: where its files live (``provnet-<net>/`` inside it).
        net: 1..254; the second octet of its IPv4 subnet and the second group of its
            IPv6 prefix (written in decimal digits: net 203 is fd00:203::/64).
    """

    directory: Path
    net: int = 203

    def __post_init__(self) -> None:
        if not 1 <= self.net <= 254:
            raise LabError(reason=f"provisioning network number {self.net} not in 1..254")
        self.directory = Path(self.directory)

    # --- names and addresses (pure) ---------------------------------------------------

    @property
    def namespace(self) -> str:
        return f"mcprov{self.net}"

    @property
    def bridge(self) -> str:
        """The bridge inside the namespace: libvirt NICs and dnsmasq are on it."""
        return f"mcprov{self.net}br"

    @property
    def host_interface(self) -> str:
        """The root namespace's end of the veth pair."""
        return f"mcprov{self.net}h"

    @property
    def port_interface(self) -> str:
        """The namespace's end of the veth pair (a bridge port)."""
        return f"mcprov{self.net}n"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{self.net}.0.0/24")

    @property
    def ipv6_prefix(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(f"fd00:{self.net}::/64")

    @property
    def host_address(self) -> str:
        """Where the boot service, HTTP roots and Ironic listen (root namespace)."""
        return f"10.{self.net}.0.1"

    @property
    def bridge_address(self) -> str:
        """dnsmasq's own address on the bridge."""
        return f"10.{self.net}.0.2"

    @property
    def dhcp_range(self) -> tuple[str, str]:
        return f"10.{self.net}.0.{DHCP_RANGE[0]}", f"10.{self.net}.0.{DHCP_RANGE[1]}"

    def pinned_address(self, index: int) -> str:
        """The address pinned (``dhcp-host``) to lab machine ``index``."""
        if not 0 <= index < DHCP_RANGE[0] - PIN_BASE:
            raise LabError(reason=f"no pinned address for machine {index}")
        return f"10.{self.net}.0.{PIN_BASE + index}"

    @property
    def files(self) -> Path:
        return self.directory / f"provnet-{self.net}"

    @property
    def lease_file(self) -> Path:
        return self.files / "dnsmasq.leases"

    @property
    def dnsmasq_log(self) -> Path:
        return self.files / "dnsmasq.log"

    @property
    def _pid_file(self) -> Path:
        return self.files / "dnsmasq.spawned"

    def dnsmasq_settings(self) -> dict[str, Any]:
        """Keyword arguments for :class:`metalctl.provision.dnsmasq.DnsmasqConfig` that
        fit this network (the caller adds ``boot_url``, ``hosts``, ``tftp_root``)."""
        return {"interface": self.bridge, "mode": "dhcp", "dhcp_range": self.dhcp_range,
                "netmask": "255.255.255.0", "ipv6_ra": True, "lease_file": self.lease_file,
                # dnsmasq writes /run/dnsmasq.pid unless told otherwise, even in the
                # foreground
                "pid_file": self.files / "dnsmasq.pid", "log_dhcp": True}

    def netns_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def describe(self) -> dict[str, Any]:
        return {"net": self.net, "namespace": self.namespace, "bridge": self.bridge,
                "subnet": str(self.subnet), "ipv6_prefix": str(self.ipv6_prefix),
                "host_address": self.host_address, "dhcp_range": "-".join(self.dhcp_range)}

    # --- lifecycle ---------------------------------------------------------------------

    def _ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise LabError(reason=f"ip {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def _exists(self) -> bool:
        return self._ip("netns", "pids", self.namespace, check=False).returncode == 0

    def up(self) -> ProvNet:
        """Create the namespace, bridge and veth (completing a half-made one of this
        directory's).

        Raises:
            LabError: the namespace exists but was made for another lab directory (two
                labs on one network would answer each other's machines), or ``ip`` failed.
        """
        ns = self.namespace
        mine = self.files / "provnet.json"
        if self._exists() and not mine.exists():
            raise LabError(reason=f"network namespace {ns} exists but is not this lab's "
                                  f"({self.directory}); take another network number, or "
                                  f"`metalctl lab down` the lab that owns it "
                                  f"(`ip netns del {ns}` if none does)")
        self.files.mkdir(parents=True, exist_ok=True)
        mine.write_text(json.dumps(self.describe(), indent=2))
        if not self._exists():
            self._ip("netns", "add", ns)
        n = ["-n", ns]
        self._ip(*n, "link", "set", "lo", "up")
        if self._ip(*n, "link", "show", self.bridge, check=False).returncode != 0:
            self._ip(*n, "link", "add", self.bridge, "type", "bridge")
            # forward at once: a fresh bridge port otherwise spends 15 s in STP listening,
            # which eats a PXE ROM's first DHCP attempts
            self._ip(*n, "link", "set", self.bridge, "type", "bridge", "forward_delay", "0",
                     "stp_state", "0")
        if self._ip("link", "show", self.host_interface, check=False).returncode != 0:
            # a namespace deleted earlier may still hold the old pair's peer: our end goes
            self._ip(*n, "link", "del", self.port_interface, check=False)
            self._ip("link", "add", self.host_interface, "type", "veth", "peer", "name",
                     self.port_interface, "netns", ns)
        self._ip(*n, "link", "set", self.port_interface, "master", self.bridge)
        _sysctl(f"net/ipv6/conf/{self.host_interface}/accept_ra", "0")
        _sysctl(f"net/ipv6/conf/{self.host_interface}/autoconf", "0")
        self._address(["addr", "add", f"{self.host_address}/24", "dev", self.host_interface])
        self._address(["-6", "addr", "add", f"fd00:{self.net}::1/64", "dev",
                       self.host_interface, "nodad"])
        self._address([*n, "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge])
        self._address([*n, "-6", "addr", "add", f"fd00:{self.net}::2/64", "dev", self.bridge,
                       "nodad"])
        for args in ([*n, "link", "set", self.port_interface, "up"],
                     [*n, "link", "set", self.bridge, "up"],
                     ["link", "set", self.host_interface, "up"]):
            self._ip(*args)
        return self

    def _address(self, args: list[str]) -> None:
        proc = self._ip(*args, check=False)
        if proc.returncode != 0 and not re.search(r"File exists|already assigned", proc.stderr):
            raise LabError(reason=f"ip {' '.join(args)}: {proc.stderr.strip()}")

    def start_dnsmasq(self, conf: Path, timeout_s: float = 10.0) -> int:
        """(Re)start dnsmasq inside the namespace with ``conf``; return its pid.

        ``conf`` is checked with ``dnsmasq --test`` first. dnsmasq runs in the
        foreground (its log, with every DHCP transaction when the file says
        ``log-dhcp``, goes to :attr:`dnsmasq_log`).

        Raises:
            LabError: the namespace is missing, dnsmasq refused the file, or it did not
                start listening for DHCP within ``timeout_s``.
        """
        if not self._exists():
            raise LabError(reason=f"provisioning network {self.namespace} is not up")
        test = subprocess.run(["dnsmasq", "--test", "-C", str(conf)], capture_output=True,
                              text=True, check=False)
        if test.returncode != 0:
            raise LabError(reason=f"dnsmasq refused {conf}: {test.stderr.strip()[:400]}")
        self.stop_dnsmasq()
        self.files.mkdir(parents=True, exist_ok=True)
        # --user=root: dnsmasq otherwise drops to nobody, who cannot rewrite a lease file
        # in a root-only lab directory
        pid = spawn(self.netns_argv(["dnsmasq", "--keep-in-foreground", "--log-facility=-",
                                     "--user=root", "--group=root", "-C", str(conf)]),
                    self.dnsmasq_log)
        self._pid_file.write_text(str(pid))

        def listening() -> bool:
            return bool(subprocess.run(self.netns_argv(["ss", "-Hlun", "sport", "=", ":67"]),
                                       capture_output=True, text=True, check=False).stdout.strip())

        try:
            wait_up("dnsmasq (DHCP)", listening, lambda: alive(pid), self.dnsmasq_log,
                    timeout_s, interval_s=0.1)
        except LabError:
            self.stop_dnsmasq()
            raise
        return pid

    @property
    def dnsmasq_started(self) -> bool:
        """Whether :meth:`start_dnsmasq` ran since the last :meth:`stop_dnsmasq`."""
        return self._pid_file.exists()

    def dnsmasq_pid(self) -> int | None:
        if not self._pid_file.exists():
            return None
        pid = int(self._pid_file.read_text())
        return pid if alive(pid) else None

    def stop_dnsmasq(self) -> None:
        """Stop the dnsmasq this network started (no-op when none runs)."""
        pid = self.dnsmasq_pid()
        if pid is not None:
            _kill_group(pid)
        self._pid_file.unlink(missing_ok=True)

    def leases(self) -> list[Lease]:
        """dnsmasq's current leases (empty before the first one)."""
        if not self.lease_file.exists():
            return []
        out = []
        for line in self.lease_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0].isdigit():
                out.append(Lease(int(parts[0]), parts[1].lower(), parts[2],
                                 None if parts[3] == "*" else parts[3]))
        return out

    def down(self) -> None:
        """Stop dnsmasq and delete the namespace (with the bridge) and the veth pair,
        when :meth:`up` made them for this directory (never another lab's).

        Processes still running inside the namespace (a libvirtd not stopped by its
        owner) are killed first, or the namespace would outlive its mount.
        """
        self.stop_dnsmasq()
        if not (self.files / "provnet.json").exists():
            return  # never made here (or already down): another lab's, if it exists
        if self._exists():
            pids = self._ip("netns", "pids", self.namespace, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            self._ip("netns", "del", self.namespace, check=False)
        self._ip("link", "del", self.host_interface, check=False)
        (self.files / "provnet.json").unlink(missing_ok=True)


def _sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key
    if path.exists():
        path.write_text(value)


def _kill_group(pid: int, grace_s: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if not wait_gone([pid], grace_s):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
