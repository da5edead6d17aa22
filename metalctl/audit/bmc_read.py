"""Read what a node's BMC says, for the BMC rules given, into :class:`BmcFacts`.

The only I/O of the BMC audit, read-only, through the boundary modules (sushy behind
:class:`metalctl.bmc.bios.RedfishBios`, the guarded probes of :mod:`metalctl.bmc.checks`,
RMCP+ through :mod:`metalctl.bmc.ipmi`). Each fact is read at most once, in rule order,
and only when a rule needs it; a failed read is recorded as the fact's error, never
raised, so one bad request costs one rule its verdict, not the others.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from metalctl.audit.bmc_facts import (
    BIOS,
    TLS,
    UNAUTHENTICATED,
    WRONG_CREDENTIALS,
    BmcFacts,
    Probe,
)
from metalctl.bmc import checks, ipmi
from metalctl.bmc.bios import RedfishBios
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.errors import BmcAuthFailed, BmcTLSError, BmcUnreachable, MetalctlError
from metalctl.model.node import DiscoveryRecord, Protocol
from metalctl.rules.catalogue import Rule
from metalctl.store import Store

LOG = logging.getLogger(__name__)

#: check.test -> the fact it judges (bios_version reads the store's record only)
NEEDS = {"bios_drift": BIOS, "unauthenticated": UNAUTHENTICATED,
         "wrong_credentials": WRONG_CREDENTIALS, "tls": TLS}


def read(store: Store, node: dict[str, Any], rules: list[Rule],
         creds: CredentialSet | None, verify: bool | str, budget: Budget) -> BmcFacts:
    """What ``node``'s BMC says about the facts ``rules`` judge (read-only)."""
    rec = DiscoveryRecord.from_dict(node["record"])
    facts = BmcFacts(
        label=node["name"] or node["key"],
        source=rec.endpoint.url if rec.endpoint else rec.address,
        protocol=rec.protocol.value if rec.protocol else None, scheme=rec.scheme,
        system={k: v for k, v in (("Manufacturer", rec.manufacturer),
                                  ("BiosVersion", rec.bios_version)) if v is not None})
    facts.intent_profile, facts.intent = _bios_intent(store, node["key"])
    wanted = [NEEDS[t] for t in dict.fromkeys(str(r.check.get("test")) for r in rules)
              if t in NEEDS]
    for fact in wanted:
        try:
            _read_one(facts, fact, rec, creds, verify, budget)
        except BmcUnreachable as exc:
            facts.errors[fact] = f"BMC unreachable: {exc.reason}"
        except MetalctlError as exc:
            facts.errors[fact] = str(exc)
    return facts


def _read_one(facts: BmcFacts, fact: str, rec: DiscoveryRecord, creds: CredentialSet | None,
              verify: bool | str, budget: Budget) -> None:
    if rec.protocol is Protocol.IPMI:
        if fact == WRONG_CREDENTIALS:
            facts.probes[fact] = Probe(refused=_ipmi_refuses_bogus(rec, budget))
        return  # nothing else to ask an IPMI-only BMC
    if rec.protocol is not Protocol.REDFISH:
        return
    base_url = facts.source
    if fact == BIOS:
        if not facts.intent:
            return  # nothing to compare with: no login for it
        if creds is None:
            facts.unread[fact] = "no credentials to read the BIOS"
            return
        with RedfishBios(rec, creds, verify, budget) as backend:
            facts.bios = backend.state()
    elif fact in (UNAUTHENTICATED, WRONG_CREDENTIALS):
        bogus = ("metalctl-audit", secrets.token_urlsafe(12)) \
            if fact == WRONG_CREDENTIALS else None
        facts.probes[fact] = Probe(http_status=checks.status_of(
            base_url, rec.address, "/redfish/v1/Systems", verify, bogus, budget))
    elif fact == TLS and (rec.scheme or "https") == "https":
        try:
            # verify=False (an operator's --insecure) still judges against the system's
            # CAs: the rule is about the certificate, not about this scan's transport
            checks.status_of(base_url, rec.address, "/redfish/v1/", verify or True,
                             None, budget)
            facts.probes[fact] = Probe(verified=True)
        except BmcTLSError:
            facts.probes[fact] = Probe(verified=False)


def _bios_intent(store: Store, key: str) -> tuple[str | None, dict[str, str] | None]:
    """The profile and vendor attributes the BIOS should hold: those applied (recorded by
    the profile stage), else those of the derived plan."""
    applied = store.get_data(key, "bios") or {}
    if applied.get("attributes"):
        return applied.get("profile"), applied["attributes"]
    planned = store.get_data(key, "plan") or {}
    return planned.get("profile"), (planned.get("bios") or {}).get("attributes")


def _ipmi_refuses_bogus(rec: DiscoveryRecord, budget: Budget) -> bool:
    """Whether the BMC refuses an RMCP+ session to a random user and password.

    Raises:
        MetalctlError: neither refused nor accepted (no answer, a broken session).
    """
    bogus = CredentialSet("audit-bogus", (Credential("metalctl-audit",
                                                     Secret(secrets.token_urlsafe(12))),))
    try:
        cmd, _ = ipmi.login(rec.address, rec.port or 623, bogus, budget)
    except BmcAuthFailed:
        return True
    try:  # accepted: do not leave the session open until the BMC times it out
        cmd.ipmi_session.logout()
    except Exception as exc:  # noqa: BLE001 - best effort, as metalctl.bmc.ipmi.discover
        LOG.debug("BMC %s: logout failed: %s", rec.address, type(exc).__name__)
    return False
