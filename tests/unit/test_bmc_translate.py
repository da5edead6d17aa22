"""The mapping from peer-library exceptions to metalctl's classes (one place per peer)."""

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
    try:
        try:
            raise requests.exceptions.SSLError("certificate verify failed")
        except requests.exceptions.SSLError as cause:
            raise sushy_exc.ConnectionError(url="u", error=cause)  # noqa: B904 - as sushy does
    except sushy_exc.ConnectionError as exc:
        assert isinstance(redfish.translate(exc, "a"), BmcTLSError)
