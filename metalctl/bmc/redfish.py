"""Redfish inventory through sushy (DMTF DSP0266 1.x; schema bundle 2023.x).

The only module that imports sushy. sushy errors are translated here into the
:mod:`metalctl.errors` BMC tree, by exception class (the original requests
exception travels as ``__context__`` of sushy's ConnectionError).

Budget notes: sushy's defaults (``server_side_retries=10`` × 3 s) make one BMC
that answers 500 cost ~30 s, so discovery passes 0 (no 5xx retry). Its transport
retry count treats 0 as 3 (``retries = self._server_side_retries or 3``) with
``server_side_retries_delay`` between tries; the presence probe has already shown
the BMC answers, so those retries only cover a connection dropped mid-inventory.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import requests
import sushy
from sushy import auth as sushy_auth
from sushy import connector as sushy_connector
from sushy import exceptions as sushy_exc

from metalctl.bmc import inventory, probe, systems
from metalctl.bmc.http import BmcSession, Deadline
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet
from metalctl.errors import (
    BmcAuthFailed,
    BmcError,
    BmcProtocolError,
    BmcTimeout,
    BmcTLSError,
    BmcUnreachable,
)
from metalctl.model.hardware import Hardware
from metalctl.model.node import DiscoveryRecord, Protocol, Status

LOG = logging.getLogger(__name__)
SOURCE = "redfish"


def translate(exc: Exception, address: str) -> BmcError:
    """Map a sushy exception to metalctl's BMC error classes."""
    if isinstance(exc, sushy_exc.AccessError):
        return BmcAuthFailed(address=address, reason=f"HTTP {exc.status_code}: access denied")
    if isinstance(exc, sushy_exc.ServerSideError):
        return BmcProtocolError(address=address, reason=f"HTTP {exc.status_code} from {_path(exc)}")
    if isinstance(exc, sushy_exc.HTTPError):
        return BmcProtocolError(address=address, reason=f"HTTP {exc.status_code} from {_path(exc)}")
    if isinstance(exc, sushy_exc.ConnectionError):
        cause = exc.__context__
        if isinstance(cause, requests.exceptions.SSLError):
            return BmcTLSError(address=address, reason="TLS verification failed")
        if isinstance(cause, requests.exceptions.Timeout):
            return BmcTimeout(address=address, reason="Redfish request timed out")
        return BmcUnreachable(address=address, reason="connection lost")
    if isinstance(exc, sushy_exc.SushyError):
        return BmcProtocolError(address=address, reason=type(exc).__name__)
    return BmcProtocolError(address=address, reason=f"{type(exc).__name__}: {exc}")


#: what sushy raises when a payload has the wrong shape (a string where an object
#: belongs, a missing key it does not guard): a BMC's answer is untrusted input
MALFORMED = (AttributeError, TypeError, KeyError, ValueError, IndexError)


def malformed(exc: Exception, address: str) -> BmcProtocolError:
    """A payload sushy could not read."""
    return BmcProtocolError(address=address,
                            reason=f"malformed Redfish answer ({type(exc).__name__})")


def _path(exc: sushy_exc.HTTPError) -> str:
    url = getattr(exc, "url", "") or ""
    return url.split("://", 1)[-1].split("/", 1)[-1] if url else "?"


def _connector(base_url: str, address: str, verify: bool | str, budget: Budget,
               deadline: Deadline) -> tuple[sushy_connector.Connector, BmcSession]:
    """sushy's connector with its session replaced by the guarded one (one origin,
    bounded bodies, the BMC's deadline); see :mod:`metalctl.bmc.http`."""
    conn = sushy_connector.Connector(
        base_url, verify=verify,
        # 5xx is not retried during discovery: an optional resource that fails is
        # recorded as unknown; a required one makes the address a protocol-error.
        server_side_retries=0,
        # transport retries: sushy uses `or 3`, so 0 would mean 3; this is its delay
        server_side_retries_delay=budget.backoff_s,
        default_request_timeout=budget.read_timeout_s,
        connect_timeout=budget.connect_timeout_s)
    guarded = BmcSession(base_url, address, deadline)
    guarded.headers.update(conn._session.headers)  # noqa: SLF001 - sushy keeps no setter
    conn._session.close()  # noqa: SLF001
    conn._session = guarded  # noqa: SLF001
    return conn, guarded


