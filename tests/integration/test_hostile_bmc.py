"""A BMC is untrusted input: credentials never leave it, and it cannot hold or exhaust us.

Each case is a real HTTP service on 127.23.0.1 scripted like a hostile BMC, with a
witness listener on another address; the witness must receive nothing at all.
"""

from __future__ import annotations

import gc
import resource
import time

import pytest

from metalctl import discover
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.netaddrs import parse_targets

from .hostile import SERVICE_ROOT, HostileRedfish, Witness, endless, trickle

BMC, PORT = "127.23.0.1", 8000
MARKER = "hostile-marker-Pw-4d1f"
CREDS = CredentialSet("site", (Credential("admin", Secret(MARKER)),))
SESSIONS = "/redfish/v1/SessionService/Sessions"


def run(budget: Budget) -> tuple[DiscoveryRecord, float]:
    opts = discover.DiscoverOptions(protocols=(Protocol.REDFISH,), budget=budget)
    started = time.monotonic()
    [rec] = discover.discover(parse_targets([f"http://{BMC}:{PORT}"]), CREDS, opts)
    return rec, time.monotonic() - started


# The refusals happen as soon as the hostile answer arrives; the timeouts only decide how
# a stall is reported. 5 s once timed out in a full CI run (the in-process server
# stalled under load), so they are generous; the elapsed bounds below stay tight.
FAST = Budget(connect_timeout_s=5, read_timeout_s=20, attempts=1, backoff_s=0, deadline_s=30)


def base_routes(extra: dict) -> dict:
    routes = {("GET", "/redfish/v1"): (200, {}, SERVICE_ROOT),
              ("GET", "/redfish/v1/SessionService"): (
                  200, {}, {"@odata.id": "/redfish/v1/SessionService", "Id": "SessionService",
                            "Sessions": {"@odata.id": SESSIONS}})}
    routes.update(extra)
    return routes


def assert_refused(rec, witness: Witness, foreign: str) -> None:
    assert rec.status is Status.PROTOCOL_ERROR, rec.error
    assert foreign in rec.error
    assert "refused" in rec.error
    assert witness.connections == 0, witness.received
    assert MARKER not in (rec.error or "")


def test_absolute_link_to_another_host_is_not_followed_with_basic_auth():
    witness_addr = "127.23.0.2"
    routes = base_routes({
        ("POST", SESSIONS): (401, {}, {}),  # sessions refused: sushy falls back to HTTP Basic
        ("GET", "/redfish/v1/Systems"): (200, {}, {
            "@odata.id": "/redfish/v1/Systems", "Members@odata.count": 1,
            "Members": [{"@odata.id": f"http://{witness_addr}:{PORT}/redfish/v1/Systems/1"}]}),
    })
    with Witness(witness_addr, PORT) as witness, HostileRedfish(BMC, PORT, routes) as bmc:
        rec, _ = run(FAST)
    assert_refused(rec, witness, f"http://{witness_addr}:{PORT}")
    # the BMC itself did get Basic credentials (it is the BMC), on its own origin only
    assert any("Authorization" in h for _, _, h, _ in bmc.requests)


def test_cross_host_redirect_after_session_login_keeps_the_token_home():
    witness_addr = "127.23.0.3"
    routes = base_routes({
        ("POST", SESSIONS): (201, {"X-Auth-Token": "tok-123", "Location": SESSIONS + "/1"},
                             {"@odata.id": SESSIONS + "/1"}),
        ("GET", "/redfish/v1/Systems"): (
            302, {"Location": f"http://{witness_addr}:{PORT}/redfish/v1/Systems"}, {}),
    })
    with Witness(witness_addr, PORT) as witness, HostileRedfish(BMC, PORT, routes) as bmc:
        rec, _ = run(FAST)
        # the session is ended at once, on the BMC, not left to a finaliser that would
        # run on whatever thread the garbage collector picks (and hold a BMC slot)
        deleted = [(m, p) for m, p, _, _ in bmc.requests if m == "DELETE"]
        assert deleted == [("DELETE", SESSIONS + "/1")]
        count = len(bmc.requests)
        gc.collect()
        time.sleep(0.2)
        assert len(bmc.requests) == count
    assert_refused(rec, witness, f"http://{witness_addr}:{PORT}")


