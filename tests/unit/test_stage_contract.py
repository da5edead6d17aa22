"""Every stage's per-item result satisfies the stage contract
(:class:`metalctl.model.result.StageResult`: key, ok, reason, evidence), so the run, the
CLI and a library caller read any stage's outcome the same way (docs/architecture.md)."""

from __future__ import annotations

import json

import pytest

from metalctl.enroll.reconcile import Action, EnrollResult
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.model.result import StageResult
from metalctl.profile.run import ProfileResult

GOOD_AND_BAD = {
    "discover": (DiscoveryRecord("10.0.0.1", 623, Protocol.IPMI, Status.OK),
                 DiscoveryRecord("10.0.0.2", 623, Protocol.IPMI, Status.AUTH_FAILED,
                                 error="every credential refused")),
    "enroll": (EnrollResult("k1", "n1", Action.CREATED, uuid="u1"),
               EnrollResult("k2", "n2", Action.FAILED, error="Ironic said 409")),
    "profile": (ProfileResult("k1", True, None, {"profile": "hpc"}),
                ProfileResult("k2", False, "needs 24 GiB of 1G pages on NUMA node 1")),
}


@pytest.mark.parametrize("stage", sorted(GOOD_AND_BAD))
def test_results_satisfy_the_contract(stage: str) -> None:
    good, bad = GOOD_AND_BAD[stage]
    for result in (good, bad):
        assert isinstance(result, StageResult)
        assert isinstance(result.key, str)
        assert result.key
        json.dumps(result.evidence)  # evidence is data, as the report stores it
    assert good.ok
    assert not bad.ok
    assert bad.reason  # a failure always says why
