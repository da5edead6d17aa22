"""The BMC rules' verdicts from what the BMC said (:class:`BmcFacts`): pure, no I/O.

One function per ``check.test`` (:data:`metalctl.rules.kinds.bmc.TESTS`). Each earns its
pass: a fact that was not read (absent resource or property, failed request, no
credentials) is error, notchecked or notapplicable, never pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from metalctl.audit.bmc_facts import (
    BIOS,
    TLS,
    UNAUTHENTICATED,
    WRONG_CREDENTIALS,
    BmcFacts,
)
from metalctl.audit.model import (
    ERROR,
    FAIL,
    NOTAPPLICABLE,
    NOTCHECKED,
    PASS,
    Evidence,
    Result,
)
from metalctl.model.bios import diff
from metalctl.model.compliance import AuditStatus
from metalctl.rules.catalogue import Rule

REDFISH, IPMI = "redfish", "ipmi"
NOT_REDFISH = "IPMI-only BMC: no Redfish, no TLS, no BIOS attributes"
#: DSP0266: a protected resource answers 401 without (valid) credentials; 403 is a refusal too
REFUSED = (401, 403)


@dataclass(frozen=True)
class Verdict:
    """One rule's status with what it was judged on."""

    status: AuditStatus
    expected: Any = None
    actual: Any = None
    detail: str | None = None


def evaluate(facts: BmcFacts, rules: list[Rule],
             site: Mapping[str, Any] | None = None) -> list[Result]:
    """Each rule's result on these facts (site policy: ``bmc.min_bios_version``)."""
    site = site or {}
    out = []
    for rule in rules:
        test = str(rule.check.get("test"))
        judge = TESTS.get(test)
        if facts.protocol is None:
            v = Verdict(ERROR, detail="the store's record names no BMC protocol; "
                                      "run `metalctl discover` for this node again")
        elif judge is None:  # the kind's schema forbids it; never a silent gap
            v = Verdict(ERROR, detail=f"the BMC audit has no test {test!r}")
        else:
            v = judge(facts, site)
        out.append(to_result(facts, rule, v))
    return out


def to_result(facts: BmcFacts, rule: Rule, v: Verdict) -> Result:
    """The report's result of one verdict (remediation only on a failure)."""
    return Result.of(rule, facts.label, v.status,
                     Evidence(source=facts.source,
                              expected=None if v.expected is None else str(v.expected),
                              actual=None if v.actual is None else str(v.actual),
                              detail=v.detail),
                     rule.remediation)


def _unread(facts: BmcFacts, fact: str) -> Verdict | None:
    """The verdict when ``fact`` was not read (error, or notchecked with the reason)."""
    if fact in facts.errors:
        return Verdict(ERROR, detail=facts.errors[fact])
    if fact in facts.unread:
        return Verdict(NOTCHECKED, detail=facts.unread[fact])
    return None


def _answer(facts: BmcFacts, fact: str, attr: str, untried: str) -> Any:
    """What the probe ``fact`` saw (its ``attr``), or the verdict when it saw nothing:
    the fact not read (error, notchecked), or the probe never made (``untried``)."""
    missing = _unread(facts, fact)
    if missing:
        return missing
    probe = facts.probes.get(fact)
    seen = None if probe is None else getattr(probe, attr)
    return Verdict(ERROR, detail=untried) if seen is None else seen


def bios_drift(facts: BmcFacts, site: Mapping[str, Any]) -> Verdict:
    """BMC-001: every attribute the profile wants is the BIOS's current value, and no
    pending setting would change it on the next reset."""
    if facts.protocol != REDFISH:
        return Verdict(NOTAPPLICABLE, detail=NOT_REDFISH)
    if not facts.intent:
        return Verdict(NOTAPPLICABLE, detail="no profile's BIOS attributes planned or "
                                             "applied for this node")
    missing = _unread(facts, BIOS)
    if missing:
        return missing
    if facts.bios is None:
        return Verdict(ERROR, detail="the BIOS was not read")
    if not facts.bios.current:
        return Verdict(ERROR, detail="the BMC's Bios resource lists no Attributes: "
                                     "nothing to compare the profile with")
    rows = diff(facts.intent, facts.bios)
    drift = []
    for r in rows:
        if r.status == "ok":
            continue
        if r.status == "unsupported":
            drift.append(f"{r.attribute} is not an attribute of this BIOS "
                         f"(want {r.desired})")
        elif r.pending is not None:
            drift.append(f"{r.attribute}={r.current}, pending {r.pending} "
                         f"(want {r.desired})")
        else:
            drift.append(f"{r.attribute}={r.current} (want {r.desired})")
    return Verdict(FAIL if drift else PASS, f"BIOS of profile {facts.intent_profile}",
                   "; ".join(drift) or "all attributes match")


