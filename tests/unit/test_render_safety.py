"""Peer text is untrusted: credentials masked whatever the peer echoes, no terminal control,
no rich markup, in tables, progress lines and logs; JSON/YAML stay exact."""

import logging

import pytest

from metalctl import logredact
from metalctl.credentials import Secret


@pytest.mark.parametrize(("text", "secret"), [
    ('{"driver_info": {"ipmi_kg_key": "0a1b2c3d", "ipmi_address": "10.0.0.1"}}', "0a1b2c3d"),
    ("{'redfish_password': 'p\\'w0rd'}", "w0rd"),
    ('[{"op": "add", "path": "/driver_info/ipmi_password", "value": "s3cr3t"}]', "s3cr3t"),
    ('[{"value": "s3cr3t", "path": "/driver_info/ipmi_password", "op": "add"}]', "s3cr3t"),
    ("X-Auth-Token: 0123456789abcdef", "0123456789abcdef"),
    ("login failed: password=letmein&user=root", "letmein"),
    ('"client_secret" : "abc.def"', "abc.def"),
])
def test_credential_fields_are_masked_whatever_the_peer_sends(text, secret):
    out = logredact.scrub(text)
    assert secret not in out
    assert "***" in out


def test_registered_values_are_masked_anywhere_and_plain_text_is_kept():
    logredact.register([Secret("Tr0ub4dor&3"), "kg-0011223344"])
    out = logredact.scrub("echo: Tr0ub4dor&3 / kg-0011223344; ipmi_address 10.0.0.1")
    assert out == "echo: *** / ***; ipmi_address 10.0.0.1"
    assert logredact.scrub("no password given for user admin") == \
        "no password given for user admin"


def test_log_records_are_masked_and_defanged(caplog):
    flt = logredact.RedactingFilter()
    caplog.handler.addFilter(flt)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("ironicclient.test").debug(
            "RESP BODY: %s", '{"ipmi_kg_key": "ffeeddcc", "name": "\x1b]0;pwned\x07x\x1b[2J"}')
    assert "ffeeddcc" not in caplog.text
    assert "\x1b" not in caplog.text
    assert "\x07" not in caplog.text
    assert "\\x1b]0;pwned\\x07x\\x1b[2J" in caplog.text
