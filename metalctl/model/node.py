"""Discovery records and the node lifecycle every stage writes to.

A node moves ``discovered → enrolled → profiled → installed → hardened →
audited → handed-off``; each step is recorded as an :class:`Event` (when, which
stage, what changed, any error) in the store. Once a node is in Ironic, Ironic
is the source of truth for its provisioning state; metalctl only mirrors it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from metalctl.model.hardware import Hardware


class Lifecycle(str, enum.Enum):
    """metalctl's pipeline stages, in order."""

    DISCOVERED = "discovered"
    ENROLLED = "enrolled"
    PROFILED = "profiled"
    INSTALLED = "installed"
    HARDENED = "hardened"
    AUDITED = "audited"
    HANDED_OFF = "handed-off"

    @property
    def rank(self) -> int:
        return list(Lifecycle).index(self)


#: the one package that records each transition (the stage that did the work); the run
#: and the lab never write a state (``tests/unit/test_lifecycle_owners.py`` holds this)
TRANSITION_OWNERS: dict[Lifecycle, str] = {
    Lifecycle.DISCOVERED: "metalctl.discover",
    Lifecycle.ENROLLED: "metalctl.enroll",
    Lifecycle.PROFILED: "metalctl.profile",
    Lifecycle.INSTALLED: "metalctl.provision",  # the install, or adopt() for a host
                                                # installed outside metalctl
    Lifecycle.HARDENED: "metalctl.harden",
    Lifecycle.AUDITED: "metalctl.audit",
    Lifecycle.HANDED_OFF: "metalctl.handoff",
}


class Status(str, enum.Enum):
    """Outcome of probing one address (or one system behind it)."""

    OK = "ok"
    NO_BMC = "no-bmc"
    AUTH_FAILED = "auth-failed"
    TLS_ERROR = "tls-error"
    TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol-error"


class Protocol(str, enum.Enum):
    """The management protocol a BMC answered on."""
    REDFISH = "redfish"
    IPMI = "ipmi"


