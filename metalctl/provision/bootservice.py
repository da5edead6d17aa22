"""The boot service of ``--via pxe``: iPXE scripts per MAC, one-time kickstarts, callbacks.

``metalctl serve`` runs this; the provision stage registers installs with
:meth:`BootService.add_install` (in the same process, or in another one through the
shared state file) and follows them with :meth:`BootService.install` and
:meth:`BootService.events`.

Routes (HTTP/1.1, one request per connection, bodies bounded; transport in
:mod:`metalctl.provision.bootserver`):

* ``GET /boot.ipxe``: the entry script dnsmasq hands to iPXE; it chains the per-MAC one.
* ``GET /boot/<mac>.ipxe`` (``52-54-00-..`` as iPXE's ``${mac:hexhyp}`` gives it, or
  ``52:54:00:..``): for a MAC with an active PXE install whose kickstart has not been
  fetched yet, a script that chains the installer with ``inst.ks=<url with a ticket>``;
  for any other MAC, a script that boots the local disk, so a machine nobody meant to
  wipe is never wiped.
* ``GET /ks/<node>?ticket=T``: the node's kickstart, once, for its current ticket, from
  the machine's own address; 403 and an empty body otherwise.
* ``POST /callback/<node>?stage=S`` with ``Authorization: Bearer T`` (or ``&token=T``),
  T the token written into the kickstart: ``started``, ``pre``, ``post``, ``hostkeys``
  (body: ``ssh_host_*_key.pub`` lines), ``end`` or ``error`` (body: the installer's
  message), in that order, each once, from the install's bound address only.
* ``GET /files/<path>``: installer files from ``files_dir``, when one is given.
* ``GET /healthz``.

Token flow (docs/bootservice.md has the threat model): what a MAC-only request gets is a
*ticket*: single use, short-lived, good for one kickstart fetch, and only from the
address DHCP gave that MAC when the service knows the leases (``dhcp=``). Serving the
kickstart uses the ticket up, binds the install to the fetching address (PXE path) and
mints the callback *token*, which exists only inside that response: the kickstart text
is opaque except that :data:`TOKEN_PLACEHOLDER` is replaced by it. On the Ironic path
Ironic's conductor fetches the kickstart, so the install binds to the first callback's
address instead, which must be the machine's leased one when the leases are known.
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
from typing import Protocol

from metalctl.credentials import Secret
from metalctl.errors import BootServiceError, InputError, MetalctlError
from metalctl.provision import hostkeys as hostkeys_mod
from metalctl.provision import tokens
from metalctl.provision.bootserver import HttpServer, Request, Response, scrub
from metalctl.provision.bootstate import (
    ACTIVE,
    FAILED,
    FETCHERS,
    INSTALLED,
    NODE_RE,
    BootEvent,
    BootFiles,
    BootState,
    InstallAuth,
    InstallRecord,
    check_node,
    normalise_mac,
)
from metalctl.provision.hostkeys import HostKey

LOG = logging.getLogger(__name__)

#: replaced in a served kickstart by the callback token minted for it
TOKEN_PLACEHOLDER = tokens.TOKEN_PLACEHOLDER
CALLBACK_STAGES = ("started", "pre", "post", "hostkeys", "end", "error")
#: the order an installer calls back in: each stage once, and only after the ones before
#: it (optional ones may be skipped); ``error`` may come at any point
STEPS = {"started": 1, "pre": 2, "post": 3, "hostkeys": 4, "end": 5}
MAX_BODY_BYTES = 64 * 1024
MAX_KICKSTART_BYTES = 1024 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_DEADLINE_S = 7 * 24 * 3600.0
#: a kickstart ticket's life from the moment it is minted: power-on, firmware, iPXE and
#: the installer's kernel download come between (POST alone takes minutes on big servers)
TICKET_TTL_S = 900.0
#: a sink for host keys: (node, mac, keys); raise a MetalctlError to refuse them
HostKeySink = Callable[[str, str, tuple[HostKey, ...]], None]

_BOOT_RE = re.compile(r"/boot/([0-9A-Fa-f:-]{17})\.ipxe")
_NODE_PATH = re.compile(r"/(ks|callback)/([^/]+)")

LOCAL_BOOT_SCRIPT = """#!ipxe
# metalctl: no install is pending for this machine: boot from the local disk
iseq ${platform} efi && exit ||
sanboot --no-describe --drive 0x80 || exit
"""


class DhcpAddresses(Protocol):
    """Which addresses DHCP gave a MAC (:class:`metalctl.provision.dnsmasq.DnsmasqLeases`)."""

    def addresses(self, mac: str) -> frozenset[str] | None:
        """The addresses leased or pinned to ``mac``; None when this source cannot know."""


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
        dhcp: what DHCP leased or pinned to each MAC (dnsmasq's files); without it an
            install binds to whichever address fetches its kickstart first (PXE) or calls
            back first (Ironic), which the site's network must then vouch for.
        ticket_ttl_s: how long a kickstart ticket handed to a machine stays good.
        request_timeout_s: time for a request to arrive and a small answer to leave.
        max_connections: requests handled at once; more wait (within the timeout).
        tick_s: how often passed deadlines are recorded as ``timeout`` events.
        clock: seconds since the epoch (tests move it to reach deadlines).

    Raises:
        StoreError: the state file cannot be opened.
    """

    def __init__(self, bind: str, port: int, state_dir: Path, *,
                 public_url: str | None = None, files_dir: Path | None = None,
                 on_hostkeys: HostKeySink | None = None, dhcp: DhcpAddresses | None = None,
                 ticket_ttl_s: float = TICKET_TTL_S, request_timeout_s: float = 10.0,
                 max_connections: int = 1024, tick_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise InputError("bind", "bind", f"{bind!r} is not an IP address") from None
        if public_url is not None and not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[\w./-]*)?",
                                                       public_url):
            raise InputError("public_url", "public_url", f"{public_url!r} is not a base URL")
        if not 0 < ticket_ttl_s <= MAX_DEADLINE_S:
            raise InputError("ticket_ttl_s", "ticket_ttl_s", f"{ticket_ttl_s} is not positive")
        self.bind, self.port = bind, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.files_dir = Path(files_dir).resolve() if files_dir else None
        self.on_hostkeys = on_hostkeys
        self.dhcp = dhcp
        self.ticket_ttl_s = ticket_ttl_s
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections
        self.tick_s = tick_s
        self.state = BootState(Path(state_dir), clock)
        # plain tickets this process minted, for the boot script to hand out again
        # (iPXE retries); never stored, never logged
        self._tickets: dict[str, tuple[Secret, float]] = {}
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
        if self.dhcp is None:
            LOG.warning("boot service: no DHCP lease source (dnsmasq's configuration): each "
                        "install binds to the first address that fetches its kickstart")
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
                    deadline_s: float, *, replace: bool = False,
                    fetcher: str = "machine") -> Secret:
        """Register an install: the MAC's next boot script chains the installer.

        Args:
            node: the node's name (letters, digits, ``._-``).
            mac: the MAC the machine PXE-boots from.
            kickstart_text: the rendered kickstart; :data:`TOKEN_PLACEHOLDER` in it is
                replaced by the install's callback token when it is served.
            boot_files: installer kernel, initrd, stage2 and arguments.
            deadline_s: seconds from now after which the install ends (``timeout``).
            replace: replace an active install of the node instead of refusing.
            fetcher: ``machine`` (PXE: the machine fetches its kickstart, and its boot
                script carries the ticket) or ``ironic`` (Ironic's conductor fetches the
                kickstart from the URL it was given; the MAC's boot script is not ours).

        Returns:
            The install's first kickstart ticket (``/ks/<node>?ticket=...``), good for
            one fetch, within :attr:`ticket_ttl_s` (``machine``) or the deadline
            (``ironic``).

        Raises:
            InputError: a bad node name, MAC, boot file, deadline, fetcher or kickstart.
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
        if fetcher not in FETCHERS:
            raise InputError("fetcher", node, f"{fetcher!r} is not one of {FETCHERS}")
        ticket = tokens.issue()
        ttl = self.ticket_ttl_s if fetcher == "machine" else deadline_s
        with self._mint:
            self.state.add(node, mac, tokens.digest(ticket), kickstart_text, boot_files,
                           deadline_s, replace=replace, ticket_ttl_s=ttl, fetcher=fetcher)
            self._tickets[node] = (ticket, self.state.now() + min(ttl, deadline_s))
        LOG.info("boot service: install of %s added (MAC %s, %s)", node, mac,
                 tokens.fingerprint(ticket))
        return ticket

    def install(self, node: str) -> InstallRecord | None:
        """The node's latest install (its state reflects the deadline), or None."""
        return self.state.get(node)

    def events(self, node: str) -> list[BootEvent]:
        """The events of the node's latest install, oldest first."""
        return self.state.events(node)

    def _tick(self) -> None:
        """Every few seconds: record passed deadlines, drop tickets of ended installs."""
        self.state.expire()
        pending = {r.node for r in self.state.active() if r.kickstart_fetched_at is None}
        with self._mint:
            for node in [n for n in self._tickets if n not in pending]:
                del self._tickets[node]

    def forget_ticket(self, node: str) -> None:
        """Forget the plain kickstart ticket kept for ``node``."""
        with self._mint:
            self._tickets.pop(node, None)

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
                return self._kickstart_route(m.group(2), _one(req.query, "ticket"), req.peer)
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
        answers HEAD with its length while the ticket is good, without using it up;
        per-MAC boot scripts are not answered (a HEAD must not hand out an install).
        """
        m = _NODE_PATH.fullmatch(req.path)
        if m and m.group(1) == "ks":
            node, ticket = m.group(2), _one(req.query, "ticket")
            auth = self.state.auth(node) if NODE_RE.fullmatch(node) else None
            why = self._ticket_problem(auth, ticket, req.peer)
            if why is not None:
                return _forbidden(f"HEAD kickstart {node[:64]}: {why} "
                                  f"{tokens.fingerprint(ticket)}")
            text = self.state.peek_kickstart(node) or ""
            size = len(text.replace(TOKEN_PLACEHOLDER, "x" * tokens.TOKEN_CHARS).encode())
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

    def _address_problem(self, auth: InstallAuth, peer: str) -> str | None:
        """Why ``peer`` is not the install's machine per DHCP, or None (it is, or the
        service does not know the leases)."""
        allowed = self.dhcp.addresses(auth.mac) if self.dhcp is not None else None
        if allowed is None or peer in allowed:
            return None
        given = ", ".join(sorted(allowed)) or "no lease or pin"
        return f"{peer} is not the address DHCP gave {auth.mac} ({given})"

    def _ticket_problem(self, auth: InstallAuth | None, ticket: str | None,
                        peer: str) -> str | None:
        """Why this kickstart fetch is refused, or None (GET and HEAD alike)."""
        if not tokens.matches(ticket, auth.ticket_digest if auth else None):
            return "wrong or used ticket"
        assert auth is not None
        if auth.state != ACTIVE:
            return f"install {auth.state}"
        if (auth.ticket_expires_at or 0.0) <= self.state.now():
            return "ticket expired (the machine asks its boot script again for a new one)"
        if auth.fetcher == "machine":
            return self._address_problem(auth, peer)
        return None

    def _refuse(self, auth: InstallAuth | None, stage: str, detail: str) -> None:
        """Record a refused request on the node, when it names an active install."""
        if auth is None or auth.state != ACTIVE:
            return
        detail = scrub(detail)
        if self.state.refused(auth.node, stage, detail):
            LOG.warning("boot service: %s: %s: %s", auth.node, stage, detail)

    def _kickstart_route(self, node: str, ticket: str | None, peer: str) -> Response:
        fp = tokens.fingerprint(ticket)
        auth = self.state.auth(node) if NODE_RE.fullmatch(node) else None
        why = self._ticket_problem(auth, ticket, peer)
        if why is not None:
            self._refuse(auth, "kickstart-refused", f"from {peer}: {why}")
            return _forbidden(f"kickstart {node[:64]}: {why} {fp}")
        assert auth is not None
        assert auth.ticket_digest is not None
        token = tokens.issue()
        text = self.state.take_kickstart(node, auth.ticket_digest, tokens.digest(token), peer,
                                         bind=auth.fetcher == "machine")
        if text is None:  # lost a race with another fetch, or the deadline just passed
            return _forbidden(f"kickstart {node}: already fetched or expired {fp}")
        self.forget_ticket(node)
        body = text.replace(TOKEN_PLACEHOLDER, token.reveal()).encode()
        return Response(HTTPStatus.OK, body, note=f"kickstart {node} {fp} -> "
                                                  f"{tokens.fingerprint(token)}")

    def _callback_route(self, node: str, req: Request) -> Response:
        auth_header = req.headers.get("authorization", "")
        presented = (auth_header[7:].strip() if auth_header[:7].lower() == "bearer "
                     else _one(req.query, "token"))
        fp, peer = tokens.fingerprint(presented), req.peer
        stage = _one(req.query, "stage")
        named = stage if stage in CALLBACK_STAGES else "?"
        auth = self.state.auth(node) if NODE_RE.fullmatch(node) else None
        if not tokens.matches(presented, auth.token_digest if auth else None):
            self._refuse(auth, "callback-refused", f"{named} from {peer}: wrong token")
            return _forbidden(f"callback {node[:64]}: token refused {fp}")
        assert auth is not None
        if auth.state != ACTIVE:
            return _forbidden(f"callback {node}: install {auth.state} {fp}")
        if stage not in CALLBACK_STAGES:
            return Response(HTTPStatus.BAD_REQUEST, b"stage must be one of "
                            + ", ".join(CALLBACK_STAGES).encode() + b"\n",
                            note=f"{node}: bad stage")
        why = self._binding_problem(auth, peer)
        if why is not None:
            self._refuse(auth, "callback-refused", f"{stage} from {peer}: {why}")
            return _forbidden(f"callback {node} {stage}: {why} {fp}")
        status, reply = self.callback(node, stage, req.body, presented, peer=peer, auth=auth)
        return Response(status, reply.encode(), note=f"callback {node} {stage} {fp}")

    def _binding_problem(self, auth: InstallAuth, peer: str) -> str | None:
        """Why callbacks from ``peer`` do not count for this install, or None; the first
        acceptable callback of an unbound install (Ironic path) binds it."""
        if auth.bound_peer is not None:
            return None if peer == auth.bound_peer else \
                f"the install is bound to {auth.bound_peer}, the machine's address"
        why = self._address_problem(auth, peer)
        if why is not None:
            return why
        if self.state.bind(auth.node, peer):
            return None
        bound = self.state.auth(auth.node)  # another callback bound it first
        return None if bound is not None and bound.bound_peer == peer else \
            "the install is bound to another address"

    # --- what the handlers call ----------------------------------------------------------

    def entry_script(self) -> str:
        """Return the iPXE script that chains to this machine's per-MAC script."""
        return (f"#!ipxe\n# metalctl: ask the boot service for this machine's script\n"
                f"chain --autofree {self.url}/boot/${{mac:hexhyp}}.ipxe || exit\n")

    def boot_script(self, mac: str) -> tuple[str, str]:
        """The iPXE script for ``mac`` and a log note (no secret in either's note).

        A machine asking again (iPXE retries) gets the same ticket while it is good; a
        process that did not mint it (restarted, or not the one that added the
        install) or a ticket past its life gets a new one (``ticket-reissued``).
        """
        with self._mint:
            record = self.state.active_by_mac(mac)
            if record is None or record.kickstart_fetched_at is not None \
                    or record.fetcher != "machine":
                why = ("no active install" if record is None else "kickstart already fetched"
                       if record.kickstart_fetched_at is not None else "Ironic boots it")
                return LOCAL_BOOT_SCRIPT, f"{mac}: local boot ({why})"
            now = self.state.now()
            held = self._tickets.get(record.node)
            digest = self.state.ticket_digest(record.node) or ""
            if held is None or held[1] <= now or \
                    not hmac.compare_digest(tokens.digest(held[0]), digest):
                why = "this process did not hold it" if held is None or held[1] > now \
                    else "the previous one expired"
                expires = min(now + self.ticket_ttl_s, record.deadline_at)
                held = (tokens.issue(), expires)
                self.state.set_ticket(record.node, tokens.digest(held[0]), expires)
                self.state.event(record.node, "ticket-reissued", why)
                self._tickets[record.node] = held
        self.state.mark_script_served(record.node)
        return (self._chain_script(record, held[0]),
                f"{mac}: install of {record.node} {tokens.fingerprint(held[0])}")

    def _file_url(self, value: str) -> str:
        return value if "://" in value else f"{self.url}/files/{value}"

    def _chain_script(self, record: InstallRecord, ticket: Secret) -> str:
        files = record.boot_files
        hyphen_mac = record.mac.replace(":", "-")
        args = ["initrd=initrd", f"inst.ks={self.url}/ks/{record.node}?ticket={ticket.reveal()}",
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

    def callback(self, node: str, stage: str, body: bytes, token: str | None, *,
                 peer: str = "", auth: InstallAuth | None = None) -> tuple[int, str]:
        """Record an authenticated callback, in order; return (HTTP status, reply text).

        ``peer`` (the installer's address) is kept with the host keys: it is the address
        the installed host answers on when no static one was planned.
        """
        auth = auth or self.state.auth(node)
        if auth is None or auth.state != ACTIVE:
            return HTTPStatus.FORBIDDEN, ""
        if stage == "error":
            message = _clean_message(body, token)
            self.state.event(node, stage, message)
            self.state.finish(node, FAILED, message)
            LOG.info("boot service: install of %s failed: %s", node, message)
            return HTTPStatus.OK, "ok\n"
        if stage == "hostkeys" and auth.has_hostkeys:
            return self._hostkeys_again(node, body, peer)
        if STEPS[stage] <= auth.step:
            done = next(s for s, n in STEPS.items() if n == auth.step)
            reason = f"{stage} out of order: the install already reported {done}"
            self._refuse(auth, "callback-refused", f"{stage} from {peer}: {reason}")
            return HTTPStatus.CONFLICT, reason + "\n"
        if stage == "end" and not auth.has_hostkeys:
            return self._fail(node, "end-refused", (
                "the installer sent `end` without delivering its SSH host keys (the "
                "kickstart's %post --nochroot hostkeys callback): nothing was trusted; "
                "check that section of the template and its log, then reinstall (--redo)"))
        if stage == "hostkeys":
            return self._hostkeys(node, auth, body, peer)
        self.state.advance(node, STEPS[stage], stage, _clean_message(body, token))
        if stage == "end":
            self.state.finish(node, INSTALLED)
            LOG.info("boot service: install of %s ended", node)
        return HTTPStatus.OK, "ok\n"

    def _fail(self, node: str, stage: str, reason: str) -> tuple[int, str]:
        """A conflict the installer cannot resolve: the install fails, loudly."""
        self.state.event(node, stage, reason)
        self.state.finish(node, FAILED, reason)
        LOG.warning("boot service: install of %s failed: %s", node, reason)
        return HTTPStatus.CONFLICT, reason + "\n"

    def _parse_keys(self, node: str, body: bytes) -> tuple[HostKey, ...] | str:
        try:
            return hostkeys_mod.parse(body.decode("ascii"))
        except (UnicodeDecodeError, InputError) as exc:
            reason = str(exc) if isinstance(exc, InputError) else "not ASCII"
            self.state.refused(node, "hostkeys-refused", reason)
            return reason

    def _hostkeys(self, node: str, auth: InstallAuth, body: bytes,
                  peer: str) -> tuple[int, str]:
        keys = self._parse_keys(node, body)
        if isinstance(keys, str):
            return HTTPStatus.BAD_REQUEST, keys + "\n"
        if self.on_hostkeys is not None:
            try:
                self.on_hostkeys(node, auth.mac, keys)
            except MetalctlError as exc:
                self.state.refused(node, "hostkeys-refused", str(exc))
                return HTTPStatus.CONFLICT, "host keys refused\n"
        self.state.set_hostkeys(node, keys)
        self.state.advance(node, STEPS["hostkeys"], "hostkeys",
                           " ".join(k.fingerprint for k in keys)
                           + (f" from {peer}" if peer else ""))
        return HTTPStatus.OK, "ok\n"

    def _hostkeys_again(self, node: str, body: bytes, peer: str) -> tuple[int, str]:
        """A second ``hostkeys``: the same keys are refused quietly, others fail the node."""
        keys = self._parse_keys(node, body)
        record = self.state.get(node)
        if isinstance(keys, str) or record is None:
            return HTTPStatus.BAD_REQUEST, (keys if isinstance(keys, str) else "") + "\n"
        if set(record.hostkeys) == set(keys):
            reason = "hostkeys out of order: already delivered (the same keys; nothing changed)"
            self.state.refused(node, "callback-refused", f"hostkeys from {peer}: {reason}")
            return HTTPStatus.CONFLICT, reason + "\n"
        first = " ".join(k.fingerprint for k in record.hostkeys)
        return self._fail(node, "hostkeys-conflict", (
            f"a second, different set of SSH host keys arrived from {peer} after the "
            f"install had delivered {first}: something else holds this install's token; "
            "nothing is trusted. Check which machine answers at that address and whether "
            "the provisioning network is shared, then reinstall the node (--redo)"))

    def file_path(self, rel: str) -> Path | None:
        """The regular file ``rel`` under ``files_dir``, or None (never outside it)."""
        if self.files_dir is None or not re.fullmatch(r"[A-Za-z0-9._/-]{1,255}", rel):
            return None
        path = (self.files_dir / rel).resolve()
        if not path.is_relative_to(self.files_dir) or not path.is_file():
            return None
        return path
