"""Hostile Redfish services and a witness listener, on 127.23.0.0/16.

A :class:`HostileRedfish` answers a scripted route table (method, path) -> answer,
where an answer is (status, headers, body) and body may be bytes, a dict (JSON), or a
generator (streamed with chunked encoding, for endless and trickling bodies). A
``trickle_headers`` answer writes its status line and headers one byte per second.
A :class:`Witness` accepts TCP connections on another address and counts them: the
proof that metalctl sent nothing to a host a BMC pointed it at.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]


def send_json(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
              payload: Any) -> None:
    """Answer with ``payload`` (bytes as they are, anything else as JSON) and a length."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    handler.send_response(status)
    for k, v in headers.items():
        handler.send_header(k, v)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)

SERVICE_ROOT = {"@odata.id": "/redfish/v1/", "Id": "RootService", "Name": "Root Service",
                "RedfishVersion": "1.11.0", "Vendor": "Hostile",
                "Systems": {"@odata.id": "/redfish/v1/Systems"},
                "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}}


class Witness:
    """Counts every TCP connection (and the bytes sent) to ``address:port``."""

    def __init__(self, address: str, port: int) -> None:
        self.connections = 0
        self.received = b""
        self._sock = socket.create_server((address, port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(0.5)
            with contextlib.suppress(OSError):
                self.received += conn.recv(65536)
            conn.close()

    def __enter__(self) -> Witness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)


class HostileRedfish:
    """A Redfish-shaped HTTP service with a scripted route table."""

    def __init__(self, address: str, port: int, routes: dict[tuple[str, str], Answer],
                 trickle_headers: set[str] | None = None) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        owner = self
        trickle = trickle_headers or set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.rstrip("/") or "/"
                owner.requests.append((self.command, path, dict(self.headers), body))
                status, headers, payload = owner.routes.get(
                    (self.command, path), (404, {}, {"error": "not found"}))
                if path in trickle:
                    for byte in f"HTTP/1.1 {status} OK\r\nX-Slow: ".encode():
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(1.0)
                    return
                if isinstance(payload, Iterator) or callable(payload):
                    chunks = payload() if callable(payload) else payload
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for chunk in chunks:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    except OSError:
                        return  # the client hung up: that is the point
                    self.wfile.write(b"0\r\n\r\n")
                    return
                send_json(self, status, headers, payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer  # noqa: N815

        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileRedfish:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def endless(chunk: bytes = b"x" * 65536) -> Callable[[], Iterator[bytes]]:
    def gen() -> Iterator[bytes]:
        while True:
            yield chunk
    return gen


def trickle(first: bytes = b'{"a": "') -> Callable[[], Iterator[bytes]]:
    def gen() -> Iterator[bytes]:
        yield first
        for _ in range(600):  # bounded: ten minutes at most, far past any deadline
            time.sleep(1.0)
            yield b"x"
    return gen
