import pytest

from metalctl import errors
from metalctl.discover.scan import _failure_record
from metalctl.model.hardware import CpuFacts, Hardware, NicFacts
from metalctl.model.node import DiscoveryRecord, Protocol, Status, bmc_identity

REQUIRED = {"address", "protocol", "system_id", "uuid", "vendor", "model", "serial",
            "power_state", "bios_version", "cpu", "memory_gib", "nics", "status", "error"}


def test_discovery_json_contract_and_round_trip():
    rec = DiscoveryRecord("127.0.0.5", 443, Protocol.REDFISH, Status.OK, scheme="https",
                          system_id="/redfish/v1/Systems/1", uuid="u",
                          hardware=Hardware(CpuFacts(2, 48, 96, "Xeon"), 512.0,
                                            (NicFacts("52:54:00:00:00:01"),)))
    d = rec.to_dict()
    assert set(d) >= REQUIRED
    assert set(d["cpu"]) >= {"sockets", "cores", "threads", "model"}
    assert d["nics"][0]["mac"] == "52:54:00:00:00:01"
    assert d["key"] == "https://127.0.0.5/redfish/v1/Systems/1"
    assert DiscoveryRecord.from_dict(d) == rec


@pytest.mark.parametrize(("redfish", "ipmi", "want"), [
    # the more specific failure wins, whichever protocol it came from
    (errors.BmcUnreachable, errors.BmcAuthFailed, Status.AUTH_FAILED),
    (errors.BmcTLSError, errors.BmcUnreachable, Status.TLS_ERROR),
    (errors.BmcProtocolError, errors.BmcTimeout, Status.PROTOCOL_ERROR),
    (errors.BmcUnreachable, errors.BmcTimeout, Status.TIMEOUT),
    (errors.BmcUnreachable, errors.BmcUnreachable, Status.NO_BMC),
])
def test_an_address_failing_both_protocols_reports_the_most_specific(redfish, ipmi, want):
    rec = _failure_record("10.0.0.9", [(Protocol.REDFISH, 443, redfish(address="a", reason="r1")),
                                       (Protocol.IPMI, 623, ipmi(address="a", reason="r2"))], 0.5)
    assert rec.status is want
    assert rec.error == "redfish:443: r1; ipmi:623: r2"  # both reasons, in probe order
    if want is Status.NO_BMC:
        assert (rec.port, rec.protocol) == (None, None)  # nothing there: no port to blame
    else:
        assert rec.protocol is (Protocol.REDFISH if redfish.status == want.value
                                else Protocol.IPMI)


def test_every_failure_status_has_exactly_one_error_class():
    # direct subclasses: a refinement (e.g. a refused redirect) inherits its parent's status
    classes = errors.BmcError.__subclasses__()
    statuses = [c.status for c in classes]
    assert sorted(statuses) == sorted({s.value for s in Status} - {"ok"})


def test_bmc_identity_normalises_redfish_urls():
    a = bmc_identity("redfish", {"redfish_address": "https://10.0.0.1:443/",
                                 "redfish_system_id": "/redfish/v1/Systems/1"})
    b = bmc_identity("redfish", {"redfish_address": "10.0.0.1",
                                 "redfish_system_id": "/redfish/v1/Systems/1"})
    assert a == b
    assert bmc_identity("ipmi", {"ipmi_address": "10.0.0.2"}) == ("10.0.0.2", "623")
