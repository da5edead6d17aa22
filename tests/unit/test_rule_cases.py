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
