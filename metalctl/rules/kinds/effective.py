"""Check-only kinds: the effective state (``sshd -T``, ``sysctl -a``, ``/proc/cmdline``,
probes, sVirt labels, certificates). Their remediation is the rule's text: changing them
from harden could lock out the management session or change the kernel for every tenant
at once.
"""

from __future__ import annotations

import re
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.certcheck import check_certificate
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.kinds import SCALAR, STR, STRS, gather_probe, register
from metalctl.rules.plan import (
    COMPLIANT,
    ERROR,
    NOTAPPLICABLE,
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


def _sshd_effective(facts: HostFacts) -> dict[str, str] | None:
    out = facts.probes.get("sshd-T")
    if not out or "permitrootlogin" not in out:
        return None
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.strip().partition(" ")
        values.setdefault(key.lower(), value.strip())
    return values


@register(
    "sshd",
    body={
        "key": STR,
        "allowed": {"type": "array", "items": SCALAR},
        "max": {"type": "integer"},
        "min": {"type": "integer"},
        "forbid": STR,
    },
    required=("key",),
    one_of=("allowed", "max", "min", "forbid"),
    gather=_probe("sshd-T", "sshd -T -C user=root,host=localhost,addr=127.0.0.1 2>&1"),
)
def k_sshd(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Judged on ``sshd -T`` (drop-ins and Match blocks resolved), never on sshd_config."""
    values = _sshd_effective(facts)
    if values is None:
        return outcome(
            rule, ERROR, "sshd -T gave no configuration: " + facts.probes.get("sshd-T", "")[:120]
        )
    have = values.get(c["key"].lower())
    if "allowed" in c:
        ok = have in [str(a) for a in c["allowed"]]
        expected = " or ".join(map(str, c["allowed"]))
    elif "max" in c:
        ok = have is not None and have.isdigit() and int(have) <= int(c["max"])
        expected = f"<= {c['max']}"
    elif "min" in c:
        ok = have is not None and have.isdigit() and int(have) >= int(c["min"])
        expected = f">= {c['min']}"
    else:  # forbidden substrings in a list value (ciphers, macs, kex)
        bad = [x for x in (have or "").split(",") if re.search(c["forbid"], x)]
        ok, expected = not bad, f"no {c['forbid']}"
        have = ",".join(bad) or have
    if ok:
        return outcome(rule, COMPLIANT, "sshd -T", expected, have)
    return manual(rule, expected, f"{c['key']} {have}")


@register(
    "sysctl",
    body={"key": STR, "value": SCALAR, "allowed": {"type": "array", "items": SCALAR}},
    required=("key",),
    one_of=("value", "allowed"),
    gather=_probe("sysctl", "sysctl -a 2>/dev/null"),
)
def k_sysctl(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check a kernel parameter's live value; a mismatch is manual (set by a config rule)."""
    values = dict(
        line.split(" = ", 1)
        for line in facts.probes.get("sysctl", "").splitlines()
        if " = " in line
    )
    have = values.get(c["key"])
    if have is None:
        return outcome(rule, NOTAPPLICABLE, f"{c['key']} not present in this kernel")
    want = [str(v) for v in (c["allowed"] if "allowed" in c else [c["value"]])]
    if have.strip() in want:
        return outcome(rule, COMPLIANT, "sysctl", " or ".join(want), have)
    return manual(rule, " or ".join(want), have)


@register(
    "cmdline",
    body={"absent": STRS, "any_of": STRS},
    one_of=("absent", "any_of"),
    gather=_probe("cmdline", "cat /proc/cmdline"),
)
def k_cmdline(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """Check the kernel command line has one of ``any_of`` or none of ``absent`` (manual fix)."""
    args = facts.probes.get("cmdline", "").split()
    if "absent" in c:
        bad = [a for a in args if a in c["absent"]]
        if not bad:
            return outcome(rule, COMPLIANT, "/proc/cmdline", f"none of {c['absent']}", "absent")
        return manual(rule, f"none of {c['absent']}", " ".join(bad))
    found = [a for a in args if any(a == x or a.startswith(x) for x in c["any_of"])]
    if found:
        return outcome(rule, COMPLIANT, "/proc/cmdline", f"one of {c['any_of']}", " ".join(found))
    return manual(rule, f"one of {c['any_of']}", "absent")


@register("probe_lines", body={"probe": STR}, required=("probe",), gather=gather_probe)
def k_probe_lines(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """A read-only probe whose output lines are findings (empty output = compliant)."""
    out = facts.probes.get(rule.id, "").strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return outcome(rule, COMPLIANT, c["probe"][:60], "none", "none")
    return manual(
        rule, "none", "; ".join(lines[:10]) + (f" (+{len(lines) - 10})" if len(lines) > 10 else "")
    )


@register(
    "present", body={"probe": STR, "expect": STR}, required=("probe", "expect"), gather=gather_probe
)
def k_present(
    rule: Rule, c: dict[str, Any], facts: HostFacts, ws: Workspace, plan: RulePlan, ctx: Context
) -> CheckOutcome:
    """A read-only probe must print something matching ``expect``."""
    out = facts.probes.get(rule.id, "")
    m = re.search(c["expect"], out, re.MULTILINE)
    if m:
        line = next((ln for ln in out.splitlines() if m.group(0) in ln), m.group(0))
        return outcome(rule, COMPLIANT, "", c["expect"], line.strip()[:200])
    return manual(
        rule, c["expect"], f"no line matching {c['expect']!r}" if out.strip() else "nothing"
    )


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
