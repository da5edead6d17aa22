"""Check-only kinds: the effective state (probes, sVirt labels, certificates). Their
remediation is the rule's text. (``sshd``: :mod:`.sshd`; ``sysctl``, ``cmdline`` and
``audit_rules``: :mod:`.kernel`.)
"""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.certcheck import check_certificate
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.kinds import STR, STRS, gather_probe, register
from metalctl.rules.plan import (
    COMPLIANT,
    NOTAPPLICABLE,
    NOTCHECKED,
    CheckOutcome,
    Context,
    RulePlan,
    Workspace,
    manual,
    outcome,
)


def _probe(name: str, command: str):  # noqa: ANN202 - a Gather
    def gather(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
        spec.probes[name] = command

    return gather


def _gather_scoped(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    gather_probe(rule, c, spec)
    spec.exists.update(c.get("scope", []))


@register("probe_lines", body={"probe": STR, "scope": {**STRS, "minItems": 1}},
          required=("probe",), gather=_gather_scoped)
def k_probe_lines(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """A read-only probe whose output lines are findings (empty output = compliant). With
    ``scope`` (the paths it searches), none of them existing is ``notchecked``: a search
    of nothing finds nothing and proves nothing."""
    scope = c.get("scope") or []
    if scope and not any(facts.exists.get(p) for p in scope):
        return outcome(rule, NOTCHECKED, f"none of {', '.join(scope)} exists on the host")
    out = facts.probes.get(rule.id, "").strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return outcome(rule, COMPLIANT, c["probe"][:60], "none", "none")
    return manual(
        rule, "none", "; ".join(lines[:10]) + (f" (+{len(lines) - 10})" if len(lines) > 10 else "")
    )


@register(
    "present",
    body={"probe": STR, "expect": STR,
          "fixes": {"type": "object", "minProperties": 1, "additionalProperties": STR}},
    required=("probe", "expect"),
    gather=gather_probe,
)
def k_present(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """A read-only probe must print something matching ``expect``; otherwise the first of
    ``fixes`` (regular expression -> remediation) matching what it printed says what would
    fix it on this host (else the rule's remediation)."""
    out = facts.probes.get(rule.id, "")
    m = re.search(c["expect"], out, re.MULTILINE)
    if m:
        line = next((ln for ln in out.splitlines() if m.group(0) in ln), m.group(0))
        return outcome(rule, COMPLIANT, "", c["expect"], line.strip()[:200])
    fix = next((text for pattern, text in (c.get("fixes") or {}).items()
                if re.search(pattern, out, re.MULTILINE)), None)
    seen = "; ".join(ln.strip() for ln in out.splitlines() if ln.strip())[:200]
    return manual(rule, c["expect"], seen or "nothing", fix)


@register(
    "process_labels",
    gather=_probe("qemu-labels", "ps -eo label=,comm= 2>/dev/null | grep -E 'qemu' || true"),
)
def k_process_labels(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Running QEMU processes confined by sVirt, each with its own MCS category pair."""
    rows = [
        ln.split(None, 1) for ln in facts.probes.get("qemu-labels", "").splitlines() if ln.strip()
    ]
    if not rows:
        return outcome(rule, NOTAPPLICABLE, "no QEMU process running")
    labels = [r[0] for r in rows]
    if not (facts.selinux_enabled or facts.apparmor_enabled):
        return manual(
            rule,
            "svirt_t / libvirt-<uuid> profile per guest",
            f"{len(rows)} QEMU process(es) unconfined: no LSM active",
        )
    unconfined = [x for x in labels if "svirt" not in x and "libvirt-" not in x]
    cats = [x.rsplit(":", 1)[-1] for x in labels if "svirt" in x]
    shared = len(cats) != len(set(cats))
    if unconfined or shared:
        return manual(
            rule,
            "confined, distinct MCS pairs",
            f"unconfined: {unconfined}" if unconfined else "shared MCS categories",
        )
    return outcome(rule, COMPLIANT, "ps -eZ", "confined, distinct MCS pairs", ", ".join(labels))


def _gather_certificate(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.content.add(c["path"])
    spec.content.add(c.get("ca", "/etc/pki/CA/cacert.pem"))


@register(
    "certificate",
    body={"path": STR, "ca": STR, "days": {"type": "integer", "minimum": 1}},
    required=("path",),
    gather=_gather_certificate,
)
def k_certificate(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Validity, expiry window and chain of a (public) certificate file on the host."""
    f = facts.file(c["path"])
    if not f.exists or f.content is None:
        return manual(rule, "present", "absent")
    ca = facts.file(c.get("ca", "/etc/pki/CA/cacert.pem"))
    problem, summary = check_certificate(
        f.content, ca.content if ca.exists else None, int(c.get("days", 30))
    )
    if problem:
        return manual(
            rule,
            f"valid > {c.get('days', 30)} days, chained to the site CA",
            f"{c['path']}: {problem}",
        )
    return outcome(rule, COMPLIANT, c["path"], "valid, chained", summary)
