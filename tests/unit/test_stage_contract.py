"""Every stage's per-item result satisfies the stage contract
(:class:`metalctl.model.result.StageResult`: key, ok, reason, evidence), so the run, the
CLI and a library caller read any stage's outcome the same way (docs/architecture.md)."""

from __future__ import annotations

import json

import pytest

from metalctl.audit.model import FAIL, HostAudit, Result
from metalctl.enroll.reconcile import Action, EnrollResult
from metalctl.handoff.model import HandoffResult, HandoffStatus
from metalctl.harden.run import HostResult
from metalctl.model.compliance import HardenStatus
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.model.result import StageResult
from metalctl.profile.run import ProfileResult
from metalctl.provision.stage import ProvisionResult

GOOD_AND_BAD = {
    "discover": (DiscoveryRecord("10.0.0.1", 623, Protocol.IPMI, Status.OK),
                 DiscoveryRecord("10.0.0.2", 623, Protocol.IPMI, Status.AUTH_FAILED,
                                 error="every credential refused")),
    "enroll": (EnrollResult("k1", "n1", Action.CREATED, uuid="u1"),
               EnrollResult("k2", "n2", Action.FAILED, error="Ironic said 409")),
    "profile": (ProfileResult("k1", True, None, {"profile": "hpc"}),
                ProfileResult("k2", False, "needs 24 GiB of 1G pages on NUMA node 1")),
    "provision": (ProvisionResult("h1", "installed", address="10.0.0.5", key="k1"),
                  ProvisionResult("h2", "timeout", "no end callback by the deadline")),
    "harden": (HostResult("h1", HardenStatus.HARDENED, key="k1"),
               HostResult("h2", HardenStatus.FAILED, error="libvirtd did not start")),
    "audit": (HostAudit("h1", key="k1", gate="high"),
              HostAudit("h2", gate="high", results=[Result(
                  host="h2", rule="SSH-008", title="no weak MACs", severity="high",
                  status=FAIL)])),
    "handoff": (HandoffResult("h1", HandoffStatus.HANDED_OFF, key="k1"),
                HandoffResult("h2", HandoffStatus.FAILED, error="Placement has VCPU 3")),
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


def test_a_stage_given_hosts_of_the_store_reports_their_node_keys() -> None:
    # hosts without a store are known by their names; a run's hosts carry the node key
    assert HostResult("h9", HardenStatus.HARDENED).key == "h9"
    assert HostAudit("h9").key == "h9"