@dataclass(frozen=True)
class BmcEndpoint:
    """Where a BMC answers. ``scheme`` is ``https``/``http`` for Redfish, ``None`` for IPMI."""

    address: str
    port: int
    protocol: Protocol
    scheme: str | None = None

    @property
    def url(self) -> str:
        """Redfish base URL (no trailing slash); IPMI endpoints render as ``ipmi://addr:port``."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        if self.protocol is Protocol.IPMI:
            return f"ipmi://{host}:{self.port}"
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


@dataclass(frozen=True)
class DiscoveryRecord:
    """One system found behind a BMC, or one address with its failure outcome.

    ``key`` identifies the system across runs: ``<bmc url>/<system id>`` for
    Redfish (one BMC may serve several systems), ``ipmi://addr:port`` for IPMI.
    """

    address: str
    port: int | None
    protocol: Protocol | None
    status: Status
    error: str | None = None
    scheme: str | None = None
    system_id: str | None = None
    uuid: str | None = None
    name: str | None = None
    vendor: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    power_state: str | None = None
    bios_version: str | None = None
    boot_mode: str | None = None
    bmc_firmware: str | None = None
    #: the rack the BMC reports the chassis in (Redfish ``Location.Placement.Rack``)
    rack: str | None = None
    #: DPUs / SmartNICs in this system (``SystemType: DPU``): part of the host, never
    #: nodes of their own (system_id, name, manufacturer, model, serial, offloaded_functions)
    dpus: tuple[dict[str, Any], ...] = ()
    hardware: Hardware = field(default_factory=Hardware)
    credentials: str | None = None  # the *name* of the credential set that worked
    bmc_username: str | None = None  # which user of that set worked (never the password)
    duration_s: float | None = None

    @property
    def endpoint(self) -> BmcEndpoint | None:
        if self.protocol is None or self.port is None:
            return None
        return BmcEndpoint(self.address, self.port, self.protocol, self.scheme)

    @property
    def key(self) -> str:
        ep = self.endpoint
        base = ep.url if ep else self.address
        return f"{base}{self.system_id}" if self.protocol is Protocol.REDFISH else base

    # the stage contract (metalctl.model.result)
    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def reason(self) -> str | None:
        return None if self.ok else f"{self.status.value}: {self.error or ''}".rstrip(": ")

    @property
    def evidence(self) -> dict[str, Any]:
        return {"address": self.address, "protocol": self.protocol and self.protocol.value,
                "manufacturer": self.manufacturer, "model": self.model}

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``metalctl discover -o json`` (keys pinned by a test)."""
        hw = self.hardware.to_dict()
        return {
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol.value if self.protocol else None,
            "status": self.status.value,
            "error": self.error,
            "system_id": self.system_id,
            "uuid": self.uuid,
            "name": self.name,
            "vendor": self.vendor,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "power_state": self.power_state,
            "bios_version": self.bios_version,
            "boot_mode": self.boot_mode,
            "bmc_firmware": self.bmc_firmware,
            "rack": self.rack,
            "dpus": [dict(d) for d in self.dpus],
            "cpu": hw["cpu"],
            "memory_gib": hw["memory_gib"],
            "nics": hw["nics"],
            "disks": hw["disks"],
            "numa_nodes": hw["numa_nodes"],
            "bmc_url": self.endpoint.url if self.endpoint else None,
            "credentials": self.credentials,
            "bmc_username": self.bmc_username,
            "key": self.key,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiscoveryRecord:
        """Rebuild a record from what ``to_dict`` returned (the store's node record)."""
        hw = Hardware.from_dict(
            {k: d.get(k) for k in ("cpu", "memory_gib", "nics", "disks", "numa_nodes")}
        )
        scheme = None
        if d.get("bmc_url") and "://" in d["bmc_url"]:
            scheme = d["bmc_url"].split("://", 1)[0]
            scheme = None if scheme == "ipmi" else scheme
        return cls(
            address=d["address"],
            port=d.get("port"),
            protocol=Protocol(d["protocol"]) if d.get("protocol") else None,
            status=Status(d["status"]),
            error=d.get("error"),
            scheme=scheme,
            hardware=hw,
            dpus=tuple(d.get("dpus") or ()),
            **{k: d.get(k) for k in (
                "system_id", "uuid", "name", "vendor", "manufacturer", "model", "serial",
                "power_state", "bios_version", "boot_mode", "bmc_firmware", "rack", "credentials",
                "bmc_username", "duration_s",
            )},
        )


@dataclass(frozen=True)
class Event:
    """One recorded step of a node's lifecycle."""

    node_key: str
    stage: str
    action: str
    at: str
    changes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class DesiredNode:
    """What one node should look like in Ironic, from discovery or an imported file.

    ``driver_info`` never holds the password; it travels separately as a
    :class:`~metalctl.credentials.Secret` in ``password`` and is written to
    ``driver_info[password_field]`` only in the request to Ironic.
    """

    key: str
    origin: str  # where it came from, as an operator names it: "store" or "file.yaml:nodes[3]"
    driver: str
    driver_info: dict[str, Any]
    password: Any = None  # Secret | None
    password_field: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    resource_class: str | None = None
    conductor_group: str | None = None
    macs: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    credentials: str | None = None  # credential set name, recorded in extra

    @property
    def bmc_identity(self) -> tuple[str, str]:
        return bmc_identity(self.driver, self.driver_info)


def bmc_identity(driver: str, info: dict[str, Any]) -> tuple[str, str]:
    """TripleO's "BMC unique id": address[:port] for IPMI, address + system id for Redfish.

    Ironic itself never enforces that two nodes have different BMCs; this is the
    key metalctl matches on (with any port MAC) to never enroll twice.
    """
    if driver in ("redfish", "idrac"):
        address = str(info.get("redfish_address", "")).rstrip("/").lower()
        if address and "://" not in address:
            address = "https://" + address
        for default in (":443", ":80"):
            scheme = "https" if default == ":443" else "http"
            if address.startswith(scheme + "://") and address.endswith(default):
                address = address[: -len(default)]
        return (address, str(info.get("redfish_system_id", "")).rstrip("/"))
    address = str(info.get("ipmi_address", "")).lower()
    return (address, str(info.get("ipmi_port") or 623))
