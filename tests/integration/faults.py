"""Fault peers for tests: misbehaving servers on loopback, bounded and self-stopping.

The real peers (emulated BMCs, Ironic) come from the lab; these add what a healthy
peer never does: answer 500, accept and never answer, vanish mid-batch.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SilentTcp:
    """Accepts TCP connections and never sends a byte (a hung BMC web server)."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.create_server((address, port))
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.2)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = self.sock.accept()
                self.conns.append(conn)

    def close(self) -> None:
        self._stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


class Http500:
    """Answers every request with HTTP 500 (a Redfish service in trouble)."""

    def __init__(self, address: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                body = b'{"error": {"code": "Base.1.0.InternalError"}}'
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TcpProxy:
    """Forwards a loopback port to a real peer; ``down()`` makes the peer vanish.

    Down means: listening socket closed (connections refused) and every open
    connection reset, as when the Ironic API process dies mid-batch.
    """

    def __init__(self, address: str, port: int, target: tuple[str, int]) -> None:
        self.listen_at = (address, port)
        self.target = target
        self.sock: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.up()

    def up(self) -> None:
        self.sock = socket.create_server(self.listen_at)
        threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()

    def down(self) -> None:
        with self.lock:
            if self.sock:
                # shutdown() wakes the thread blocked in accept(); close() alone does not
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                self.sock.close()
                self.sock = None
            for c in self.conns:
                with contextlib.suppress(OSError):
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.close()
            self.conns.clear()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


class EchoingIronic:
    """A reverse proxy to a real Ironic that answers ``POST /v1/nodes`` with a 400 whose
    faultstring echoes the request body, passwords and all (as some API gateways and
    validation layers do)."""

    def __init__(self, address: str, port: int, target: str) -> None:
        import json as _json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST" and self.path.rstrip("/") == "/v1/nodes":
                    fault = {"faultstring": f"Invalid input for node: {body.decode()}",
                             "debuginfo": None}
                    data = _json.dumps({"error_message": _json.dumps(fault)}).encode()
                    status, headers = 400, {"Content-Type": "application/json"}
                else:
                    resp = requests.request(self.command, target + self.path, data=body,
                                            headers={k: v for k, v in self.headers.items()
                                                     if k.lower() != "host"}, timeout=30)
                    status, data = resp.status_code, resp.content
                    headers = {k: v for k, v in resp.headers.items()
                               if k.lower() not in ("content-length", "transfer-encoding",
                                                    "connection", "content-encoding")}
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward  # noqa: N815

        self.url = f"http://{address}:{port}"
        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