def test_307_on_session_login_does_not_repost_the_password():
    witness_addr = "127.23.0.4"
    routes = base_routes({
        ("POST", SESSIONS): (307, {"Location": f"http://{witness_addr}:{PORT}{SESSIONS}"}, {}),
    })
    with Witness(witness_addr, PORT) as witness, HostileRedfish(BMC, PORT, routes) as bmc:
        rec, _ = run(FAST)
    assert_refused(rec, witness, f"http://{witness_addr}:{PORT}")
    assert len([r for r in bmc.requests if r[0] == "POST"]) == 1  # posted once, to the BMC


def test_same_origin_redirect_of_a_get_is_followed():
    routes = base_routes({
        ("POST", SESSIONS): (401, {}, {}),
        ("GET", "/redfish/v1/Systems"): (301, {"Location": "/redfish/v1/Systems2"}, {}),
        ("GET", "/redfish/v1/Systems2"): (200, {}, {"@odata.id": "/redfish/v1/Systems2",
                                                    "Members": []}),
    })
    with HostileRedfish(BMC, PORT, routes) as bmc:
        rec, _ = run(FAST)
    # followed on the BMC's own origin (an empty collection: no systems there)
    assert ("GET", "/redfish/v1/Systems2") in [(m, p) for m, p, _, _ in bmc.requests]
    assert "no Systems" in (rec.error or "")


def test_an_endless_body_is_cut_at_the_cap_and_memory_stays_bounded():
    routes = {("GET", "/redfish/v1"): (200, {"Content-Type": "application/json"}, endless())}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with HostileRedfish(BMC, PORT, routes):
        rec, elapsed = run(FAST)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert rec.status is Status.PROTOCOL_ERROR, rec.error
    assert "body larger than" in rec.error
    assert grown_mib < 64, f"RSS grew {grown_mib:.0f} MiB"
    assert elapsed < 10


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_bmc_is_cut_at_its_deadline(where):
    budget = Budget(connect_timeout_s=2, read_timeout_s=5, attempts=1, backoff_s=0,
                    deadline_s=3)
    if where == "headers":
        bmc = HostileRedfish(BMC, PORT, {("GET", "/redfish/v1"): (200, {}, SERVICE_ROOT)},
                             trickle_headers={"/redfish/v1"})
    else:
        bmc = HostileRedfish(BMC, PORT, {("GET", "/redfish/v1"): (200, {}, trickle())})
    with bmc:
        rec, elapsed = run(budget)
    assert rec.status is Status.TIMEOUT, rec.error
    assert "deadline of 3s" in rec.error
    assert elapsed < 6, f"held for {elapsed:.1f}s past a 3 s deadline"


def test_a_bmc_listing_3000_processors_is_refused_not_recorded_as_3000_sockets():
    system = "/redfish/v1/Systems/1"
    members = [{"@odata.id": f"{system}/Processors/{i}"} for i in range(3000)]
    routes = base_routes({
        ("POST", SESSIONS): (401, {}, {}),
        ("GET", "/redfish/v1/Systems"): (200, {}, {"@odata.id": "/redfish/v1/Systems",
                                                   "Members": [{"@odata.id": system}]}),
        ("GET", system): (200, {}, {"@odata.id": system, "Id": "1", "Name": "s",
                                    "Processors": {"@odata.id": system + "/Processors"}}),
        ("GET", system + "/Processors"): (200, {}, {"@odata.id": system + "/Processors",
                                                    "Members": members}),
    })
    with HostileRedfish(BMC, PORT, routes) as bmc:
        rec, elapsed = run(FAST)
    assert rec.status is Status.PROTOCOL_ERROR, rec.error
    assert "lists 3000 members" in rec.error
    assert not any(p.startswith(system + "/Processors/") for _, p, _, _ in bmc.requests)
    assert elapsed < 10
