"""IPMI inventory through pyghmi (IPMI v2.0 rev 1.1, RMCP+).

The only module that imports pyghmi. pyghmi reports every failure as
``IpmiException`` with a text reason and no subclasses, so the mapping from
its reasons to metalctl's classes is unavoidably textual; it is confined to
:func:`translate` and covered by a unit test per reason.

Over IPMI a BMC tells its own identity (FRU 0, system GUID, device id) and
power state; host NIC MACs, CPUs and memory are not part of the standard and
are recorded as unknown, never guessed. Ironic inspection fills them later.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pyghmi import exceptions as ipmi_exc
from pyghmi.ipmi import command
from pyghmi.ipmi.private import session as ipmi_session

from metalctl.bmc import probe
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet
from metalctl.errors import BmcAuthFailed, BmcError, BmcProtocolError, BmcTimeout
from metalctl.model.hardware import Hardware
from metalctl.model.node import DiscoveryRecord, Protocol, Status

LOG = logging.getLogger(__name__)

# pyghmi's reasons (pyghmi/ipmi/private/session.py, constants.rmcp_codes) that mean
# "these credentials are wrong", as opposed to transport trouble.
_AUTH_REASONS = (
    "incorrect password", "unauthorized name", "invalid name", "unauthorized role",
    "insufficient resources", "invalid integrity", "invalid user",
)


def translate(exc: Exception, address: str) -> BmcError:
    """Map a pyghmi exception to metalctl's BMC error classes."""
    reason = (str(exc.args[0]) if exc.args and exc.args[0] else "").strip()
    lowered = reason.lower()
    if any(marker in lowered for marker in _AUTH_REASONS):
        return BmcAuthFailed(address=address, reason="RMCP+ authentication rejected")
    if not reason or "timeout" in lowered or "no longer connected" in lowered:
        return BmcTimeout(address=address, reason="IPMI session did not answer")
    return BmcProtocolError(address=address, reason=f"IPMI: {reason[:160]}")


def _forget(address: str, port: int, cred: Credential) -> None:
    """Drop pyghmi's cached half-open session for these credentials.

    Quirk (pyghmi 1.6.x): a login that failed on a wrong password stays in
    ``Session.initting_sessions``; the next attempt with the same (bmc, user,
    password, port) gets that dead object back and hangs or raises TypeError.
    Re-discovering a BMC in the same process (pipelines, tests) hits this.
    """
    key = (address, cred.username, cred.password.reveal(), port, None)
    ipmi_session.Session.initting_sessions.pop(key, None)


def _session(address: str, port: int, cred: Credential, budget: Budget) -> command.Command:
    """Log in, bounded by the budget.

    pyghmi's login has no overall timeout of its own: a BMC that stops answering
    after RAKP 1 (seen on pyghmi's own server with an unknown user) blocks it
    indefinitely. The login runs in a daemon thread that is abandoned on timeout.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["cmd"] = command.Command(bmc=address, userid=cred.username,
                                         password=cred.password.reveal(), port=port,
                                         keepalive=False)
        except ipmi_exc.IpmiException as exc:
            box["error"] = translate(exc, address)
        except Exception as exc:  # noqa: BLE001 - pyghmi raises struct/key errors on garbage
            box["error"] = BmcProtocolError(address=address,
                                            reason=f"IPMI login: {type(exc).__name__}")

    worker = threading.Thread(target=run, name=f"ipmi-login-{address}", daemon=True)
    worker.start()
    worker.join(budget.read_timeout_s)
    _forget(address, port, cred)
    if "cmd" in box:
        return box["cmd"]
    if "error" in box:
        raise box["error"]
    raise BmcTimeout(address=address,
                     reason=f"IPMI login not completed within {budget.read_timeout_s:g}s")


def login(address: str, port: int, creds: CredentialSet, budget: Budget
          ) -> tuple[command.Command, Credential]:
    """Open an RMCP+ session with the first credential that works.

    Raises:
        BmcAuthFailed: every credential of the set was rejected.
        BmcError: a transport failure stops the attempts.
    """
    for cred in creds.entries:
        try:
            return _session(address, port, cred, budget), cred
        except BmcAuthFailed:
            LOG.debug("BMC %s: IPMI user %s rejected", address, cred.username)
    raise BmcAuthFailed(address=address,
                        reason=f"all {len(creds.entries)} credential(s) of set "
                               f"{creds.name!r} rejected")


def _zero_fru(cmd: command.Command, address: str) -> dict[str, Any]:
    try:
        return dict(cmd.get_inventory_of_component("System") or {})
    except ipmi_exc.IpmiException as exc:
        LOG.debug("BMC %s: FRU 0 unavailable: %s", address, exc)
        return {}


def discover(address: str, port: int, creds: CredentialSet, budget: Budget) -> DiscoveryRecord:
    """Ping, log in and read identity and power state of one IPMI BMC.

    Raises:
        BmcError: no BMC, wrong credentials, or a broken session.
    """
    started = time.monotonic()
    probe.probe_ipmi(address, port, budget)
    cmd, cred = login(address, port, creds, budget)
    try:
        power = cmd.get_power().get("powerstate")
        fru = _zero_fru(cmd, address)
    except ipmi_exc.IpmiException as exc:
        raise translate(exc, address) from None
    finally:
        try:
            cmd.ipmi_session.logout()
        except Exception as exc:  # noqa: BLE001 - best effort; the session times out anyway
            LOG.debug("BMC %s: logout failed: %s", address, type(exc).__name__)
    uuid = fru.get("UUID")  # pyghmi fills it from Get System GUID (IPMI 2.0 §22.14)
    vendor = fru.get("Manufacturer") or fru.get("Board manufacturer") or \
        vendor_of(fru.get("Manufacturer ID"))
    return DiscoveryRecord(
        address=address, port=port, protocol=Protocol.IPMI, status=Status.OK,
        uuid=str(uuid).lower() if uuid else None,
        vendor=vendor, manufacturer=vendor,
        model=fru.get("Product name") or fru.get("Board product name"),
        serial=fru.get("Serial Number") or fru.get("Board serial number"),
        power_state={"on": "On", "off": "Off"}.get(str(power), power),
        bmc_firmware=_firmware(fru), hardware=Hardware(), credentials=creds.name,
        bmc_username=cred.username,
        duration_s=round(time.monotonic() - started, 3),
    )


#: IANA Private Enterprise Numbers of server vendors, as Get Device ID reports them
#: (IPMI 2.0 §20.1 bytes 7-9); the FRU's own manufacturer string wins when present
IANA_VENDORS = {
    343: "Intel", 674: "Dell Inc.", 2: "IBM", 11: "HPE", 47196: "HPE", 19046: "Lenovo",
    10876: "Supermicro", 7244: "Quanta", 37945: "Inspur", 2011: "Huawei", 5771: "Cisco",
    42: "Oracle", 20301: "IBM", 15370: "Giga Computing", 40092: "ASRock Rack",
    3704: "Fujitsu", 49769: "Ampere",
}


def vendor_of(iana: Any) -> str | None:
    """The vendor of an IANA enterprise number (None when unknown or absent)."""
    return IANA_VENDORS.get(iana) if isinstance(iana, int) else None


def _firmware(fru: dict[str, Any]) -> str | None:
    rev = fru.get("firmware_version") or fru.get("Firmware Version")
    return str(rev) if rev is not None else None
