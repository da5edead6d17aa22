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


#: the BMC rules' cases where there was nothing to judge (a resource or property absent,
#: a request unanswered, no credentials, not the BMC's protocol): never a pass
NOTHING_TO_JUDGE = ("error", "notchecked", "notapplicable")


def test_every_rule_is_proven_both_ways():
    """The meta-test: every rule, host or BMC, has a failing and a passing case; a BMC
    rule also has one where the BMC gave nothing to judge."""
    def sides_lacking(rid):
        need = ["pass", "fail"] if rid in RULES and "bmc" not in RULES[rid].platforms else \
            ["pass", "fail", "/".join(NOTHING_TO_JUDGE)]
        have = CASES.get(rid, {})
        return [side for side in need
                if not any(have.get(s) for s in side.split("/"))]
    lacking = {rid: sides_lacking(rid) for rid in RULES}
    lacking = {rid: sides for rid, sides in lacking.items() if sides}
    assert not lacking, f"rules without a case (tests/data/rule-cases): {lacking}"
    assert not set(CASES) - set(RULES), set(CASES) - set(RULES)


def test_a_bmc_case_is_judged_as_a_bmc():
    """The BMC cases go through the BMC audit's evaluation, not the host engine."""
    bmc = [rid for rid, rule in RULES.items() if "bmc" in rule.platforms]
    assert bmc, "no BMC rules in the catalogue"
    assert all(CASES[rid]["pass"][0]["file"] == "bmc.yaml" for rid in bmc)
