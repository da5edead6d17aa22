"""Evaluate rules against gathered facts and plan the exact changes.

Pure: facts + rules + context in, a :class:`~metalctl.rules.plan.RulePlan` out (per-rule
outcomes, the new content of every file that changes, fix commands, handlers to run).
``--check`` prints the plan as diffs; apply executes it; a second evaluation after
apply must plan nothing (that is how idempotency is verified, not assumed). Each check
kind (:mod:`metalctl.rules.kinds`) declares what it gathers and how it evaluates; this
module knows no kind and no rule id.
"""

from __future__ import annotations

from typing import Any

from metalctl.rules import kinds
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.plan import (
    APT_FILES,
    APT_GLOB,
    APT_SOURCES_GLOB,
    CHANGE,
    COMPLIANT,
    DEFERRED,
    DNF_GLOB,
    ERROR,
    LIBVIRT_CONFS,
    MANUAL,
    NOTAPPLICABLE,
    NOTCHECKED,
    REPORT,
    Check,
    CheckOutcome,
    Context,
    FileChange,
    RulePlan,
    Workspace,
    render,
)

__all__ = ["CHANGE", "COMPLIANT", "DEFERRED", "ERROR", "MANUAL", "NOTAPPLICABLE",
           "NOTCHECKED", "REPORT", "CheckOutcome", "Context", "FileChange", "RulePlan",
           "evaluate", "gather_spec", "pki_sources"]


def gather_spec(rules: list[Rule]) -> GatherSpec:
    """Everything the rules need read from a host, for one round trip."""
    spec = GatherSpec()
    # the context itself reads these (daemon flavour, repositories, relabel state)
    spec.content.update(LIBVIRT_CONFS)
    spec.content.update(APT_FILES)
    spec.globs.update({DNF_GLOB, APT_GLOB, APT_SOURCES_GLOB})
    spec.exists.add("/.autorelabel")
    for rule in rules:
        if rule.when.get("path_exists"):
            spec.exists.add(rule.when["path_exists"])
        kind = kinds.get(rule.kind)
        if kind.gather is not None:
            kind.gather(rule, rule.check, spec)
    return spec


def pki_sources(rules: list[Rule]) -> set[str]:
    """The site-PKI files the rules install (empty: the PKI need not be read)."""
    out: set[str] = set()
    for rule in rules:
        kind = kinds.get(rule.kind)
        if kind.pki_sources is not None:
            out.update(kind.pki_sources(rule.check))
    return out


def evaluate(rules: list[Rule], facts: HostFacts, ctx: Context) -> RulePlan:
    """Every rule's outcome on this host and the plan of changes (nothing is run)."""
    plan = RulePlan(host=ctx.host)
    variables = ctx.variables(facts)
    ws = Workspace(facts)
    for rule in rules:
        why = _not_applicable(rule, facts, variables)
        if why:
            plan.outcomes.append(CheckOutcome(rule.id, rule.severity, rule.title,
                                              NOTAPPLICABLE, why))
            continue
        evaluate_kind = kinds.get(rule.kind).evaluate
        if evaluate_kind is None:  # evaluated elsewhere (the BMC audit)
            continue
        plan.outcomes.append(evaluate_kind(Check(rule, render(rule.check, variables), facts,
                                                 ws, plan, ctx)))
    plan.files = ws.changes()
    changed_rules = {o.rule for o in plan.outcomes if o.status == CHANGE}
    for rule in rules:
        if rule.id in changed_rules:
            for h in rule.notify:
                if h == "libvirtd" and h not in plan.handlers:
                    plan.handlers.append(h)
    return plan


def _not_applicable(rule: Rule, facts: HostFacts, variables: dict[str, Any]) -> str | None:
    if facts.family not in rule.platforms:
        return f"platform {facts.family} not in {', '.join(rule.platforms)}"
    w = rule.when
    if w.get("lsm") and w["lsm"] != variables["lsm"]:
        return f"site LSM is {variables['lsm']}"
    if w.get("init") and w["init"] != facts.init:
        return f"init is {facts.init}"
    if w.get("pkg") and w["pkg"] not in facts.pkg:
        return f"no {w['pkg']} on the host"
    if w.get("path_exists") and not facts.exists.get(w["path_exists"]):
        return f"{w['path_exists']} absent"
    return None
