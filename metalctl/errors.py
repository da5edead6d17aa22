"""metalctl's exception tree.

Every error metalctl raises is a :class:`MetalctlError`. Messages are templates
filled from keyword arguments (as sushy and virtualbmc do) and the arguments stay
available as attributes, so callers can act on them without parsing text.
Third-party exceptions are translated into this tree at one boundary per peer
(``bmc/redfish.py``, ``bmc/ipmi.py``, ``ironic.py``).
"""

from __future__ import annotations

import re
from typing import Any


class MetalctlError(Exception):
    """Base class of every metalctl error."""

    message = "metalctl error"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)
        text = message if message is not None else self.message
        if kwargs and message is None:
            text = text % kwargs
        self.text = text
        super().__init__(text)


class InputError(MetalctlError):
    """Bad user input: a file (or option), a field in it, and why it is wrong.

    ``line`` is the 1-based line in the file when known; the message then reads
    ``path:line: field: reason``, the one wording every data file error uses.
    """

    message = "%(path)s: %(field)s: %(reason)s"

    def __init__(self, path: str, field: str, reason: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        # one line, whatever the input held (a newline in a name), no URL userinfo
        text = mask_url(one_line(f"{where}: {field}: {reason}"))
        super().__init__(text, path=str(path), field=field, reason=reason, line=line)


class CredentialsError(InputError):
    """A named credential set is missing, unreadable or unsafe."""


class PeerUnavailable(MetalctlError):
    """A peer everything depends on cannot be used: Ironic, Nova/Placement, the store,
    the lab, the boot service's address. The CLI maps every subclass to exit 4, in one
    place (``metalctl.cli.main``); a stage raises it instead of failing node after node."""


class StoreError(PeerUnavailable):
    """The local SQLite store cannot be opened or written."""

    message = "store %(path)s: %(reason)s"


class WaitTimeout(MetalctlError):
    """Something waited for (:func:`metalctl.poll.wait_for`) was not ready in time.

    ``what`` names it as an operator would; ``last`` is the last value read (None when
    every read failed), ``error`` the last transient error of a read, if any. A caller
    with a domain of its own translates it (a BMC's power state is a ``BmcTimeout``).
    """

    def __init__(self, what: str, timeout_s: float, last: Any = None,
                 error: BaseException | None = None, *, shown: str) -> None:
        text = one_line(f"{what}: not ready after {timeout_s:.0f} s ({shown})")
        super().__init__(mask_url(text), what=what, timeout_s=timeout_s, last=last,
                         error=error)


# --- BMC ---------------------------------------------------------------------------------


class BmcError(MetalctlError):
    """A BMC did not do what was asked."""

    message = "BMC %(address)s: %(reason)s"
    status = "protocol-error"


class BmcUnreachable(BmcError):
    """Nothing answers at the address (connection refused, no IPMI reply)."""

    status = "no-bmc"


class BmcAuthFailed(BmcError):
    """Every credential set tried was rejected."""

    status = "auth-failed"


class BmcTLSError(BmcError):
    """TLS handshake or certificate verification failed."""

    status = "tls-error"


class BmcTimeout(BmcError):
    """The BMC accepted a connection or packet but did not answer in time."""

    status = "timeout"


class BmcProtocolError(BmcError):
    """The BMC answered, but not as the protocol says (5xx, malformed payloads)."""

    status = "protocol-error"


# --- Ironic --------------------------------------------------------------------------------


class IronicError(MetalctlError):
    """Ironic refused or failed a request."""

    message = "Ironic: %(reason)s"


class IronicUnavailable(IronicError, PeerUnavailable):
    """Ironic's API cannot be reached or answered 5xx/503."""


class IronicConflict(IronicError):
    """Ironic answered 409 (duplicate name/MAC, node locked)."""


class AmbiguousMatch(IronicError):
    """A node's data matches several existing Ironic nodes; refusing to guess."""

    message = "%(node)s matches several Ironic nodes: %(candidates)s"


# --- Hosts (later stages) ------------------------------------------------------------------


class HostError(MetalctlError):
    """An SSH-managed host failed."""

    message = "host %(host)s: %(reason)s"


class SshHostKeyMismatch(HostError):
    """The host key differs from known_hosts."""


class SshHostKeyUnknown(HostError):
    """The host is not in known_hosts; metalctl never adds keys silently."""


class HostUnreachable(HostError):
    """No SSH connection could be opened (refused, timed out, no route)."""


class HostDropped(HostError):
    """The SSH connection was lost mid-run."""


class HostAuthFailed(HostError):
    """The SSH server refused the credentials."""


class ProfileUnsatisfiable(MetalctlError):
    """A profile asks for more than the node's hardware has."""

    message = "node %(node)s: needs %(need)s; %(have)s"


class FactsIncomplete(MetalctlError):
    """The topology facts lack what a derivation needs (never guessed)."""

    message = "node %(node)s: %(reason)s"


class ProfileError(InputError):
    """A profile file is invalid (names file, key and reason)."""


class BiosError(MetalctlError):
    """BIOS settings could not be mapped, written or verified."""

    message = "node %(node)s: BIOS: %(reason)s"


class BiosUnsupported(BiosError):
    """The node's BMC offers no BIOS settings metalctl can use (IPMI only, no Bios)."""


class CloudError(MetalctlError):
    """Nova or Placement refused a request (4xx); ``status`` is the HTTP status."""

    message = "%(service)s: %(reason)s"


class CloudUnavailable(CloudError, PeerUnavailable):
    """Nova or Placement cannot be reached, or answered 5xx."""


class ProvisionError(MetalctlError):
    """An install could not be prepared or followed."""

    message = "node %(node)s: %(reason)s"


class InstallConflict(ProvisionError):
    """The node already has an active install, or its MAC belongs to another one."""


class BootServiceError(PeerUnavailable):
    """The boot service cannot run (address in use, state directory unusable)."""

    message = "boot service %(where)s: %(reason)s"


class LabError(PeerUnavailable):
    """The emulated lab could not be started or inspected."""

    message = "lab: %(reason)s"


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7f)} | {
    0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t"}


def one_line(text: str) -> str:
    """``text`` with control characters (newline included) escaped as ``\\n``, ``\\xNN``:
    a name or a path from input can never split an error line or act on a terminal."""
    return str(text).translate(_CONTROL)


_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]*@")


def mask_url(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` as ``scheme://***@``: an address
    is echoed in errors and logs, the userinfo in it never is."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", str(text))


def describe(exc: BaseException | None) -> str:
    """A one-line message for a report: metalctl errors as they are (no secrets by
    construction), anything else prefixed with its class."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, MetalctlError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
