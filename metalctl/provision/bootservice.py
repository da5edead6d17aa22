"""The boot service of ``--via pxe``: iPXE scripts per MAC, one-time kickstarts, callbacks.

``metalctl serve`` runs this; the provision stage registers installs with
:meth:`BootService.add_install` (in the same process, or in another one through the
shared state file) and follows them with :meth:`BootService.install` and
:meth:`BootService.events`.

Routes (HTTP/1.1, one request per connection, bodies bounded; transport in
:mod:`metalctl.provision.bootserver`):

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
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from metalctl.credentials import Secret
from metalctl.errors import InputError, MetalctlError
from metalctl.provision import hostkeys as hostkeys_mod
from metalctl.provision import tokens
from metalctl.provision.bootserver import HttpServer, Request, Response, scrub
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
TOKEN_PLACEHOLDER = tokens.TOKEN_PLACEHOLDER
CALLBACK_STAGES = ("started", "pre", "post", "hostkeys", "end", "error")
MAX_BODY_BYTES = 64 * 1024
MAX_KICKSTART_BYTES = 1024 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_EVENTS_PER_INSTALL = 256
MAX_DEADLINE_S = 7 * 24 * 3600.0
#: a sink for host keys: (node, mac, keys); raise a MetalctlError to refuse them
HostKeySink = Callable[[str, str, tuple[HostKey, ...]], None]

_BOOT_RE = re.compile(r"/boot/([0-9A-Fa-f:-]{17})\.ipxe")
_NODE_PATH = re.compile(r"/(ks|callback)/([^/]+)")
_TEXT = "text/plain"

LOCAL_BOOT_SCRIPT = """#!ipxe
# metalctl: no install is pending for this machine: boot from the local disk
iseq ${platform} efi && exit ||
sanboot --no-describe --drive 0x80 || exit
"""


def _clean_message(raw: bytes, token: str | None) -> str:
    """The installer's text, safe to store and log: bounded, printable, token-free."""
    text = raw.decode("utf-8", "replace")
    if token:
        text = text.replace(token, "***")
    text = "".join(c if c.isprintable() or c == " " else " " for c in scrub(text))
    # the end of an installer's log tail says what failed: keep the last characters
    return " ".join(text.split())[-MAX_MESSAGE_CHARS:]


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values and len(values) == 1 else None


