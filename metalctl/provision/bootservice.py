"""The boot service of ``--via pxe``: iPXE scripts per MAC, one-time kickstarts, callbacks.

``metalctl serve`` runs this; the provision stage registers installs with
:meth:`BootService.add_install` (in the same process, or in another one through the
shared state file) and follows them with :meth:`BootService.install` and
:meth:`BootService.events`.

Routes (HTTP/1.0 semantics, one request per connection, bodies bounded):

* ``GET /boot.ipxe``: the entry script dnsmasq hands to iPXE; it chains the per-MAC one.
* ``GET /boot/<mac>.ipxe`` (``52-54-00-..`` as iPXE's ``${mac:hexhyp}`` gives it, or
  ``52:54:00:..``): for a MAC with an active install whose kickstart has not been
  fetched yet, a script that chains the installer with ``inst.ks=<url with the token>``;
  for any other MAC, a script that boots the local disk, so a machine nobody meant to
  wipe is never wiped.
* ``GET /ks/<node>?token=T``: the node's kickstart, once, with that node's token; 403
  and an empty body for a wrong, reused or expired token.
* ``POST /callback/<node>?stage=S`` with ``Authorization: Bearer T`` (or ``&token=T``):
  ``started``, ``pre``, ``post``, ``hostkeys`` (body: ``ssh_host_*_key.pub`` lines),
  ``end`` or ``error`` (body: the installer's message).
* ``GET /files/<path>``: installer files from ``files_dir``, when one is given.
* ``GET /healthz``.

Token life: minted by :meth:`BootService.add_install` (returned, kept in this process's
memory only for the boot script, stored as a SHA-256 digest). A process that does not
hold it (restarted, or not the one that added the install) mints a fresh one when the
machine asks for its boot script, before the kickstart is fetched; the machine gets its
token from that script, so nothing is lost. The kickstart text is opaque, except that
:data:`TOKEN_PLACEHOLDER` in it is replaced by the presented token as it is served, so
``%post`` callbacks can carry the token without the state file ever holding it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from metalctl.credentials import Secret
from metalctl.errors import InputError, MetalctlError
from metalctl.provision import hostkeys as hostkeys_mod
from metalctl.provision import tokens
from metalctl.provision.bootstate import (
    ACTIVE,
    FAILED,
    INSTALLED,
    NODE_RE,
    BootEvent,
    BootFiles,
    BootState,
    InstallRecord,
    check_node,
    normalise_mac,
)
from metalctl.provision.errors import BootServiceError
from metalctl.provision.hostkeys import HostKey

LOG = logging.getLogger(__name__)

#: replaced in a served kickstart by the token the fetch presented
TOKEN_PLACEHOLDER = "@@METALCTL_TOKEN@@"  # noqa: S105 - a marker, not a secret
CALLBACK_STAGES = ("started", "pre", "post", "hostkeys", "end", "error")
MAX_BODY_BYTES = 64 * 1024
MAX_KICKSTART_BYTES = 1024 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_EVENTS_PER_INSTALL = 256
MAX_DEADLINE_S = 7 * 24 * 3600.0
#: a sink for host keys: (node, mac, keys); raise a MetalctlError to refuse them
HostKeySink = Callable[[str, str, tuple[HostKey, ...]], None]

_SCRUB = re.compile(r"(token=|bearer\s+)[^\s&'\"]*", re.IGNORECASE)
_BOOT_RE = re.compile(r"/boot/([0-9A-Fa-f:-]{17})\.ipxe")
_NODE_PATH = re.compile(r"/(ks|callback)/([^/]+)")

LOCAL_BOOT_SCRIPT = """#!ipxe
# metalctl: no install is pending for this machine: boot from the local disk
iseq ${platform} efi && exit ||
sanboot --no-describe --drive 0x80 || exit
"""


def scrub(text: str) -> str:
    """Mask anything shaped like a token in ``text`` (query parameters, bearer headers)."""
    return _SCRUB.sub(r"\1***", text)


def _clean_message(raw: bytes, token: str | None) -> str:
    """The installer's text, safe to store and log: bounded, printable, token-free."""
    text = raw.decode("utf-8", "replace")
    if token:
        text = text.replace(token, "***")
    text = "".join(c if c.isprintable() or c == " " else " " for c in scrub(text))
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bounded number of handler threads and a deep backlog.

    Python's default backlog of 5 drops SYNs when a rack boots at once (a dropped SYN
    costs the client a 1 s retransmit), so the backlog is 1024; handler threads are
    capped, and connections beyond the cap wait in that backlog instead of spawning.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type, service: BootService,
                 max_connections: int) -> None:
        self.address_family = (socket.AF_INET6 if ipaddress.ip_address(address[0]).version == 6
                               else socket.AF_INET)
        self.service = service
        self._slots = threading.BoundedSemaphore(max_connections)
        self._last_expiry = 0.0
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the bind address (a DNS lookup)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def service_actions(self) -> None:
        # deadlines pass even when nobody asks: record timeouts within about 5 s
        now = time.monotonic()
        if now - self._last_expiry >= 5.0:
            self._last_expiry = now
            try:
                self.service.state.expire()
            except MetalctlError as exc:
                LOG.warning("boot service: expiring installs failed: %s", exc)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "metalctl-boot"
    sys_version = ""
    protocol_version = "HTTP/1.0"

    # --- plumbing ------------------------------------------------------------------------

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Requests are logged once, by :meth:`_send`, without secrets."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        # http.server logs malformed request lines verbatim: scrub them
        LOG.debug("boot service: %s: %s", self.client_address[0], scrub(format % args))

    def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain",
              note: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self._log(status, len(body), note)

    def _log(self, status: int, size: int, note: str) -> None:
        took_ms = (time.perf_counter() - self._t0) * 1000.0
        LOG.info("boot service: %s %s %s -> %d %dB %.1fms %s", self.client_address[0],
                 self.command, scrub(urlsplit(self.path).path), status, size, took_ms, note)

    def _forbidden(self, note: str) -> None:
        self._send(HTTPStatus.FORBIDDEN, b"", note=note)

    def _read_body(self) -> bytes | None:
        """The request body within :data:`MAX_BODY_BYTES` and the request timeout."""
        if self.headers.get("Transfer-Encoding"):
            self._send(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required\n")
            return None
        try:
            size = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            size = -1
        if size < 0 or size > MAX_BODY_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"body must be 0..{MAX_BODY_BYTES} bytes\n".encode())
            return None
        deadline = time.monotonic() + self.server.service.request_timeout_s
        chunks, remaining = [], size
        while remaining and time.monotonic() < deadline:
            chunk = self.rfile.read1(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining:
            self._send(HTTPStatus.BAD_REQUEST, b"incomplete body\n")
            return None
        return b"".join(chunks)

    # --- routes --------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._t0 = time.perf_counter()
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._t0 = time.perf_counter()
        self._route("POST")

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, max_num_fields=4)
        service = self.server.service
        try:
            if method == "GET" and parts.path == "/boot.ipxe":
                self._send(HTTPStatus.OK, service.entry_script().encode())
            elif method == "GET" and (m := _BOOT_RE.fullmatch(parts.path)):
                self._boot_script(m.group(1))
            elif (m := _NODE_PATH.fullmatch(parts.path)) and m.group(1) == "ks" \
                    and method == "GET":
                self._kickstart(m.group(2), _one(query, "token"))
            elif m and m.group(1) == "callback" and method == "POST":
                self._callback(m.group(2), _one(query, "stage"), self._presented(query))
            elif method == "GET" and parts.path.startswith("/files/") and service.files_dir:
                self._file(parts.path.removeprefix("/files/"))
            elif method == "GET" and parts.path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n")
        except MetalctlError as exc:
            LOG.error("boot service: %s %s: %s", method, scrub(parts.path), scrub(str(exc)))
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"boot service state unavailable\n")

    def _presented(self, query: dict[str, list[str]]) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return _one(query, "token")

    def _boot_script(self, raw_mac: str) -> None:
        try:
            mac = normalise_mac(raw_mac)
        except InputError:
            self._send(HTTPStatus.BAD_REQUEST, b"not a MAC address\n", note="bad MAC")
            return
        script, note = self.server.service.boot_script(mac)
        self._send(HTTPStatus.OK, script.encode(), note=note)

    def _kickstart(self, node: str, presented: str | None) -> None:
        service = self.server.service
        fp = tokens.fingerprint(presented)
        cred = service.state.credentials(node) if NODE_RE.fullmatch(node) else None
        if not tokens.matches(presented, cred[1] if cred else None):
            self._forbidden(f"kickstart {node[:64]}: wrong token {fp}")
            return
        state, digest, fetched_at = cred
        if state != ACTIVE or fetched_at is not None:
            why = f"install {state}" if state != ACTIVE else "already fetched"
            self._forbidden(f"kickstart {node}: {why} {fp}")
            return
        text = service.state.take_kickstart(node, digest, self.client_address[0])
        if text is None:  # lost a race with another fetch, or the deadline just passed
            self._forbidden(f"kickstart {node}: already fetched or expired {fp}")
            return
        service.forget_token(node)
        body = text.replace(TOKEN_PLACEHOLDER, presented or "").encode()
        self._send(HTTPStatus.OK, body, note=f"kickstart {node} {fp}")

    def _callback(self, node: str, stage: str | None, presented: str | None) -> None:
        service = self.server.service
        fp = tokens.fingerprint(presented)
        cred = service.state.credentials(node) if NODE_RE.fullmatch(node) else None
        if not tokens.matches(presented, cred[1] if cred else None) or cred[0] != ACTIVE:
            self._forbidden(f"callback {node[:64]}: token refused {fp}")
            return
        if stage not in CALLBACK_STAGES:
            self._send(HTTPStatus.BAD_REQUEST, b"stage must be one of "
                       + ", ".join(CALLBACK_STAGES).encode() + b"\n", note=f"{node} bad stage")
            return
        if service.state.count_events(node) >= MAX_EVENTS_PER_INSTALL:
            self._send(HTTPStatus.TOO_MANY_REQUESTS, b"too many callbacks\n", note=node)
            return
        body = self._read_body()
        if body is None:
            return
        status, reply = service.callback(node, stage, body, presented)
        self._send(status, reply.encode(), note=f"callback {node} {stage} {fp}")

    def _file(self, rel: str) -> None:
        path = self.server.service.file_path(rel)
        if path is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")
            return
        with path.open("rb") as f:
            size = path.stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            self.connection.sendfile(f)
        self._log(HTTPStatus.OK, size, "file")


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values and len(values) == 1 else None


