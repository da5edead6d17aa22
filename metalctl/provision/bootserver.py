"""The boot service's HTTP transport: asyncio for the I/O, h11 for parsing, one thread.

Why not ``http.server.ThreadingHTTPServer``: it spawns a thread per connection, and on
this 2-core machine under load it fell to 70 requests/s where a single asyncio loop
kept 1,400 (measured side by side, see docs/bootservice.md): hundreds of threads
fighting for the GIL on a busy CPU collapse, and a slow client holds a thread for the
whole request timeout. One event loop has neither problem. Parsing HTTP is left to h11
(pure Python, no dependencies, the parser under httpcore/uvicorn), which bounds the
request head and rejects malformed framing; responses are formatted here from values
the service controls.

Every connection carries one request (``Connection: close``), the request (head and
body) must arrive within ``request_timeout_s``, bodies are capped, at most
``max_connections`` requests are handled at once, and every request is logged once,
with token-shaped text masked. The handler runs on the loop: it must be quick and
non-blocking apart from short SQLite statements.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h11

LOG = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
#: query fields a request may carry (the routes use two); more is a 400, not a parse error
MAX_QUERY_FIELDS = 8
FILE_TIMEOUT_S = 900.0  # an installer image of a few hundred MB over a busy network
_SCRUB = re.compile(r"(token=|ticket=|bearer\s+)[^\s&'\"]*", re.IGNORECASE)


def scrub(text: str) -> str:
    """Mask anything shaped like a token or ticket in ``text`` (query, bearer headers)."""
    return _SCRUB.sub(r"\1***", text)


@dataclass(frozen=True)
class Request:
    """One parsed request.

    Attributes:
        method: ``GET``, ``POST``, ...
        path: the decoded path, without the query.
        query: query parameters (each name may repeat).
        headers: header names lower-cased; a repeated header keeps its last value.
        body: the request body (bounded).
        peer: the client's address.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass(frozen=True)
