"""Every rule proven both ways on recorded host facts (``tests/data/rule-cases``): a host
where its title's claim is false fails it, one where it holds passes it."""

from __future__ import annotations

import pytest
import rulecases

from metalctl.rules import catalogue

RULES = {r.id: r for r in catalogue.load()}
CASES = rulecases.load()
PARAMS = [pytest.param(rid, side, case, id=f"{rid}-{side}-{i}")
          for rid, sides in sorted(CASES.items()) for side, cases in sorted(sides.items())
          for i, case in enumerate(cases)]


@pytest.mark.parametrize(("rid", "side", "case"), PARAMS)
def test_rule_case(rid, side, case):
    assert rid in RULES, f"{case['file']}: no rule {rid}"
    result = rulecases.judge(RULES[rid], case)
    expect = case.get("expect", side)
    assert result.status == expect, (case.get("name"), result.evidence, result.remediation)
    ev = result.evidence
    if "actual" in case:
        assert case["actual"] in (ev.actual or ""), ev
    if "detail" in case:
        assert case["detail"] in (ev.detail or ""), ev
    if "remediation" in case:
        assert case["remediation"] in (result.remediation or ""), result.remediation
    for text in case.get("not_in_remediation", []):
        assert text not in (result.remediation or ""), result.remediation
        assert text not in (ev.detail or ""), ev.detail


#: rules no recorded host facts can prove: the BMC rules are evaluated against a BMC
#: (Redfish/IPMI), not on gathered host facts; tests/integration/test_audit_bmc.py
#: proves them on the lab's BMCs
NOT_ON_HOST_FACTS = {r for r, rule in RULES.items() if "bmc" in rule.platforms}


def test_every_rule_is_proven_both_ways():
    """The meta-test: every host rule has a failing and a passing case."""
    lacking = {rid: [side for side in ("pass", "fail") if not CASES.get(rid, {}).get(side)]
               for rid in RULES if rid not in NOT_ON_HOST_FACTS}
    lacking = {rid: sides for rid, sides in lacking.items() if sides}
    assert not lacking, f"rules without a case (tests/data/rule-cases): {lacking}"
    assert not set(CASES) - set(RULES), set(CASES) - set(RULES)