def connect(base_url: str, address: str, cred: Credential, verify: bool | str,
            budget: Budget, deadline: Deadline | None = None) -> sushy.Sushy:
    """Open an authenticated sushy root whose every request stays on ``base_url``.

    Raises:
        BmcError: translated from sushy (auth failure, TLS, timeout, 5xx), or a link or
            redirect to another origin (protocol-error), or the deadline (timeout).
    """
    deadline = deadline or Deadline(budget.deadline_s)
    conn, guarded = _connector(base_url, address, verify, budget, deadline)
    root = None
    try:
        root = sushy.Sushy(
            base_url,
            auth=sushy_auth.SessionOrBasicAuth(username=cred.username,
                                               password=cred.password.reveal()),
            verify=verify,
            connector=conn,
            # registries named by the BMC are fetched through the same guard (never
            # from another host: sushy would otherwise use plain requests for them)
            public_connector=guarded,
        )
        # Authentication is lazy in sushy; touch an authenticated resource now so a
        # wrong password fails here, per credential, not later mid-inventory.
        root.get_system_collection()
    except BaseException as exc:
        logout(root, address)  # a session may exist even though this login failed
        if isinstance(exc, (sushy_exc.SushyError, requests.exceptions.RequestException)):
            raise translate(exc, address) from None
        if isinstance(exc, MALFORMED):
            raise malformed(exc, address) from None
        raise
    return root


def logout(root: sushy.Sushy | None, address: str) -> None:
    """End the Redfish session now: DELETE its resource and close the connections.

    sushy ends a session only in ``Sushy.__del__``, that is whenever the garbage
    collector gets to it, on whichever thread it happens to run. BMCs hold few session
    slots (some a handful), and a finaliser that runs inside another request's thread
    stalls that request, so every login here is paired with a logout. Best effort: a
    BMC that is past its deadline or refuses keeps the session until its own timeout.
    """
    if root is None:
        return
    auth, root._auth = getattr(root, "_auth", None), None  # noqa: SLF001 - disarm __del__
    if auth is not None:
        try:
            auth.close()
        except Exception as exc:  # noqa: BLE001 - best effort; the work is already done
            LOG.debug("BMC %s: session not closed: %s", address, type(exc).__name__)
    with contextlib.suppress(Exception):
        root._conn.close()  # noqa: SLF001 - pooled sockets to the BMC


@contextlib.contextmanager
def session(base_url: str, address: str, creds: CredentialSet, verify: bool | str,
            budget: Budget, deadline: Deadline | None = None
            ) -> Iterator[tuple[sushy.Sushy, Credential]]:
    """:func:`login`, and :func:`logout` when the block ends, however it ends."""
    root, cred = login(base_url, address, creds, verify, budget, deadline)
    try:
        yield root, cred
    finally:
        logout(root, address)


def login(base_url: str, address: str, creds: CredentialSet, verify: bool | str,
          budget: Budget, deadline: Deadline | None = None) -> tuple[sushy.Sushy, Credential]:
    """Try each credential of the set in order; return the first that works.

    Raises:
        BmcAuthFailed: every credential was rejected (the message names the set, never
            a password).
        BmcError: a non-auth failure stops the attempts at once.
    """
    for cred in creds.entries:
        try:
            return connect(base_url, address, cred, verify, budget, deadline), cred
        except BmcAuthFailed:
            LOG.debug("BMC %s: user %s rejected", address, cred.username)
    raise BmcAuthFailed(address=address,
                        reason=f"all {len(creds.entries)} credential(s) of set "
                               f"{creds.name!r} rejected")


def discover(address: str, port: int, scheme: str, creds: CredentialSet,
             verify: bool | str, budget: Budget) -> list[DiscoveryRecord]:
    """Probe, log in and read every ComputerSystem behind one Redfish service.

    Returns one record per system (status ``ok``).

    Raises:
        BmcError: the service is absent, unreachable or refuses every credential.
    """
    host = f"[{address}]" if ":" in address else address
    default = 443 if scheme == "https" else 80
    base_url = f"{scheme}://{host}" + ("" if port == default else f":{port}")
    deadline = Deadline(budget.deadline_s)  # one wall-clock budget for this BMC
    try:
        with probe.warnings_silenced(verify):
            return _discover(address, port, scheme, base_url, creds, verify, budget, deadline)
    finally:
        deadline.cancel()


def _discover(address: str, port: int, scheme: str, base_url: str, creds: CredentialSet,
              verify: bool | str, budget: Budget, deadline: Deadline) -> list[DiscoveryRecord]:
    presence = probe.probe_redfish(base_url, address, verify, budget, deadline)
    with session(base_url, address, creds, verify, budget, deadline) as (root, cred):
        return _inventory(address, port, scheme, presence, root, cred, creds.name)