class Response:
    """What the handler answers; ``file`` streams a file instead of ``body``."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    note: str = ""
    file: Path | None = field(default=None)


class _Refuse(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.response = Response(status, text.encode() + b"\n", note=text)


Handler = Callable[[Request], Response]


class HttpServer:
    """An HTTP/1.1 server on its own thread and event loop.

    Args:
        bind: address to listen on; port: TCP port (0 picks one).
        handler: called on the loop for each request.
        request_timeout_s: time for a request's head and body to arrive, and for a
            small response to leave.
        max_connections: requests handled at once; more wait for a slot as long.
        max_body_bytes: larger bodies get 413 without being read.
        tick: called every ``tick_s`` seconds on the loop (deadlines), or None.
    """

    def __init__(self, bind: str, port: int, handler: Handler, *, request_timeout_s: float,
                 max_connections: int, max_body_bytes: int,
                 tick: Callable[[], None] | None = None, tick_s: float = 5.0) -> None:
        self.bind, self.port = bind, port
        self._handler = handler
        self._timeout = request_timeout_s
        self._max_connections = max_connections
        self._max_body = max_body_bytes
        self._tick, self._tick_s = tick, tick_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> int:
        """Listen and serve; return the bound port.

        Raises:
            OSError: the address cannot be bound.
        """
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="metalctl-boot",
                                        daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=10)
        except BaseException:
            self._halt()
            raise
        return self.port

    async def _open(self) -> None:
        self._slots = asyncio.Semaphore(self._max_connections)
        # a deep backlog: the default of 100 drops SYNs when a rack boots at once, and
        # a dropped SYN costs the client a 1 s retransmit
        self._server = await asyncio.start_server(self._connection, self.bind, self.port,
                                                  backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        if self._tick is not None:
            self._tasks.add(asyncio.get_running_loop().create_task(self._ticker()))

    def stop(self) -> None:
        """Stop listening, cancel requests in flight, and end the loop's thread."""
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        finally:
            self._halt()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def _halt(self) -> None:
        assert self._loop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = self._server = None

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self._tick()  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - a failed tick must not end the loop
                LOG.warning("boot service: periodic check failed: %s", scrub(str(exc)))

    # --- one connection ------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        method, path = "-", "-"
        try:
            if self._slots.locked():  # wait_for costs a task: only when there is a wait
                await asyncio.wait_for(self._slots.acquire(), self._timeout)
            else:
                await self._slots.acquire()
            try:
                t0 = time.perf_counter()
                try:
                    request = await asyncio.wait_for(self._read(reader, peer), self._timeout)
                    method, path = request.method, request.path
                    response = self._handle(request)
                except _Refuse as refused:
                    response = refused.response
                except h11.RemoteProtocolError as exc:
                    # 431 when the head outgrew MAX_HEAD_BYTES, 400 for other malformations
                    status = HTTPStatus(exc.error_status_hint)
                    response = Response(status, status.phrase.lower().encode() + b"\n",
                                        note=scrub(str(exc))[:200])
                # logged before the answer leaves: whoever has the answer can read the log
                LOG.info("boot service: %s %s %s -> %d %dB %.1fms %s", peer, method,
                         scrub(path), response.status, _size(response),
                         (time.perf_counter() - t0) * 1000.0, response.note)
                await self._write(writer, response, method)
            finally:
                self._slots.release()
        except (asyncio.TimeoutError, ConnectionError, _Closed) as exc:
            LOG.debug("boot service: %s %s %s: dropped (%s)", peer, method, scrub(path),
                      type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a bug here is one closed connection
            LOG.error("boot service: %s %s %s: %s", peer, method, scrub(path),
                      scrub(f"{type(exc).__name__}: {exc}"))
        finally:
            writer.close()
            self._tasks.discard(task)

    def _handle(self, request: Request) -> Response:
        try:
            return self._handler(request)
        except Exception as exc:  # noqa: BLE001 - one request's bug is one 500, not an outage
            LOG.error("boot service: %s %s: %s", request.method, scrub(request.path),
                      scrub(f"{type(exc).__name__}: {exc}"))
            return Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")

    async def _read(self, reader: asyncio.StreamReader, peer: str) -> Request:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        # h11 checks its limit only on a head it has not parsed yet: fed 64 KiB at once,
        # a complete 60 KiB head would pass. Fed at most the limit, a longer head is
        # still incomplete when the budget runs out, and refused (431)
        head = await _next_event(conn, reader, MAX_HEAD_BYTES)
        if isinstance(head, h11.ConnectionClosed):
            raise _Closed
        if not isinstance(head, h11.Request):
            raise _Refuse(HTTPStatus.BAD_REQUEST, "expected a request")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}
        declared = headers.get("content-length")
        if declared is not None and int(declared) > self._max_body:
            raise _Refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          f"body must be at most {self._max_body} bytes")
        body = bytearray()
        while not isinstance(event := await _next_event(conn, reader), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                raise _Refuse(HTTPStatus.BAD_REQUEST, "incomplete body")
            body += event.data
            if len(body) > self._max_body:
                raise _Refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                              f"body must be at most {self._max_body} bytes")
        target = urlsplit(head.target.decode("ascii", "replace"))
        try:
            query = parse_qs(target.query, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:  # more fields than max_num_fields
            raise _Refuse(HTTPStatus.BAD_REQUEST,
                          f"at most {MAX_QUERY_FIELDS} query fields") from None
        return Request(head.method.decode("ascii"), target.path, query, headers,
                       bytes(body), peer)

    async def _write(self, writer: asyncio.StreamWriter, response: Response,
                     method: str) -> None:
        phrase = HTTPStatus(response.status).phrase
        size = _size(response)
        head = (f"HTTP/1.1 {response.status} {phrase}\r\nServer: metalctl-boot\r\n"
                f"Content-Type: {response.content_type}\r\nContent-Length: {size}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode("latin-1")
        if response.file is None:
            writer.write(head + (response.body if method != "HEAD" else b""))
            if writer.transport.get_write_buffer_size():  # the socket did not take it all
                await asyncio.wait_for(writer.drain(), self._timeout)
            return
        writer.write(head)
        if method == "HEAD":  # the length, without the file
            return
        with response.file.open("rb") as f:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sendfile(writer.transport, f), FILE_TIMEOUT_S)


def _size(response: Response) -> int:
    return response.file.stat().st_size if response.file else len(response.body)


class _Closed(Exception):  # noqa: N818 - the client went away before a request
    pass


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader,
                      budget: int | None = None) -> object:
    """The next h11 event; with ``budget``, feed h11 at most that many bytes for it."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if budget is not None and budget <= 0:
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        data = await reader.read(65536 if budget is None else min(65536, budget))
        if budget is not None:
            budget -= len(data)
        conn.receive_data(data)
