"""The one HTTP transport to a BMC: one origin, bounded bodies, a wall-clock deadline.

A BMC's answers are untrusted input. Seen against hostile services (and possible
with any compromised or misconfigured BMC on a scanned network):

* an absolute ``@odata.id`` naming another host: sushy follows it with HTTP Basic
  credentials attached;
* a cross-host 302 after login: requests drops Basic auth on a redirect, but not the
  ``X-Auth-Token`` session header;
* a 307 on ``POST /redfish/v1/SessionService/Sessions``: the username and password are
  posted again, in clear, to the redirect target;
* a body with no end (memory grows until the machine falls over), and a service that
  trickles a byte per second, which no per-read timeout ever ends.

So every request a BMC causes goes through :class:`BmcSession`: it refuses any URL
whose scheme, host or port differs from the BMC's own (before a connection is
opened), never lets requests follow a redirect (a same-origin redirect of a GET is
followed by us, at most :data:`MAX_REDIRECTS` times; any other redirect is refused),
reads bodies as streams up to :data:`MAX_BODY_BYTES`, and enforces one deadline for
the whole conversation with the BMC by shutting its sockets down when it passes.
Violations raise :class:`~metalctl.errors.BmcProtocolError` (naming the foreign
origin) or :class:`~metalctl.errors.BmcTimeout`; neither is a requests or sushy
exception, so no retry loop of sushy's catches them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from metalctl.errors import BmcProtocolError, BmcTimeout

LOG = logging.getLogger(__name__)

#: A Redfish resource is kilobytes; an attribute registry a few MiB on big servers.
MAX_BODY_BYTES = 8 * 2**20
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a URL, with the scheme's default port filled in and
    the host lower-cased (DNS names are case-insensitive)."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # a malformed port never matches any BMC's origin
    if port is None:
        port = 443 if scheme == "https" else 80
    return scheme, (parts.hostname or "").lower(), port


def _show(o: tuple[str, str, int]) -> str:
    host = f"[{o[1]}]" if ":" in o[1] else o[1]
    return f"{o[0]}://{host}:{o[2]}"


class Deadline:
    """One wall-clock deadline for everything said to one BMC.

    ``expire()`` (called by a timer at the deadline) shuts down every socket opened for
    this BMC, so a read blocked on a trickling peer returns at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self.expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        """Return the seconds left before the deadline (negative once past)."""
        return self.at - time.monotonic()

    def track(self, sock: socket.socket | None) -> None:
        """Track ``sock`` so expiry shuts it down (at once when already expired)."""
        if sock is None:
            return
        with self._lock:
            if self.expired:
                _shutdown(sock)
            self._sockets.append(sock)

    def expire(self) -> None:
        """Mark the deadline expired and shut down every tracked socket."""
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def cancel(self) -> None:
        """Stop the timer (the conversation is over)."""
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to interrupt
        sock.shutdown(socket.SHUT_RDWR)


def _adapter(deadline: Deadline) -> HTTPAdapter:
    """An adapter whose connections report their sockets to ``deadline``."""

    class _Http(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.track(self.sock)

    class _Https(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.track(self.sock)

    class _HttpPool(HTTPConnectionPool):
        ConnectionCls = _Http

    class _HttpsPool(HTTPSConnectionPool):
        ConnectionCls = _Https

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _HttpPool,
                                                       "https": _HttpsPool}

    return _Adapter(max_retries=0)


class BmcSession(requests.Session):
    """A requests session that can only talk to one BMC (see the module docstring).

    Args:
        base_url: the BMC's ``scheme://host[:port]``; the only origin ever contacted.
        address: the BMC's address as the operator gave it (for error messages).
        deadline: the BMC's wall-clock deadline (shared by every session to that BMC).
        max_body_bytes: larger bodies are refused.
    """

    def __init__(self, base_url: str, address: str, deadline: Deadline,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        super().__init__()
        self.origin = origin(base_url)
        self.address = address
        self.max_body_bytes = max_body_bytes
        self.deadline = deadline
        self.trust_env = False  # no proxy from the environment: the BMC is reached directly
        adapter = _adapter(self.deadline)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def _check_origin(self, url: str, why: str) -> None:
        there = origin(url)
        if there != self.origin:
            raise BmcProtocolError(address=self.address,
                                   reason=f"{why} to another origin {_show(there)} refused "
                                          f"(the BMC is {_show(self.origin)}); nothing was "
                                          "sent there")

    def _timeout(self, asked: Any) -> tuple[float, float]:
        remaining = self.deadline.remaining()
        if self.deadline.expired or remaining <= 0:
            raise BmcTimeout(address=self.address,
                             reason=f"deadline of {self.deadline.seconds:g}s for this BMC "
                                    "reached")
        connect, read = asked if isinstance(asked, tuple) else (asked, asked)
        connect = min(connect or remaining, remaining)
        read = min(read or remaining, remaining)
        return connect, read

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send one request to the BMC's own origin; follow same-origin GET redirects."""
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        kwargs.pop("proxies", None)
        for _hop in range(MAX_REDIRECTS + 1):
            self._check_origin(request.url or "", "a link")
            kwargs["timeout"] = self._timeout(kwargs.get("timeout"))
            resp = self._send_bounded(request, **kwargs)
            if resp.status_code not in _REDIRECTS or "location" not in resp.headers:
                return resp
            target = urljoin(request.url or "", resp.headers["location"])
            self._check_origin(target, f"a redirect ({resp.status_code})")
            if request.method not in ("GET", "HEAD"):
                raise BmcProtocolError(address=self.address,
                                       reason=f"{request.method} {urlsplit(request.url).path} "
                                              f"answered {resp.status_code}: redirects of "
                                              "requests with a body are never followed")
            request = request.copy()
            request.prepare_url(target, None)
        raise BmcProtocolError(address=self.address,
                               reason=f"more than {MAX_REDIRECTS} redirects")

    def _send_bounded(self, request: requests.PreparedRequest,
                      **kwargs: Any) -> requests.Response:
        try:
            resp = super().send(request, **kwargs)
            body = bytearray()
            for chunk in resp.iter_content(_CHUNK):
                body += chunk
                if len(body) > self.max_body_bytes:
                    resp.close()
                    raise BmcProtocolError(
                        address=self.address,
                        reason=f"{urlsplit(request.url).path}: body larger than "
                               f"{self.max_body_bytes} bytes; refused")
                if self.deadline.expired:
                    break
        except requests.exceptions.RequestException:
            if self.deadline.expired:
                raise BmcTimeout(address=self.address,
                                 reason=f"deadline of {self.deadline.seconds:g}s for this "
                                        "BMC reached mid-answer") from None
            raise
        if self.deadline.expired:
            resp.close()
            raise BmcTimeout(address=self.address,
                             reason=f"deadline of {self.deadline.seconds:g}s for this BMC "
                                    "reached mid-answer")
        resp._content = bytes(body)  # noqa: SLF001 - the documented way to pre-read a stream
        resp._content_consumed = True  # noqa: SLF001
        resp.close()
        return resp
