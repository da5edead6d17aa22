from metalctl import errors
from metalctl.discover import status_of
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


def test_each_bmc_error_class_maps_to_exactly_one_status():
    classes = {errors.BmcUnreachable: "no-bmc", errors.BmcAuthFailed: "auth-failed",
               errors.BmcTLSError: "tls-error", errors.BmcTimeout: "timeout",
               errors.BmcProtocolError: "protocol-error"}
    for cls, status in classes.items():
        assert status_of(cls(address="a", reason="r")) is Status(status)
    assert set(classes.values()) == {s.value for s in Status} - {"ok"}


def test_bmc_identity_normalises_redfish_urls():
    a = bmc_identity("redfish", {"redfish_address": "https://10.0.0.1:443/",
                                 "redfish_system_id": "/redfish/v1/Systems/1"})
    b = bmc_identity("redfish", {"redfish_address": "10.0.0.1",
                                 "redfish_system_id": "/redfish/v1/Systems/1"})
    assert a == b
    assert bmc_identity("ipmi", {"ipmi_address": "10.0.0.2"}) == ("10.0.0.2", "623")
