"""Unauthenticated presence probes: is there a Redfish service or an IPMI BMC here?

Probes send no credentials and take one short round trip, so a dead address
costs at most ``connect_timeout_s`` per protocol. They run before any login so
that sushy's and pyghmi's own (longer, retrying) timeouts are only paid on real
BMCs.

* Redfish: ``GET /redfish/v1/`` (DSP0266 §14: the service root is readable
  without authentication; some services still answer 401, which also proves a
  Redfish service is there).
* IPMI: RMCP ``Get Channel Authentication Capabilities`` (IPMI v2.0 §22.13),
  the first packet ``ipmitool -I lanplus`` sends; every IPMI BMC answers it
  without a session.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass

import requests
import urllib3

from metalctl.bmc.http import BmcSession, Deadline
from metalctl.budget import Budget
from metalctl.errors import (
    BmcProtocolError,
    BmcTimeout,
    BmcTLSError,
    BmcUnreachable,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RedfishPresence:
    """A Redfish service root answered; ``auth_required`` when it said 401/403."""

    base_url: str
    auth_required: bool
    vendor: str | None = None
    redfish_version: str | None = None


def probe_redfish(base_url: str, address: str, verify: bool | str, budget: Budget,
                  deadline: Deadline | None = None) -> RedfishPresence:
    """Probe ``base_url`` for a Redfish service root (through the guarded transport: a
    redirect elsewhere is refused, the body is bounded, ``deadline`` holds).

    Raises:
        BmcUnreachable: nothing listens, or the HTTP server has no Redfish root.
        BmcTLSError: TLS handshake or certificate verification failed.
        BmcTimeout: connect or read timed out.
        BmcProtocolError: the service root answered 5xx or garbage.
    """
    url = base_url + "/redfish/v1/"
    timeout = (budget.connect_timeout_s, budget.read_timeout_s)
    own = deadline is None
    deadline = deadline or Deadline(budget.deadline_s)
    try:
        with warnings_silenced(verify), BmcSession(base_url, address, deadline) as session:
            resp = session.get(url, verify=verify, timeout=timeout,
                               headers={"Accept": "application/json"})
    except requests.exceptions.SSLError as exc:
        raise BmcTLSError(address=address, reason=f"TLS: {_short(exc)}") from None
    except requests.exceptions.ConnectTimeout:
        raise BmcTimeout(address=address,
                         reason=f"no TCP answer within {budget.connect_timeout_s:g}s") from None
    except requests.exceptions.ReadTimeout:
        raise BmcTimeout(address=address,
                         reason=f"service root not answered within {budget.read_timeout_s:g}s"
                         ) from None
    except requests.exceptions.ConnectionError as exc:
        raise BmcUnreachable(address=address, reason=f"{base_url}: {_short(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise BmcProtocolError(address=address, reason=_short(exc)) from None
    finally:
        if own:
            deadline.cancel()
    if resp.status_code in (401, 403):
        return RedfishPresence(base_url, auth_required=True)
    if resp.status_code >= 500:
        raise BmcProtocolError(address=address,
                               reason=f"Redfish service root answered HTTP {resp.status_code}")
    if resp.status_code != 200:
        raise BmcUnreachable(address=address,
                             reason=f"HTTP {resp.status_code} at /redfish/v1: not a Redfish BMC")
    try:
        body = resp.json()
    except ValueError:
        raise BmcProtocolError(address=address,
                               reason="service root is not JSON") from None
    if not isinstance(body, dict) or not ("RedfishVersion" in body or "@odata.id" in body):
        raise BmcProtocolError(address=address, reason="service root lacks RedfishVersion")
    return RedfishPresence(base_url, False, body.get("Vendor"), body.get("RedfishVersion"))


@contextlib.contextmanager
def warnings_silenced(verify: bool | str):  # type: ignore[no-untyped-def]
    """Silence urllib3's per-request warning when the user chose ``--insecure``.

    The choice is logged once by the caller instead of once per request.
    """
    if verify is False:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            yield
    else:
        yield


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the URL noise."""
    text = str(exc)
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ")[:200]


# --- IPMI --------------------------------------------------------------------------------

_RMCP_HEADER = bytes([0x06, 0x00, 0xFF, 0x07])  # RMCP v1.0, no ack, class IPMI


def _checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def _auth_caps_request() -> bytes:
    """Sessionless Get Channel Authentication Capabilities (NetFn App, cmd 0x38)."""
    rs = bytes([0x20, 0x06 << 2])  # BMC slave address, NetFn App / LUN 0
    body = bytes([0x81, 0x00, 0x38, 0x8E, 0x04])  # rqAddr, rqSeq, cmd, channel E+v2 bit, ADMIN
    msg = rs + bytes([_checksum(rs)]) + body + bytes([_checksum(body)])
    session = bytes([0x00]) + bytes(4) + bytes(4) + bytes([len(msg)])
    return _RMCP_HEADER + session + msg


@dataclass(frozen=True)
class IpmiPresence:
    """An IPMI BMC answered; ``ipmi_v2`` when it announces RMCP+ support."""

    ipmi_v2: bool


def probe_ipmi(address: str, port: int, budget: Budget) -> IpmiPresence:
    """Send the auth-capabilities ping and parse the answer.

    Raises:
        BmcUnreachable: port unreachable (ICMP) or no answer after all attempts
            (UDP gives no way to tell a silent host from a host without a BMC).
        BmcProtocolError: something answered on the port, but not IPMI.
    """
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise BmcUnreachable(address=address, reason=f"cannot resolve: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    packet = _auth_caps_request()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(budget.connect_timeout_s / max(budget.attempts, 1))
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            raise BmcUnreachable(address=address, reason=f"UDP {port}: {exc.strerror}") from None
        for _ in range(max(budget.attempts, 1)):
            try:
                sock.send(packet)
                data = sock.recv(512)
            except ConnectionRefusedError:
                raise BmcUnreachable(address=address,
                                     reason=f"UDP {port}: port unreachable") from None
            except TimeoutError:
                continue
            except OSError as exc:
                raise BmcUnreachable(address=address, reason=f"UDP {port}: {exc}") from None
            return _parse_auth_caps(address, data)
    raise BmcUnreachable(address=address, reason=f"no IPMI answer on UDP {port}")


def _parse_auth_caps(address: str, data: bytes) -> IpmiPresence:
    # RMCP(4) + IPMI 1.5 session header(10) + rqAddr, netfn, chk, rsAddr, seq, cmd, ccode, data
    if len(data) < 22 or data[:1] != b"\x06" or data[19] != 0x38:
        raise BmcProtocolError(address=address, reason="UDP answer is not an IPMI response")
    if data[20] != 0x00:
        raise BmcProtocolError(address=address,
                               reason=f"auth capabilities completion code 0x{data[20]:02x}")
    caps = data[21:]
    ipmi_v2 = len(caps) >= 4 and bool(caps[1] & 0x80) and bool(caps[3] & 0x02)
    return IpmiPresence(ipmi_v2=ipmi_v2)
