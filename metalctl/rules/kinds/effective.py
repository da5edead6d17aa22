"""Check-only kinds: the effective state (probes, sVirt labels, certificates). Their
remediation is the rule's text. (``sshd``: :mod:`.sshd`; ``sysctl``, ``cmdline`` and
``audit_rules``: :mod:`.kernel`.)
"""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.certcheck import check_certificate
from metalctl.rules.gather import GatherSpec
from metalctl.rules.kinds import STR, STRS, gather_probe, register
from metalctl.rules.plan import COMPLIANT, NOTAPPLICABLE, NOTCHECKED, Check, CheckOutcome


def _probe(name: str, command: str):  # noqa: ANN202 - a Gather
    def gather(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
        spec.probes[name] = command

    return gather


def _gather_scoped(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    gather_probe(rule, c, spec)
    spec.exists.update(c.get("scope", []))


@register("probe_lines", body={"probe": STR, "scope": {**STRS, "minItems": 1}},
          required=("probe",), gather=_gather_scoped)
def k_probe_lines(ck: Check) -> CheckOutcome:
    """A read-only probe whose output lines are findings (empty output = compliant). With
    ``scope`` (the paths it searches), none of them existing is ``notchecked``: a search
    of nothing finds nothing and proves nothing."""
    scope = ck.body.get("scope") or []
    if scope and not any(ck.facts.exists.get(p) for p in scope):
        return ck.outcome(NOTCHECKED, f"none of {', '.join(scope)} exists on the host")
    out = ck.facts.probes.get(ck.rule.id, "").strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return ck.outcome(COMPLIANT, ck.body["probe"][:60], "none", "none")
    more = f" (+{len(lines) - 10})" if len(lines) > 10 else ""
    return ck.manual("none", "; ".join(lines[:10]) + more)


@register(
    "present",
    body={"probe": STR, "expect": STR,
          "fixes": {"type": "object", "minProperties": 1, "additionalProperties": STR}},
    required=("probe", "expect"),
    gather=gather_probe,
)
def k_present(ck: Check) -> CheckOutcome:
    """A read-only probe must print something matching ``expect``; otherwise the first of
    ``fixes`` (regular expression -> remediation) matching what it printed says what would
    fix it on this host (else the rule's remediation)."""
    out = ck.facts.probes.get(ck.rule.id, "")
    m = re.search(ck.body["expect"], out, re.MULTILINE)
    if m:
        line = next((ln for ln in out.splitlines() if m.group(0) in ln), m.group(0))
        return ck.outcome(COMPLIANT, "", ck.body["expect"], line.strip()[:200])
    fix = next((text for pattern, text in (ck.body.get("fixes") or {}).items()
                if re.search(pattern, out, re.MULTILINE)), None)
    seen = "; ".join(ln.strip() for ln in out.splitlines() if ln.strip())[:200]
    return ck.manual(ck.body["expect"], seen or "nothing", fix)


@register(
    "process_labels",
    gather=_probe("qemu-labels", "ps -eo label=,comm= 2>/dev/null | grep -E 'qemu' || true"),
)
def k_process_labels(ck: Check) -> CheckOutcome:
    """Running QEMU processes confined by sVirt, each with its own MCS category pair."""
    out = ck.facts.probes.get("qemu-labels", "")
    rows = [ln.split(None, 1) for ln in out.splitlines() if ln.strip()]
    if not rows:
        return ck.outcome(NOTAPPLICABLE, "no QEMU process running")
    labels = [r[0] for r in rows]
    if not (ck.facts.selinux_enabled or ck.facts.apparmor_enabled):
        return ck.manual(
            "svirt_t / libvirt-<uuid> profile per guest",
            f"{len(rows)} QEMU process(es) unconfined: no LSM active",
        )
    unconfined = [x for x in labels if "svirt" not in x and "libvirt-" not in x]
    cats = [x.rsplit(":", 1)[-1] for x in labels if "svirt" in x]
    shared = len(cats) != len(set(cats))
    if unconfined or shared:
        return ck.manual(
            "confined, distinct MCS pairs",
            f"unconfined: {unconfined}" if unconfined else "shared MCS categories",
        )
    return ck.outcome(COMPLIANT, "ps -eZ", "confined, distinct MCS pairs", ", ".join(labels))


def _gather_certificate(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.content.add(c["path"])
    spec.content.add(c.get("ca", "/etc/pki/CA/cacert.pem"))


@register(
    "certificate",
    body={"path": STR, "ca": STR, "days": {"type": "integer", "minimum": 1}},
    required=("path",),
    gather=_gather_certificate,
)
def k_certificate(ck: Check) -> CheckOutcome:
    """Validity, expiry window and chain of a (public) certificate file on the host."""
    f = ck.facts.file(ck.body["path"])
    if not f.exists or f.content is None:
        return ck.manual("present", "absent")
    ca = ck.facts.file(ck.body.get("ca", "/etc/pki/CA/cacert.pem"))
    problem, summary = check_certificate(
        f.content, ca.content if ca.exists else None, int(ck.body.get("days", 30))
    )
    if problem:
        return ck.manual(
            f"valid > {ck.body.get('days', 30)} days, chained to the site CA",
            f"{ck.body['path']}: {problem}",
        )
    return ck.outcome(COMPLIANT, ck.body["path"], "valid, chained", summary)
