"""The mapping from peer-library exceptions to metalctl's classes (one place per peer)."""

import pytest
import requests
from pyghmi import exceptions as ipmi_exc
from sushy import exceptions as sushy_exc

from metalctl.bmc import ipmi, redfish
from metalctl.errors import BmcAuthFailed, BmcProtocolError, BmcTimeout, BmcTLSError


def test_pyghmi_reasons():
    assert isinstance(ipmi.translate(ipmi_exc.IpmiException("Incorrect password provided"),
                                     "a"), BmcAuthFailed)
    assert isinstance(ipmi.translate(ipmi_exc.IpmiException("Unauthorized name"), "a"),
                      BmcAuthFailed)
    assert isinstance(ipmi.translate(ipmi_exc.IpmiException(None), "a"), BmcTimeout)
    assert isinstance(ipmi.translate(ipmi_exc.IpmiException("Session no longer connected"),
                                     "a"), BmcTimeout)
    assert isinstance(ipmi.translate(ipmi_exc.IpmiException("Invalid command"), "a"),
                      BmcProtocolError)


def test_sushy_connection_error_classified_by_its_cause():
    def sushy_style() -> None:
        try:
            raise requests.exceptions.SSLError("certificate verify failed")
        except requests.exceptions.SSLError as cause:
            raise sushy_exc.ConnectionError(url="u", error=cause)  # noqa: B904 - as sushy does

    with pytest.raises(sushy_exc.ConnectionError) as info:
        sushy_style()
    assert isinstance(redfish.translate(info.value, "a"), BmcTLSError)


def test_ipmi_vendor_from_the_iana_enterprise_number():
    from metalctl.bmc.ipmi import vendor_of

    assert vendor_of(674) == "Dell Inc."
    assert vendor_of(10876) == "Supermicro"
    assert vendor_of(47196) == "HPE"
    assert vendor_of(19046) == "Lenovo"
    assert vendor_of(999999) is None
    assert vendor_of("674") is None  # only what Get Device ID decodes, never a string
