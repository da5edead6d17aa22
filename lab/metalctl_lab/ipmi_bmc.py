"""Lab IPMI BMC: real RMCP+ (pyghmi's server side), one BMC per process.

Run as ``python -m metalctl_lab.ipmi_bmc CONFIG.json``. The BMC binds its own
127.0.0.x address, answers power and boot-device commands, its system GUID and
a FRU 0 (IPMI Platform Management FRU spec v1.0) carrying manufacturer,
product and serial, so discovery reads identity as from a real BMC.

Quirk of pyghmi's server (1.6.x): it always answers an RMCP+ Open Session
with cipher suite 3 whatever the client proposed, while pyghmi's client
proposes suite 17 first and does not check the answer (RAKP hash length
mismatch). A real suite-3-only BMC rejects the proposal, which makes clients
fall back; :func:`_reject_unsupported_suites` does exactly that.

One BMC per process because pyghmi's server routes packets by (client address,
BMC port): two BMCs on port 623 in one process receive each other's sessions.
"""

from __future__ import annotations

import json
import sys
import uuid as uuidlib
from typing import Any

import pyghmi.ipmi.bmc as bmc
import pyghmi.ipmi.private.serversession as serversession

_orig_open = serversession.ServerSession.create_open_session_response
_RMCP_INVALID_AUTH_ALGORITHM = 0x11


def _reject_unsupported_suites(self: Any, request: bytearray) -> bytearray:
    if request[12] != 1:  # authentication algorithm other than RAKP-HMAC-SHA1
        self.clientsessionid = request[4:8]
        return bytearray([request[0], _RMCP_INVALID_AUTH_ALGORITHM, 0, 0]) + request[4:8]
    return _orig_open(self, request)


serversession.ServerSession.create_open_session_response = _reject_unsupported_suites

_orig_rakp1 = serversession.ServerSession._got_rakp1
_RMCP_UNAUTHORIZED_NAME = 0x0D


def _refuse_unknown_user(self: Any, data: bytearray) -> None:
    """pyghmi's server stays silent on an unknown user; real BMCs answer RAKP 2 with 0x0D."""
    name = bytes(data[28:]).decode("utf-8", "replace")
    if data[27] and name not in self.authdata:
        self.send_payload(bytearray([data[0], _RMCP_UNAUTHORIZED_NAME, 0, 0])
                          + self.clientsessionid,
                          serversession.constants.payload_types["rakp2"], retry=False)
        return
    _orig_rakp1(self, data)


serversession.ServerSession._got_rakp1 = _refuse_unknown_user


def _sessionless(self: Any, data: bytearray, sockaddr: Any) -> None:
    """A retransmitted pre-session packet can reach a ServerSession; hand it to its BMC."""
    self.bmc.sessionless_data(data, sockaddr)


serversession.ServerSession.sessionless_data = _sessionless


def _field(text: str) -> bytes:
    data = text.encode("ascii")[:63]
    return bytes([0xC0 | len(data)]) + data


def _area(fields: list[bytes], header: bytes) -> bytes:
    body = header + b"".join(fields) + b"\xc1"
    body += b"\x00" * ((-len(body) - 1) % 8)
    body = body[:1] + bytes([(len(body) + 1) // 8]) + body[2:]
    return body + bytes([(-sum(body)) & 0xFF])


def fru_image(manufacturer: str, product: str, serial: str) -> bytes:
    """A FRU 0 image: common header, then a product info area at offset 8."""
    product_area = _area(
        [_field(manufacturer), _field(product), _field(f"{product}-PN"), _field("1.0"),
         _field(serial), _field(""), _field("")],
        bytes([0x01, 0x00, 0x19]),  # format version, length (set by _area), English
    )
    header = bytes([0x01, 0, 0, 0, 1, 0, 0])  # version; product area offset 1 (x 8 bytes)
    return header + bytes([(-sum(header)) & 0xFF]) + product_area


class LabBmc(bmc.Bmc):
    """One emulated BMC with power state, boot device, GUID and FRU 0."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__({spec["username"]: spec["password"]}, port=spec.get("port", 623),
                         address=spec["address"])
        self.powerstate = spec.get("power_state", "off")
        self.bootdevice = "default"
        self.guid = uuidlib.UUID(spec["uuid"])
        self.fru = fru_image(spec["manufacturer"], spec["product"], spec["serial"])

    def get_system_guid(self) -> uuidlib.UUID:
        return self.guid

    def get_power_state(self) -> str:
        return self.powerstate

    def power_on(self) -> None:
        self.powerstate = "on"

    def power_off(self) -> None:
        self.powerstate = "off"

    def power_shutdown(self) -> None:
        self.powerstate = "off"

    def power_reset(self) -> None:
        pass

    def power_cycle(self) -> None:
        self.powerstate = "on"

    def is_active(self) -> bool:
        return self.powerstate == "on"

    def get_boot_device(self) -> str:
        return self.bootdevice

    def set_boot_device(self, bootdevice: str) -> None:
        self.bootdevice = bootdevice

    def cold_reset(self) -> int:
        return 0  # a lab BMC does not exit on reset

    def handle_raw_request(self, request: dict[str, Any], session: Any) -> Any:
        if request["netfn"] == 0x0A and request["command"] == 0x10:  # Get FRU Inventory Area Info
            size = len(self.fru)
            return session.send_ipmi_response(data=[size & 0xFF, size >> 8, 0])
        if request["netfn"] == 0x0A and request["command"] == 0x11:  # Read FRU Data
            data = request["data"]
            offset, count = data[1] | (data[2] << 8), data[3]
            chunk = self.fru[offset:offset + count]
            return session.send_ipmi_response(data=[len(chunk), *chunk])
        return super().handle_raw_request(request, session)


def main(argv: list[str]) -> int:
    with open(argv[1]) as fh:
        spec = json.load(fh)
    LabBmc(spec)
    print(f"serving IPMI BMC on {spec['address']}:{spec.get('port', 623)}", flush=True)
    bmc.Bmc.listen()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