def _forbidden(note: str) -> Response:
    return Response(HTTPStatus.FORBIDDEN, b"", note=note)


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
        request_timeout_s: time for a request to arrive and a small answer to leave.
        max_connections: requests handled at once; more wait (within the timeout).
        tick_s: how often passed deadlines are recorded as ``timeout`` events.
        clock: seconds since the epoch (tests move it to reach deadlines).

    Raises:
        StoreError: the state file cannot be opened.
    """

    def __init__(self, bind: str, port: int, state_dir: Path, *,
                 public_url: str | None = None, files_dir: Path | None = None,
                 on_hostkeys: HostKeySink | None = None, request_timeout_s: float = 10.0,
                 max_connections: int = 1024, tick_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
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
        self.tick_s = tick_s
        self.state = BootState(Path(state_dir), clock)
        self._plain: dict[str, Secret] = {}
        self._mint = threading.Lock()
        self._http: HttpServer | None = None

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
        self._http = HttpServer(self.bind, self.port, self.route,
                                request_timeout_s=self.request_timeout_s,
                                max_connections=self.max_connections,
                                max_body_bytes=MAX_BODY_BYTES, tick=self._tick,
                                tick_s=self.tick_s)
        try:
            self.port = self._http.start()
        except OSError as exc:
            self._http = None
            raise BootServiceError(where=f"{self.bind}:{self.port}",
                                   reason=exc.strerror or str(exc)) from None
        LOG.info("boot service: listening on %s (state %s)", self.url, self.state.path)
        return self

    def stop(self) -> None:
        """Stop serving and close the state file; requests in flight are cancelled."""
        if self._http is not None:
            self._http.stop()
            self._http = None
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

    def _tick(self) -> None:
        """Every few seconds: record passed deadlines, drop tokens of ended installs."""
        self.state.expire()
        active = {r.node for r in self.state.active()}
        with self._mint:
            for node in [n for n in self._plain if n not in active]:
                del self._plain[node]

    def forget_token(self, node: str) -> None:
        """Forget the plain install token kept for ``node``."""
        with self._mint:
            self._plain.pop(node, None)

    # --- routes (called on the server's event loop) --------------------------------------

    def route(self, req: Request) -> Response:
        """Answer one request (see the module docstring for the routes)."""
        try:
            if req.method == "HEAD":
                return self._head_route(req)
            if req.method == "GET" and req.path == "/boot.ipxe":
                return Response(HTTPStatus.OK, self.entry_script().encode())
            if req.method == "GET" and (m := _BOOT_RE.fullmatch(req.path)):
                return self._boot_route(m.group(1))
            m = _NODE_PATH.fullmatch(req.path)
            if m and m.group(1) == "ks" and req.method == "GET":
                return self._kickstart_route(m.group(2), _one(req.query, "token"), req.peer)
            if m and m.group(1) == "callback" and req.method == "POST":
                return self._callback_route(m.group(2), req)
            if req.method == "GET" and req.path.startswith("/files/") and self.files_dir:
                path = self.file_path(req.path.removeprefix("/files/"))
                if path is not None:
                    return Response(HTTPStatus.OK, content_type="application/octet-stream",
                                    file=path, note="file")
            if req.method == "GET" and req.path == "/healthz":
                return Response(HTTPStatus.OK, b"ok\n")
            return Response(HTTPStatus.NOT_FOUND, b"not found\n")
        except MetalctlError as exc:
            LOG.error("boot service: %s %s: %s", req.method, scrub(req.path), scrub(str(exc)))
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"boot service state unavailable\n")

    def _head_route(self, req: Request) -> Response:
        """HEAD: what a GET would answer, without its body and without its effects.

        Ironic's image service validates every URL with HEAD before it downloads it (the
        anaconda deploy's ``ks_template`` and boot files among them), so a kickstart
        answers HEAD with its length while the token is good, without being used up;
        per-MAC boot scripts are not answered (a HEAD must not hand out an install).
        """
        m = _NODE_PATH.fullmatch(req.path)
        if m and m.group(1) == "ks":
            node, presented = m.group(2), _one(req.query, "token")
            cred = self.state.credentials(node) if NODE_RE.fullmatch(node) else None
            if not tokens.matches(presented, cred[1] if cred else None) or \
                    cred[0] != ACTIVE or cred[2] is not None:  # type: ignore[index]
                return _forbidden(f"HEAD kickstart {node[:64]} {tokens.fingerprint(presented)}")
            text = self.state.peek_kickstart(node) or ""
            size = len(text.replace(TOKEN_PLACEHOLDER, presented or "").encode())
            return Response(HTTPStatus.OK, b"\0" * size, note=f"HEAD kickstart {node}")
        if req.path.startswith("/files/") or req.path in ("/boot.ipxe", "/healthz"):
            return self.route(Request("GET", req.path, req.query, req.headers, b"", req.peer))
        return Response(HTTPStatus.NOT_FOUND, b"not found\n")

    def _boot_route(self, raw_mac: str) -> Response:
        try:
            mac = normalise_mac(raw_mac)
        except InputError:
            return Response(HTTPStatus.BAD_REQUEST, b"not a MAC address\n", note="bad MAC")
        script, note = self.boot_script(mac)
        return Response(HTTPStatus.OK, script.encode(), note=note)

    def _kickstart_route(self, node: str, presented: str | None, peer: str) -> Response:
        fp = tokens.fingerprint(presented)
        cred = self.state.credentials(node) if NODE_RE.fullmatch(node) else None
        if not tokens.matches(presented, cred[1] if cred else None):
            return _forbidden(f"kickstart {node[:64]}: wrong token {fp}")
        state, digest, fetched_at = cred  # type: ignore[misc]
        if state != ACTIVE or fetched_at is not None:
            why = f"install {state}" if state != ACTIVE else "already fetched"
            return _forbidden(f"kickstart {node}: {why} {fp}")
        text = self.state.take_kickstart(node, digest, peer)
        if text is None:  # lost a race with another fetch, or the deadline just passed
            return _forbidden(f"kickstart {node}: already fetched or expired {fp}")
        self.forget_token(node)
        body = text.replace(TOKEN_PLACEHOLDER, presented or "").encode()
        return Response(HTTPStatus.OK, body, note=f"kickstart {node} {fp}")

    def _callback_route(self, node: str, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        presented = auth[7:].strip() if auth[:7].lower() == "bearer " else _one(req.query,
                                                                                  "token")
        fp = tokens.fingerprint(presented)
        cred = self.state.credentials(node) if NODE_RE.fullmatch(node) else None
        if not tokens.matches(presented, cred[1] if cred else None) or cred[0] != ACTIVE:
            return _forbidden(f"callback {node[:64]}: token refused {fp}")
        stage = _one(req.query, "stage")
        if stage not in CALLBACK_STAGES:
            return Response(HTTPStatus.BAD_REQUEST, b"stage must be one of "
                            + ", ".join(CALLBACK_STAGES).encode() + b"\n",
                            note=f"{node}: bad stage")
        if self.state.count_events(node) >= MAX_EVENTS_PER_INSTALL:
            return Response(HTTPStatus.TOO_MANY_REQUESTS, b"too many callbacks\n", note=node)
        status, reply = self.callback(node, stage, req.body, presented, peer=req.peer)
        return Response(status, reply.encode(), note=f"callback {node} {stage} {fp}")

    # --- what the handlers call ----------------------------------------------------------

    def entry_script(self) -> str:
        """Return the iPXE script that chains to this machine's per-MAC script."""
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
                 token: str | None, *, peer: str = "") -> tuple[int, str]:
        """Record an authenticated callback; return (HTTP status, reply text).

        ``peer`` (the installer's address) is kept with the host keys: it is the address
        the installed host answers on when no static one was planned.
        """
        if stage == "hostkeys":
            return self._hostkeys(node, body, peer)
        message = _clean_message(body, token)
        self.state.event(node, stage, message)
        if stage == "end":
            self.state.finish(node, INSTALLED)
            self.forget_token(node)
            LOG.info("boot service: install of %s ended", node)
        elif stage == "error":
            self.state.finish(node, FAILED, message)
            self.forget_token(node)
            LOG.info("boot service: install of %s failed: %s", node, message)
        return HTTPStatus.OK, "ok\n"

    def _hostkeys(self, node: str, body: bytes, peer: str = "") -> tuple[int, str]:
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
        self.state.event(node, "hostkeys", " ".join(k.fingerprint for k in keys)
                         + (f" from {peer}" if peer else ""))
        return HTTPStatus.OK, "ok\n"

    def file_path(self, rel: str) -> Path | None:
        """The regular file ``rel`` under ``files_dir``, or None (never outside it)."""
        if self.files_dir is None or not re.fullmatch(r"[A-Za-z0-9._/-]{1,255}", rel):
            return None
        path = (self.files_dir / rel).resolve()
        if not path.is_relative_to(self.files_dir) or not path.is_file():
            return None
        return path