def _inventory(address: str, port: int, scheme: str, presence: probe.RedfishPresence,
               root: sushy.Sushy, cred: Credential, set_name: str) -> list[DiscoveryRecord]:
    vendor = presence.vendor or _json(root).get("Vendor")
    records = []
    try:
        collection = root.get_system_collection()
        # bounded before any member is fetched (get_members reads every one)
        if len(collection.members_identities) > inventory.MAX_MEMBERS:
            raise BmcProtocolError(address=address, reason=f"{len(collection.members_identities)}"
                                                          " systems listed")
        members = collection.get_members()
    except (sushy_exc.SushyError, requests.exceptions.RequestException) as exc:
        raise translate(exc, address) from None
    except MALFORMED as exc:
        raise malformed(exc, address) from None
    reader = inventory.RawReader(lambda path: root._conn.get(path=path).json(),  # noqa: SLF001
                                 address)
    service = _json(root)
    managers = {str(m.get("@odata.id") or "").rstrip("/"): m
                for m in reader.members(service.get("Managers"))}
    # per BMC, not per system: the host interfaces and the chassis' adapters are shared
    hidden = inventory.host_interface_macs(reader, list(managers.values()))
    adapters = inventory.adapters_by_mac(reader, reader.members(service.get("Chassis")))
    docs = [(system, _json(system)) for system in members]
    hosts = [(s, d) for s, d in docs if not systems.is_dpu(d)]
    dpus: dict[int, list[dict[str, Any]]] = {}
    for _s, dpu in ((s, d) for s, d in docs if systems.is_dpu(d)):
        host = systems.dpu_host(reader, dpu, [d for _, d in hosts])
        if host is None:
            LOG.warning("BMC %s: DPU %s is in no system this BMC serves; not reported "
                        "as a server", address, dpu.get("@odata.id"))
            continue
        dpus.setdefault(host, []).append(systems.dpu_summary(dpu))
    for i, (system, doc) in enumerate(hosts):
        started = time.monotonic()
        hardware = Hardware(cpu=inventory.cpu(reader, doc),
                            memory_gib=inventory.memory_gib(reader, doc),
                            nics=inventory.nics(reader, doc, hidden, adapters)
                            or inventory.network_interface_nics(reader, doc, adapters),
                            disks=inventory.disks(reader, doc))
        record = _record(address, port, scheme, system, vendor,
                         systems.manager_firmware(reader, doc, managers), set_name,
                         started, cred.username, hardware)
        records.append(replace(record, rack=systems.rack(reader, doc),
                               dpus=tuple(dpus.get(i, ()))))
    LOG.debug("BMC %s: %d system(s) via %s", address, len(records), cred.username)
    return records


def _json(resource: Any) -> dict[str, Any]:
    try:
        return resource.json or {}
    except Exception:  # noqa: BLE001 - optional raw view; absence is not an error
        return {}


def _optional(what: str, address: str, fn: Any) -> Any:
    """Read an optional part of the schema; log and return None when the BMC lacks it.

    Many BMCs (and sushy-tools' fake driver) do not serve Processors, Memory or
    Storage; DSP0266 makes them optional, so absence is 'unknown', not failure.
    """
    try:
        return fn()
    except (sushy_exc.SushyError, requests.exceptions.RequestException, KeyError,
            TypeError, ValueError) as exc:
        LOG.debug("BMC %s: %s unavailable: %s", address, what, type(exc).__name__)
        return None


def _enum(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _record(address: str, port: int, scheme: str, system: Any, vendor: str | None,
            firmware: str | None, creds_name: str, started: float,
            username: str, hardware: Hardware) -> DiscoveryRecord:
    boot = _optional("Boot", address, lambda: system.boot)
    return DiscoveryRecord(
        address=address, port=port, protocol=Protocol.REDFISH, status=Status.OK,
        scheme=scheme, system_id=system.path, uuid=(system.uuid or "").lower() or None,
        name=system.name, vendor=vendor or system.manufacturer,
        manufacturer=system.manufacturer, model=system.model, serial=system.serial_number,
        power_state=_enum(system.power_state), bios_version=system.bios_version,
        boot_mode=_enum(getattr(boot, "mode", None)), bmc_firmware=firmware,
        hardware=hardware, credentials=creds_name, bmc_username=username,
        duration_s=round(time.monotonic() - started, 3),
    )
