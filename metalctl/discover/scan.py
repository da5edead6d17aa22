"""Stage 1 — discover: find BMCs in address ranges and read their hardware.

Every address is probed concurrently (bounded by ``Budget.concurrency``):
Redfish first (one record per ComputerSystem the service exposes), then IPMI.
An address that is not a usable BMC yields one record with a classified
status (``no-bmc``, ``auth-failed``, ``tls-error``, ``timeout``,
``protocol-error``) and never aborts the scan.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from metalctl import fleet, logredact
from metalctl.bmc import ipmi, redfish
from metalctl.budget import DISCOVERY, Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import BmcError, MetalctlError
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.netaddrs import Target
from metalctl.store import Store

LOG = logging.getLogger(__name__)

#: When both protocols fail, the more specific outcome is reported.
_PRECEDENCE = [Status.AUTH_FAILED, Status.TLS_ERROR, Status.PROTOCOL_ERROR, Status.TIMEOUT,
               Status.NO_BMC]


@dataclass(frozen=True)
class DiscoverOptions:
    """How to probe.

    Attributes:
        protocols: which protocols to try, in order.
        redfish_scheme: ``https`` (default; BMCs serve Redfish over TLS) or ``http``.
        redfish_port: default Redfish port when a target gives none.
        ipmi_port: default RMCP+ UDP port when a target gives none.
        verify: True (system CAs), a CA bundle path, or False (``--insecure``).
        budget: timeouts, retries and concurrency.
    """

    protocols: tuple[Protocol, ...] = (Protocol.REDFISH, Protocol.IPMI)
    redfish_scheme: str = "https"
    redfish_port: int | None = None
    ipmi_port: int = 623
    verify: bool | str = True
    budget: Budget = DISCOVERY


@dataclass(frozen=True)
class Probe:
    """One address of one target, as handed to a worker."""

    address: str
    target: Target


def status_of(exc: BmcError) -> Status:
    """The discovery status for a BMC error class (one class, one status)."""
    return Status(exc.status)


def _plan(target: Target, opts: DiscoverOptions) -> list[tuple[Protocol, str | None, int]]:
    """(protocol, scheme, port) to try for a target, in order."""
    steps: list[tuple[Protocol, str | None, int]] = []
    for proto in opts.protocols:
        if proto is Protocol.REDFISH and target.scheme in (None, "https", "http"):
            scheme = target.scheme or opts.redfish_scheme
            port = target.port or opts.redfish_port or (443 if scheme == "https" else 80)
            steps.append((proto, scheme, port))
        elif proto is Protocol.IPMI and target.scheme in (None, "ipmi"):
            steps.append((proto, None, target.port or opts.ipmi_port))
    return steps


def probe_address(probe: Probe, creds: CredentialSet, opts: DiscoverOptions
                  ) -> list[DiscoveryRecord]:
    """Probe one address with each protocol until one yields systems.

    Never raises for BMC trouble: a failure becomes a record with its status.
    """
    started = time.monotonic()
    failures: list[tuple[Protocol, int, BmcError]] = []
    for proto, scheme, port in _plan(probe.target, opts):
        try:
            if proto is Protocol.REDFISH:
                assert scheme is not None
                records = redfish.discover(probe.address, port, scheme, creds, opts.verify,
                                           opts.budget)
                if records:
                    return records
                failures.append((proto, port, BmcError(address=probe.address,
                                                        reason="Redfish service has no Systems")))
            else:
                return [ipmi.discover(probe.address, port, creds, opts.budget)]
        except BmcError as exc:
            LOG.debug("%s %s:%s: %s", proto.value, probe.address, port, exc)
            failures.append((proto, port, exc))
    return [_failure_record(probe.address, failures, time.monotonic() - started)]


def _failure_record(address: str, failures: list[tuple[Protocol, int, BmcError]],
                    elapsed: float) -> DiscoveryRecord:
    if not failures:
        return DiscoveryRecord(address, None, None, Status.NO_BMC, "no protocol to probe")
    ranked = sorted(failures, key=lambda f: _PRECEDENCE.index(status_of(f[2])))
    proto, port, exc = ranked[0]
    detail = "; ".join(f"{p.value}:{pt}: {e.reason}" for p, pt, e in failures)
    status = status_of(exc)
    return DiscoveryRecord(
        address=address, port=port if status is not Status.NO_BMC else None,
        protocol=proto if status is not Status.NO_BMC else None, status=status,
        error=detail, duration_s=round(elapsed, 3),
    )


def _probes(targets: Sequence[Target]) -> Iterator[Probe]:
    for target in targets:
        for address in target:
            yield Probe(address, target)


def discover(
    targets: Sequence[Target],
    creds: CredentialSet,
    opts: DiscoverOptions | None = None,
    *,
    store: Store | None = None,
    on_result: Callable[[Probe, list[DiscoveryRecord]], None] | None = None,
) -> list[DiscoveryRecord]:
    """Scan ``targets`` and return every record (systems found and failed addresses).

    Records with status ``ok`` are saved to ``store`` as ``discovered`` nodes;
    failed addresses are saved as scan outcomes. Results are sorted by address.

    Raises:
        MetalctlError: only for failures that are not about one BMC (e.g. the store).
    """
    opts = opts or DiscoverOptions()
    logredact.register(e.password for e in creds.entries)  # masked wherever a BMC echoes one
    results: list[DiscoveryRecord] = []

    def work(probe: Probe) -> list[DiscoveryRecord]:
        return [scrubbed(r) for r in probe_address(probe, creds, opts)]

    def done(outcome: fleet.TaskOutcome[Probe, list[DiscoveryRecord]]) -> None:
        records = outcome.value if outcome.ok else [_crash_record(outcome)]
        assert records is not None
        if store is not None:
            _save(store, records)
        if on_result:
            on_result(outcome.item, records)

    for outcome in fleet.run(_probes(targets), work, concurrency=opts.budget.concurrency,
                             on_done=done):
        results.extend(outcome.value if outcome.ok and outcome.value else
                       [_crash_record(outcome)] if not outcome.ok else [])
    return sorted(results, key=_sort_key)


def _crash_record(outcome: fleet.TaskOutcome[Probe, list[DiscoveryRecord]]) -> DiscoveryRecord:
    """An unexpected exception in a worker is reported on that address, never raised."""
    exc = outcome.error
    if isinstance(exc, MetalctlError) and not isinstance(exc, BmcError):
        raise exc
    LOG.warning("address %s: unexpected %s", outcome.item.address, type(exc).__name__)
    return DiscoveryRecord(outcome.item.address, None, None, Status.PROTOCOL_ERROR,
                           logredact.scrub(f"unexpected {type(exc).__name__}: {exc}"))


#: Record fields metalctl fills itself, never from a BMC's answer: kept as they are (a
#: site whose password equals its user name must still enroll with that user name).
_OWN_FIELDS = frozenset({"address", "port", "scheme", "credentials", "bmc_username"})


def scrubbed(value: Any) -> Any:
    """``value`` (a record, its hardware, any nested dataclass) with every string masked.

    A BMC received the password it is probed with, and may send it back in an
    error body or in any string it serves (a model name): nothing it says reaches
    the store or the screen unmasked (see :mod:`metalctl.logredact`).
    """
    if isinstance(value, enum.Enum):  # Status and Protocol are str enums: kept as they are
        return value
    if isinstance(value, str):
        return logredact.scrub(value)
    if isinstance(value, tuple):
        return tuple(scrubbed(v) for v in value)
    if isinstance(value, list):
        return [scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: scrubbed(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: scrubbed(getattr(value, f.name)) for f in dataclasses.fields(value)
                   if f.init and f.name not in _OWN_FIELDS}
        return dataclasses.replace(value, **changes)
    return value


def _save(store: Store, records: Iterable[DiscoveryRecord]) -> None:
    for rec in records:
        if rec.status is Status.OK:
            store.save_discovered(rec)
        else:
            store.save_scan(rec.address, rec.port, rec.status.value, rec.error)


def _sort_key(rec: DiscoveryRecord) -> tuple[int, int, int, str]:
    try:
        ip = ipaddress.ip_address(rec.address)
    except ValueError:
        return (9, 0, rec.port or 0, rec.address + (rec.system_id or ""))
    return (ip.version, int(ip), rec.port or 0, rec.system_id or "")
