"""What the emulated rack is (:class:`RackSpec`) and what ``lab up`` started
(:class:`LabState`); shared by the rack and the libvirt lab without an import circle."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LAB_CREDENTIALS = "lab"
NAMESPACE = uuid.UUID("6f0f1d2a-3c5e-4b8f-9a7d-0e1c2b3a4d5e")


#: memory of a lab machine that installs and runs nova-compute (two NUMA cells of 768)
COMPUTE_MEMORY_MIB = 1536


@dataclass(frozen=True)
class RackSpec:
    """What to emulate. ``octet`` picks 127.<octet>.0.0/16 so labs can coexist."""

    octet: int = 10
    redfish_bmcs: int = 3
    systems_per_bmc: int = 2
    ipmi_bmcs: int = 2
    libvirt_domains: int = 2
    dead: int = 2
    ironic: bool = True
    ironic_port: int = 6385
    #: per-request latency of the Redfish BMCs, spread linearly from min to max across
    #: BMCs (the last one is the slowest); 0 = as fast as the emulator
    latency_ms: tuple[float, float] = (0.0, 0.0)
    #: Ironic's database: "sqlite" (the standalone default) or "postgresql"
    db: str = "sqlite"
    #: the provisioning network's number N (10.N.0.0/24, fd00:N::/64, namespace mcprovN,
    #: :mod:`metalctl_lab.provnet`): the private libvirtd runs inside it and the domains'
    #: NICs are on its bridge, so powering one on really network-boots it. None: domains
    #: have user-mode NICs and are only defined (what the BMC-level tests need)
    provnet: int | None = None
    #: memory of each libvirt domain; None: 8192 MiB without a provisioning network (the
    #: profile tests read 8 GiB), 1536 MiB with one: a TCG machine that installs and is
    #: a compute host (libvirtd, nova-compute, a 128 MiB nested guest; 512 MiB left
    #: about 90 MiB free with those, docs/lab.md)
    domain_memory_mib: int | None = None

    @property
    def domain_shape(self) -> tuple[int, int, int]:
        """``(memory MiB, cores per socket, threads per core)`` of each libvirt domain
        (always 2 sockets, one NUMA cell each). A booting TCG machine keeps a host core
        busy per busy vCPU, so machines that boot get 4 vCPUs, not 16: two cores per
        NUMA cell, the fewest a profile plan fits (one host core and one guest core per
        cell; ``profiles/compute-small.yaml``)."""
        if self.provnet is None:
            return self.domain_memory_mib or 8192, 4, 2
        return self.domain_memory_mib or COMPUTE_MEMORY_MIB, 2, 1

    def latency_of(self, i: int) -> float:
        low, high = self.latency_ms
        if self.redfish_bmcs <= 1:
            return high
        return low + (high - low) * i / (self.redfish_bmcs - 1)

    def redfish_address(self, i: int) -> str:
        return f"127.{self.octet}.1.{i + 1}"

    def ipmi_address(self, i: int) -> str:
        return f"127.{self.octet}.2.{i + 1}"

    @property
    def libvirt_address(self) -> str:
        return f"127.{self.octet}.3.1"

    @property
    def ironic_address(self) -> str:
        """127.N.4.1; with a provisioning network its host side (10.M.0.1), where the
        machines Ironic deploys reach its API for their heartbeats."""
        if self.provnet is not None:
            return f"10.{self.provnet}.0.1"
        return f"127.{self.octet}.4.1"

    @property
    def ironic_url(self) -> str:
        return f"http://{self.ironic_address}:{self.ironic_port}"

    def ranges(self) -> list[str]:
        """Address ranges to hand to ``metalctl discover`` (with dead addresses)."""
        out = []
        if self.redfish_bmcs:
            out.append(f"127.{self.octet}.1.1-{self.redfish_bmcs + self.dead}")
        if self.ipmi_bmcs:
            out.append(f"127.{self.octet}.2.1-{self.ipmi_bmcs + self.dead}")
        if self.libvirt_domains:
            out.append(self.libvirt_address)
        return out

    def system_mac(self, bmc: int, system: int, nic: int) -> str:
        return f"52:54:{self.octet:02x}:{bmc:02x}:{system:02x}:{nic:02x}"

    def system_uuid(self, kind: str, bmc: int, system: int) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.octet}/{kind}/{bmc}/{system}"))


@dataclass
class LabState:
    """What ``lab up`` started; saved as ``lab.json`` in the lab directory."""

    directory: str
    spec: dict[str, Any]
    pids: dict[str, int] = field(default_factory=dict)
    ranges: list[str] = field(default_factory=list)
    ironic_url: str | None = None
    ca_bundle: str | None = None
    credentials_file: str | None = None
    postgres_data: str | None = None
    #: the provisioning network's description (:meth:`ProvNet.describe`), when there is one
    provnet: dict[str, Any] | None = None

    def save(self) -> None:
        Path(self.directory, "lab.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        path = directory / "lab.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def env(self) -> dict[str, str]:
        """Environment that points metalctl at this lab (``metalctl lab env``)."""
        env = {"METALCTL_CREDENTIALS_FILE": str(self.credentials_file),
               "METALCTL_CA_BUNDLE": str(self.ca_bundle),
               "METALCTL_STORE": str(Path(self.directory, "metalctl.db")),
               # rack.lab.yaml's ${METALCTL_LAB_DIR}/...: installer, operator key, site
               "METALCTL_LAB_DIR": str(self.directory),
               "METALCTL_KNOWN_HOSTS": str(Path(self.directory, "known_hosts"))}
        if self.ironic_url:
            env["METALCTL_IRONIC_URL"] = self.ironic_url
        if self.provnet and self.provnet.get("boot_serve"):
            # where `metalctl run`/`provision --serve` listens: dnsmasq sends iPXE there
            env["METALCTL_BOOT_SERVE"] = str(self.provnet["boot_serve"])
            # its pins and leases: the boot service binds each install to its machine
            env["METALCTL_DNSMASQ_CONF"] = str(Path(self.directory,
                                                    f"provnet-{self.provnet['net']}",
                                                    "dnsmasq.conf"))
        return env
