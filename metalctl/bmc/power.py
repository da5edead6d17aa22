"""One-time network boot and power through a node's BMC, for ``provision --via pxe``.

* Redfish (DSP0266 ``ComputerSystem.Boot`` and ``#ComputerSystem.Reset``; DSP2046
  2023.x ``BootSourceOverrideTarget``/``BootSourceOverrideEnabled``/``ResetType``),
  through sushy on the guarded transport (:mod:`metalctl.bmc.http`): the boot source
  override ``Pxe`` for ``Once``, then ``On`` when the system is off, ``ForceRestart``
  when it is on (``ForceOff`` then ``On`` where the BMC does not allow
  ``ForceRestart``); a transitional state (``PoweringOn``/``PoweringOff``) is waited
  out first.
* IPMI (v2.0 §28.12 Set System Boot Options, boot flags; §28.3 Chassis Control) through
  pyghmi: ``set_bootdev('network')`` (next boot only), then ``on`` or ``reset``.

Errors are the :mod:`metalctl.bmc` tree (auth-failed, timeout, protocol-error with the
BMC's own reason, bounded and scrubbed); credentials come from a
:class:`~metalctl.credentials.CredentialSet` and are never logged. Not every BMC honours
``Once``: sushy-tools' libvirt driver makes every override continuous (its own note),
which is why the boot service answers a machine that already fetched its kickstart
with a local-disk script.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
import sushy
from pyghmi import exceptions as ipmi_exc
from sushy import exceptions as sushy_exc

from metalctl import logredact, poll
from metalctl.bmc import ipmi, probe
from metalctl.bmc import redfish as rf
from metalctl.bmc.http import Deadline
from metalctl.budget import Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import BmcError, BmcProtocolError, BmcTimeout, WaitTimeout
from metalctl.model.node import DiscoveryRecord, Protocol

LOG = logging.getLogger(__name__)

ON, OFF = "on", "off"
#: how often a transitional power state is read again
POLL_S = 0.5
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class PowerResult:
    """What was done to one node.

    Attributes:
        address: the BMC.
        power_before: the power state read first (``on``, ``off``, or the BMC's word).
        actions: what was sent, in order (``boot-once:Pxe``, ``On``, ``ForceRestart``,
            ``ForceOff``, ``bootdev:network``, ``reset``, ...).
        duration_s: wall time of the whole exchange.
    """

    address: str
    power_before: str
    actions: tuple[str, ...]
    duration_s: float


# --- Redfish -------------------------------------------------------------------------


def _reason(exc: Exception, address: str) -> BmcError:
    """sushy's exception as a BMC error, with the BMC's own message for a refusal."""
    err = rf.translate(exc, address)
    detail = None
    if isinstance(exc, sushy_exc.HTTPError):
        # the BMC's message, then its @Message.ExtendedInfo (where the real reason is)
        extended = [str(m.get("Message")) for m in (exc.extended_info or [])[:2]
                    if isinstance(m, dict) and m.get("Message")]
        parts = [str(exc.detail or ""), *extended]
        detail = "; ".join(p for i, p in enumerate(parts) if p and p not in parts[:i])
    if isinstance(exc, sushy_exc.InvalidParameterValueError):
        detail = str(exc)
    if detail and isinstance(err, BmcProtocolError):
        text = logredact.defang(logredact.scrub(" ".join(str(detail).split())))
        return BmcProtocolError(address=address,
                                reason=f"{err.kwargs['reason']}: {text[:MAX_REASON_CHARS]}")
    return err


@contextmanager
def _redfish_system(record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                    budget: Budget) -> Iterator[tuple[Any, Deadline]]:
    if record.protocol is not Protocol.REDFISH or not record.system_id or not record.endpoint:
        raise BmcProtocolError(address=record.address,
                               reason="not a Redfish system (no system id)")
    deadline = Deadline(budget.deadline_s)
    try:
        with probe.warnings_silenced(verify), \
                rf.session(record.endpoint.url, record.address, creds, verify, budget,
                           deadline) as (root, _):
            try:
                yield root.get_system(record.system_id), deadline
            except (sushy_exc.SushyError, requests.exceptions.RequestException) as exc:
                raise _reason(exc, record.address) from None
            except rf.MALFORMED as exc:
                raise rf.malformed(exc, record.address) from None
    finally:
        deadline.cancel()


def _state(system: Any) -> str:
    system.refresh(force=True)
    value = system.power_state
    word = str(getattr(value, "value", value) or "unknown")
    return {"On": ON, "Off": OFF}.get(word, word)


def _settle(system: Any, deadline: Deadline, address: str,
            done: Callable[[str], bool]) -> str:
    """Read the power state until ``done(state)``, within the BMC's deadline.

    The last read starts a poll interval before the deadline: at the deadline itself
    the BMC's sockets are shut down, and the read would fail as something else.
    """
    try:
        return poll.wait_for(lambda: _state(system), ready=done,
                             timeout_s=deadline.remaining() - POLL_S, interval_s=POLL_S,
                             what=f"BMC {address}: power state")
    except WaitTimeout as exc:
        raise BmcTimeout(address=address,
                         reason=f"power state still {exc.last!r} at the deadline") from None


def redfish_power_state(record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                        budget: Budget) -> str:
    """The system's power state: ``on``, ``off``, or the BMC's word for another.

    Raises:
        BmcError: login, transport or protocol failure.
    """
    with _redfish_system(record, creds, verify, budget) as (system, _):
        return _state(system)


def redfish_network_boot(record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                         budget: Budget) -> PowerResult:
    """Set a one-time PXE boot and power the system on or restart it.

    Raises:
        BmcError: login, transport or protocol failure (the BMC's refusal included).
    """
    started = time.monotonic()
    actions: list[str] = []
    with _redfish_system(record, creds, verify, budget) as (system, deadline):
        system.set_system_boot_options(target=sushy.BOOT_SOURCE_TARGET_PXE,
                                       enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
        actions.append("boot-once:Pxe")
        before = _settle(system, deadline, record.address, lambda s: s in (ON, OFF))
        if before == OFF:
            system.reset_system(sushy.RESET_ON)
            actions.append("On")
        elif sushy.RESET_FORCE_RESTART in system.get_allowed_reset_system_values():
            system.reset_system(sushy.RESET_FORCE_RESTART)
            actions.append("ForceRestart")
        else:
            system.reset_system(sushy.RESET_FORCE_OFF)
            actions.append("ForceOff")
            # some BMCs apply a power change seconds later: On before Off is lost
            _settle(system, deadline, record.address, lambda s: s == OFF)
            system.reset_system(sushy.RESET_ON)
            actions.append("On")
    LOG.info("BMC %s: network boot of %s (%s)", record.address, record.system_id,
             ", ".join(actions))
    return PowerResult(record.address, before, tuple(actions),
                       round(time.monotonic() - started, 3))


def redfish_power_off(record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                      budget: Budget) -> PowerResult:
    """``ForceOff`` the system when it is not off already.

    Raises:
        BmcError: login, transport or protocol failure.
    """
    started = time.monotonic()
    with _redfish_system(record, creds, verify, budget) as (system, _):
        before = _state(system)
        actions = ()
        if before != OFF:
            system.reset_system(sushy.RESET_FORCE_OFF)
            actions = ("ForceOff",)
    return PowerResult(record.address, before, actions, round(time.monotonic() - started, 3))


# --- IPMI ----------------------------------------------------------------------------


@contextmanager
def _ipmi_session(record: DiscoveryRecord, creds: CredentialSet,
                  budget: Budget) -> Iterator[Any]:
    cmd, _ = ipmi.login(record.address, record.port or 623, creds, budget)
    try:
        yield cmd
    except ipmi_exc.IpmiException as exc:
        raise ipmi.translate(exc, record.address) from None
    finally:
        try:
            cmd.ipmi_session.logout()
        except Exception as exc:  # noqa: BLE001 - best effort; the session times out anyway
            LOG.debug("BMC %s: logout failed: %s", record.address, type(exc).__name__)


def _ipmi_state(cmd: Any) -> str:
    return str(cmd.get_power().get("powerstate") or "unknown")


def ipmi_power_state(record: DiscoveryRecord, creds: CredentialSet, budget: Budget) -> str:
    """``on`` or ``off`` (Get Chassis Status).

    Raises:
        BmcError: login or transport failure.
    """
    with _ipmi_session(record, creds, budget) as cmd:
        return _ipmi_state(cmd)


def ipmi_network_boot(record: DiscoveryRecord, creds: CredentialSet,
                      budget: Budget) -> PowerResult:
    """Boot device ``network`` for the next boot, then power on or hard-reset.

    Raises:
        BmcError: login, transport or a refused command (with the BMC's completion code).
    """
    started = time.monotonic()
    with _ipmi_session(record, creds, budget) as cmd:
        cmd.set_bootdev("network", persist=False)
        actions = ["bootdev:network"]
        before = _ipmi_state(cmd)
        action = "reset" if before == ON else "on"
        cmd.set_power(action)
        actions.append(action)
    LOG.info("BMC %s: network boot (%s)", record.address, ", ".join(actions))
    return PowerResult(record.address, before, tuple(actions),
                       round(time.monotonic() - started, 3))


def ipmi_power_off(record: DiscoveryRecord, creds: CredentialSet,
                   budget: Budget) -> PowerResult:
    """Power off (no OS shutdown) when not off already.

    Raises:
        BmcError: login or transport failure.
    """
    started = time.monotonic()
    with _ipmi_session(record, creds, budget) as cmd:
        before = _ipmi_state(cmd)
        actions: tuple[str, ...] = ()
        if before != OFF:
            cmd.set_power("off")
            actions = ("off",)
    return PowerResult(record.address, before, actions, round(time.monotonic() - started, 3))


# --- by protocol ---------------------------------------------------------------------


def network_boot(record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                 budget: Budget) -> PowerResult:
    """One-time network boot and power on/restart, through whichever BMC the node has.

    Raises:
        BmcError: see :func:`redfish_network_boot` and :func:`ipmi_network_boot`.
    """
    if record.protocol is Protocol.IPMI:
        return ipmi_network_boot(record, creds, budget)
    return redfish_network_boot(record, creds, verify, budget)


def power_state(record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                budget: Budget) -> str:
    """The node's power state through its BMC (``on``, ``off`` or the BMC's word)."""
    if record.protocol is Protocol.IPMI:
        return ipmi_power_state(record, creds, budget)
    return redfish_power_state(record, creds, verify, budget)


def power_off(record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
              budget: Budget) -> PowerResult:
    """Hard power-off through the node's BMC (nothing sent when already off)."""
    if record.protocol is Protocol.IPMI:
        return ipmi_power_off(record, creds, budget)
    return redfish_power_off(record, creds, verify, budget)