def version_key(text: str | None) -> tuple[int, ...] | None:
    """The comparable version number in a BIOS version string, None when it has none.

    Vendors put a platform family and a date around the number (HPE ``U30 v2.76
    (02/09/2023)``, DMTF's mockups ``P79 v1.45 (12/06/2017)``, Lenovo ``AFE120G-3.10``);
    Dell (``1.13.2``) and Supermicro (``1.4a``) give the bare number. The number is the
    last dotted group outside parentheses; without one, the only run of digits
    (``F20``). Reading every digit would compare the family first (79 > 1: a false pass).
    A trailing letter (``1.4a``) is not compared.
    """
    bare = re.sub(r"\([^)]*\)", " ", text or "")
    dotted = re.findall(r"\d+(?:\.\d+)+", bare)
    if dotted:
        return tuple(int(x) for x in dotted[-1].split("."))
    runs = re.findall(r"\d+", bare)
    return (int(runs[0]),) if len(runs) == 1 else None


def bios_version(facts: BmcFacts, site: Mapping[str, Any]) -> Verdict:
    """BMC-002: the system's BiosVersion is at or above the site's minimum for its
    manufacturer (``bmc.min_bios_version``, keyed by a part of the Manufacturer)."""
    if facts.protocol != REDFISH:
        return Verdict(NOTAPPLICABLE, detail=NOT_REDFISH)
    manufacturer = facts.system.get("Manufacturer")
    minimums = (site.get("bmc") or {}).get("min_bios_version") or {}
    key, want = next(((k, v) for k, v in minimums.items()
                      if str(k).lower() in (manufacturer or "").lower()), (None, None))
    if want is None:
        return Verdict(NOTCHECKED, detail=f"the site declares no minimum for "
                                          f"{manufacturer!r} (bmc.min_bios_version)")
    want_key = version_key(str(want))
    if want_key is None:
        return Verdict(ERROR, detail=f"site policy bmc.min_bios_version.{key}: {want!r} "
                                     "has no version number to compare with")
    have = facts.system.get("BiosVersion")
    have_key = version_key(have)
    if have_key is None:
        return Verdict(ERROR, f">= {want}", have,
                       "the ComputerSystem gives no BiosVersion" if not have else
                       f"no version number in the BiosVersion {have!r}")
    # the version discovery recorded: a firmware update shows after `metalctl discover`
    return Verdict(PASS if have_key >= want_key else FAIL, f">= {want}", have,
                   "BiosVersion as discovery recorded it")


def _refused(fact: str, what: str) -> Callable[[BmcFacts, Mapping[str, Any]], Verdict]:
    def judge(facts: BmcFacts, site: Mapping[str, Any]) -> Verdict:
        if facts.protocol == IPMI and fact == WRONG_CREDENTIALS:
            return _ipmi_refused(facts)
        if facts.protocol != REDFISH:
            return Verdict(NOTAPPLICABLE, detail=NOT_REDFISH)
        status = _answer(facts, fact, "http_status", f"the BMC was not asked {what}")
        if isinstance(status, Verdict):
            return status
        # anything but a refusal fails: DSP0266 requires 401 for a protected resource,
        # and an error page is not proof that the data would not be served
        return Verdict(PASS if status in REFUSED else FAIL, "HTTP 401/403", f"HTTP {status}")
    judge.__doc__ = f"BMC-00x: GET /redfish/v1/Systems {what} is refused (401/403)."
    return judge


def _ipmi_refused(facts: BmcFacts) -> Verdict:
    """BMC-004 on IPMI: an RMCP+ session with a random user and password is refused."""
    refused = _answer(facts, WRONG_CREDENTIALS, "refused",
                      "no RMCP+ login with a random user was tried")
    if isinstance(refused, Verdict):
        return refused
    if refused:
        return Verdict(PASS, "login refused", "refused")
    return Verdict(FAIL, "login refused", "accepted a random user and password")


def tls(facts: BmcFacts, site: Mapping[str, Any]) -> Verdict:
    """BMC-005: Redfish over https with a certificate the site's bundle verifies."""
    if facts.protocol != REDFISH:
        return Verdict(NOTAPPLICABLE, detail=NOT_REDFISH)
    if (facts.scheme or "https") != "https":
        return Verdict(FAIL, "https", facts.scheme)
    verified = _answer(facts, TLS, "verified", "no TLS handshake with the BMC was made")
    if isinstance(verified, Verdict):
        return verified
    if verified:
        return Verdict(PASS, "certificate verified", "verified")
    return Verdict(FAIL, "certificate verified", "not trusted by the site CA bundle")


#: check.test -> its judge (the same names as metalctl.rules.kinds.bmc.TESTS)
TESTS: dict[str, Callable[[BmcFacts, Mapping[str, Any]], Verdict]] = {
    "bios_drift": bios_drift,
    "bios_version": bios_version,
    "unauthenticated": _refused(UNAUTHENTICATED, "without credentials"),
    "wrong_credentials": _refused(WRONG_CREDENTIALS, "with a random user and password"),
    "tls": tls,
}
