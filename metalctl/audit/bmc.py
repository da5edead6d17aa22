"""BMC-side audit: BIOS drift against the node's profile, firmware minimum, authentication
and TLS of the Redfish service. Read-only; every node of the store with a BMC record."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from metalctl.audit.model import (
    ERROR,
    FAIL,
    NOTAPPLICABLE,
    NOTCHECKED,
    PASS,
    Evidence,
    HostAudit,
    Result,
)
from metalctl.bmc import checks, ipmi
from metalctl.bmc.bios import RedfishBios
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.errors import BmcAuthFailed, BmcTLSError, BmcUnreachable, MetalctlError
from metalctl.model.bios import diff
from metalctl.model.node import DiscoveryRecord, Protocol
from metalctl.rules.catalogue import Rule
from metalctl.store import Store


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text or ""))


def check_node(store: Store, node: dict[str, Any], rules: list[Rule],
               creds: CredentialSet | None, verify: bool | str, site: dict[str, Any],
               budget: Budget) -> HostAudit:
    """Run the BMC rules against one node of the store (read-only)."""
    started = time.monotonic()
    rec = DiscoveryRecord.from_dict(node["record"])
    label = node["name"] or node["key"]
    base_url = rec.endpoint.url if rec.endpoint else rec.address
    results: list[Result] = []

    def add(rule: Rule, status: str, expected: Any = None, actual: Any = None,
            detail: str | None = None) -> None:
        results.append(Result(
            host=label, rule=rule.id, title=rule.title, severity=rule.severity, status=status,
            evidence=Evidence(source=base_url,
                              expected=None if expected is None else str(expected),
                              actual=None if actual is None else str(actual), detail=detail),
            remediation=rule.remediation if status == FAIL else None,
            references=rule.references, tags=list(rule.tags)))

    for rule in rules:
        test = rule.check.get("test")
        try:
            if rec.protocol != Protocol.REDFISH:
                if test == "wrong_credentials":
                    _ipmi_wrong_credentials(rec, budget, rule, add)
                else:
                    add(rule, NOTAPPLICABLE, detail="IPMI-only BMC: no Redfish, no TLS, "
                                                    "no BIOS attributes")
                continue
            if test == "bios_drift":
                profile, desired = _bios_intent(store, node["key"])
                if not desired:
                    add(rule, NOTAPPLICABLE, detail="no profile's BIOS attributes planned or "
                                                    "applied for this node")
                    continue
                if creds is None:
                    add(rule, NOTCHECKED, detail="no credentials to read the BIOS")
                    continue
                with RedfishBios(rec, creds, verify, budget) as backend:
                    rows = diff(desired, backend.state())
                drift = [f"{r.attribute}={r.current} (want {r.desired})" for r in rows
                         if r.status != "ok"]
                add(rule, FAIL if drift else PASS, f"BIOS of profile {profile}",
                    "; ".join(drift) or "all attributes match")
            elif test == "bios_version":
                minimums = (site.get("bmc") or {}).get("min_bios_version") or {}
                want = next((v for k, v in minimums.items()
                             if k.lower() in (rec.manufacturer or "").lower()), None)
                if want is None:
                    add(rule, NOTCHECKED, detail="the site declares no minimum for "
                                                 f"{rec.manufacturer!r} (bmc.min_bios_version)")
                else:
                    ok = _version(rec.bios_version) >= _version(str(want))
                    add(rule, PASS if ok else FAIL, f">= {want}", rec.bios_version)
            elif test in ("unauthenticated", "wrong_credentials"):
                bogus = ("metalctl-audit", secrets.token_urlsafe(12)) \
                    if test == "wrong_credentials" else None
                code = checks.status_of(base_url, rec.address, "/redfish/v1/Systems", verify,
                                        bogus, budget)
                add(rule, PASS if code in (401, 403) else FAIL, "HTTP 401/403", f"HTTP {code}")
            elif test == "tls":
                if (rec.scheme or "https") != "https":
                    add(rule, FAIL, "https", rec.scheme)
                    continue
                try:
                    checks.status_of(base_url, rec.address, "/redfish/v1/", verify or True,
                                     None, budget)
                    add(rule, PASS, "certificate verified", "verified")
                except BmcTLSError:
                    add(rule, FAIL, "certificate verified", "not trusted by the site CA bundle")
        except BmcUnreachable as exc:
            add(rule, ERROR, detail=f"BMC unreachable: {exc.reason}")
        except MetalctlError as exc:
            add(rule, ERROR, detail=str(exc))
    return HostAudit(label, kind="bmc", results=results,
                     duration_s=round(time.monotonic() - started, 3))


def _bios_intent(store: Store, key: str) -> tuple[str | None, dict[str, str] | None]:
    """The profile and vendor attributes the BIOS should hold: those applied (recorded by
    the profile stage), else those of the derived plan."""
    applied = store.get_data(key, "bios") or {}
    if applied.get("attributes"):
        return applied.get("profile"), applied["attributes"]
    planned = store.get_data(key, "plan") or {}
    return planned.get("profile"), (planned.get("bios") or {}).get("attributes")


def _ipmi_wrong_credentials(rec: DiscoveryRecord, budget: Budget, rule: Rule, add: Any) -> None:
    bogus = CredentialSet("audit-bogus", (Credential("metalctl-audit",
                                                     Secret(secrets.token_urlsafe(12))),))
    try:
        ipmi.login(rec.address, rec.port or 623, bogus, budget)
    except BmcAuthFailed:
        add(rule, PASS, "login refused", "refused")
        return
    except MetalctlError as exc:
        add(rule, ERROR, detail=str(exc))
        return
    add(rule, FAIL, "login refused", "accepted a random user and password")