class BootService:
    """The boot service: an HTTP server over a :class:`BootState`.

    Args:
        bind: address to listen on (IPv4 or IPv6 literal).
        port: TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
        state_dir: where the state file lives (created 0700).
        public_url: the URL installers reach the service at (default ``http://bind:port``).
        files_dir: a directory served read-only under ``/files/`` (kernel, initrd, stage2).
        on_hostkeys: called with (node, mac, keys) when an install reports its host keys;
            raise a :class:`~metalctl.errors.MetalctlError` to refuse them.
        request_timeout_s: socket timeout per request, and the cap on reading a body.
        max_connections: handler threads at once; more connections wait in the backlog.
        clock: seconds since the epoch (tests move it to reach deadlines).

    Raises:
        StoreError: the state file cannot be opened.
    """

    def __init__(self, bind: str, port: int, state_dir: Path, *,
                 public_url: str | None = None, files_dir: Path | None = None,
                 on_hostkeys: HostKeySink | None = None, request_timeout_s: float = 10.0,
                 max_connections: int = 256, clock: Callable[[], float] = time.time) -> None:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise InputError("bind", "bind", f"{bind!r} is not an IP address") from None
        if public_url is not None and not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[\w./-]*)?",
                                                       public_url):
            raise InputError("public_url", "public_url", f"{public_url!r} is not a base URL")
        self.bind, self.port = bind, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.files_dir = Path(files_dir).resolve() if files_dir else None
        self.on_hostkeys = on_hostkeys
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections
        self.state = BootState(Path(state_dir), clock)
        self._plain: dict[str, Secret] = {}
        self._mint = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL installers use."""
        if self.public_url:
            return self.public_url
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}"

    def start(self) -> BootService:
        """Listen and serve in a background thread.

        Raises:
            BootServiceError: the address cannot be bound.
        """
        handler = type("Handler", (_Handler,), {"timeout": self.request_timeout_s})
        try:
            self._server = _Server((self.bind, self.port), handler, self, self.max_connections)
        except OSError as exc:
            raise BootServiceError(where=f"{self.bind}:{self.port}",
                                   reason=exc.strerror or str(exc)) from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,),
                                        name="metalctl-boot", daemon=True)
        self._thread.start()
        LOG.info("boot service: listening on %s (state %s)", self.url, self.state.path)
        return self

    def stop(self) -> None:
        """Stop serving and close the state file; in-flight requests are abandoned."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5.0)
            self._server = self._thread = None
        self.state.close()

    def __enter__(self) -> BootService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the library API -----------------------------------------------------------------

    def add_install(self, node: str, mac: str, kickstart_text: str, boot_files: BootFiles,
                    deadline_s: float, *, replace: bool = False) -> Secret:
        """Register an install: the MAC's next boot script chains the installer.

        Args:
            node: the node's name (letters, digits, ``._-``).
            mac: the MAC the machine PXE-boots from.
            kickstart_text: the rendered kickstart; :data:`TOKEN_PLACEHOLDER` in it is
                replaced by the node's token when it is served.
            boot_files: installer kernel, initrd, stage2 and arguments.
            deadline_s: seconds from now after which the token expires (``timeout``).
            replace: replace an active install of the node instead of refusing.

        Returns:
            The node's one-time token.

        Raises:
            InputError: a bad node name, MAC, boot file, deadline or kickstart.
            InstallConflict: the node already has an active install, or the MAC is taken.
        """
        check_node(node)
        mac = normalise_mac(mac)
        boot_files.validate()
        for value in (boot_files.kernel, boot_files.initrd, boot_files.stage2):
            if value and "://" not in value and self.files_dir is None:
                raise InputError("boot_files", value, "a relative path needs files_dir")
        if not 0 < deadline_s <= MAX_DEADLINE_S:
            raise InputError("deadline_s", "deadline_s",
                             f"{deadline_s} is not within 0..{MAX_DEADLINE_S:.0f} s")
        if not kickstart_text or len(kickstart_text.encode()) > MAX_KICKSTART_BYTES:
            raise InputError("kickstart", node, "empty, or larger than 1 MiB")
        token = tokens.issue()
        with self._mint:
            self.state.add(node, mac, tokens.digest(token), kickstart_text, boot_files,
                           deadline_s, replace=replace)
            self._plain[node] = token
        LOG.info("boot service: install of %s added (MAC %s, %s)", node, mac,
                 tokens.fingerprint(token))
        return token

    def install(self, node: str) -> InstallRecord | None:
        """The node's latest install (its state reflects the deadline), or None."""
        return self.state.get(node)

    def events(self, node: str) -> list[BootEvent]:
        """The events of the node's latest install, oldest first."""
        return self.state.events(node)

    def forget_token(self, node: str) -> None:
        with self._mint:
            self._plain.pop(node, None)

    # --- what the handlers call ----------------------------------------------------------

    def entry_script(self) -> str:
        return (f"#!ipxe\n# metalctl: ask the boot service for this machine's script\n"
                f"chain --autofree {self.url}/boot/${{mac:hexhyp}}.ipxe || exit\n")

    def boot_script(self, mac: str) -> tuple[str, str]:
        """The iPXE script for ``mac`` and a log note (no secret in either's note)."""
        with self._mint:
            found = self.state.active_by_mac(mac)
            if found is None or found[0].kickstart_fetched_at is not None:
                why = "no active install" if found is None else "kickstart already fetched"
                return LOCAL_BOOT_SCRIPT, f"{mac}: local boot ({why})"
            record, digest = found
            token = self._plain.get(record.node)
            if token is None or not hmac.compare_digest(tokens.digest(token), digest):
                token = tokens.issue()
                self.state.set_token(record.node, tokens.digest(token))
                self.state.event(record.node, "token-reissued",
                                 "this process did not hold the token")
                self._plain[record.node] = token
        self.state.mark_script_served(record.node)
        return (self._chain_script(record, token),
                f"{mac}: install of {record.node} {tokens.fingerprint(token)}")

    def _file_url(self, value: str) -> str:
        return value if "://" in value else f"{self.url}/files/{value}"

    def _chain_script(self, record: InstallRecord, token: Secret) -> str:
        files = record.boot_files
        hyphen_mac = record.mac.replace(":", "-")
        args = ["initrd=initrd", f"inst.ks={self.url}/ks/{record.node}?token={token.reveal()}",
                f"BOOTIF=01-{hyphen_mac}"]
        if files.stage2:
            args.append(f"inst.stage2={self._file_url(files.stage2)}")
        args.extend(files.kernel_args)
        # modelled on Ironic's ipxe_config.template: named images (initrd= for EFI
        # stubs), and a retry that asks the service again, so a passed deadline ends it
        return "\n".join([
            "#!ipxe",
            f"# metalctl: install of {record.node} ({record.mac})",
            "imgfree",
            f"kernel --name vmlinuz {self._file_url(files.kernel)} {' '.join(args)} "
            "|| goto retry",
            f"initrd --name initrd {self._file_url(files.initrd)} || goto retry",
            "boot || goto retry",
            ":retry",
            "echo metalctl: fetching the installer failed, asking again in 5 s",
            "sleep 5",
            f"chain --autofree {self.url}/boot/{hyphen_mac}.ipxe || exit",
            "",
        ])

    def callback(self, node: str, stage: str, body: bytes,
                 token: str | None) -> tuple[int, str]:
        """Record an authenticated callback; return (HTTP status, reply text)."""
        if stage == "hostkeys":
            return self._hostkeys(node, body)
        message = _clean_message(body, token)
        self.state.event(node, stage, message)
        if stage in ("end", "error"):
            self.state.finish(node, INSTALLED if stage == "end" else FAILED,
                              message if stage == "error" else None)
            self.forget_token(node)
            LOG.info("boot service: install of %s %s%s", node,
                     "ended" if stage == "end" else "failed: ", message if stage == "error"
                     else "")
        return HTTPStatus.OK, "ok\n"

    def _hostkeys(self, node: str, body: bytes) -> tuple[int, str]:
        try:
            keys = hostkeys_mod.parse(body.decode("ascii"))
        except (UnicodeDecodeError, InputError) as exc:
            reason = str(exc) if isinstance(exc, InputError) else "not ASCII"
            self.state.event(node, "hostkeys-refused", reason)
            return HTTPStatus.BAD_REQUEST, reason + "\n"
        record = self.state.get(node)
        if record is None:
            return HTTPStatus.FORBIDDEN, ""
        if record.hostkeys:
            if set(record.hostkeys) == set(keys):
                return HTTPStatus.OK, "ok (unchanged)\n"
            reason = "host keys changed during the install; refused (reinstall to replace them)"
            self.state.event(node, "hostkeys-refused", reason)
            LOG.warning("boot service: %s: %s", node, reason)
            return HTTPStatus.CONFLICT, reason + "\n"
        if self.on_hostkeys is not None:
            try:
                self.on_hostkeys(node, record.mac, keys)
            except MetalctlError as exc:
                self.state.event(node, "hostkeys-refused", str(exc))
                return HTTPStatus.CONFLICT, "host keys refused\n"
        self.state.set_hostkeys(node, keys)
        self.state.event(node, "hostkeys", " ".join(k.fingerprint for k in keys))
        return HTTPStatus.OK, "ok\n"

    def file_path(self, rel: str) -> Path | None:
        """The regular file ``rel`` under ``files_dir``, or None (never outside it)."""
        if self.files_dir is None or not re.fullmatch(r"[A-Za-z0-9._/-]{1,255}", rel):
            return None
        path = (self.files_dir / rel).resolve()
        if not path.is_relative_to(self.files_dir) or not path.is_file():
            return None
        return path
