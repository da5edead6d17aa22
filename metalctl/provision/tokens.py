"""One-time install secrets: minted at random, kept only as hashes, compared in constant time.

Two kinds, the same shape: a kickstart *ticket* (handed out in the iPXE script or to
Ironic; opens one kickstart fetch) and a callback *token* (minted as the kickstart is
served and written into it; opens the install's callbacks until ``end``, ``error`` or
the deadline). Each is 256 bits from :func:`secrets.token_urlsafe`,
so a plain SHA-256 is enough to store it: there is nothing to brute-force, unlike a
password, and a leaked state file gives no usable token. Logs carry a fingerprint only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from metalctl.credentials import Secret

#: 32 random bytes, URL-safe base64 without padding: 43 characters of [A-Za-z0-9_-]
TOKEN_BYTES = 32
TOKEN_CHARS = 43
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
#: what a rendered kickstart holds where its token goes: the boot service replaces it as
#: it serves the kickstart, so neither the state file nor a rendered file holds a token
TOKEN_PLACEHOLDER = "@@METALCTL_TOKEN@@"  # noqa: S105 - a marker, not a secret
# a digest of the empty string stands in for unknown nodes, so a miss costs one compare too
_NO_DIGEST = hashlib.sha256(b"").hexdigest()


def issue() -> Secret:
    """Mint a new token.

    Returns:
        The token, as a :class:`Secret` that cannot be printed or logged.
    """
    return Secret(secrets.token_urlsafe(TOKEN_BYTES))


def digest(token: Secret | str) -> str:
    """The SHA-256 hex digest of a token: what the state file keeps."""
    value = token.reveal() if isinstance(token, Secret) else token
    return hashlib.sha256(value.encode("ascii", "replace")).hexdigest()


def fingerprint(token: Secret | str | None) -> str:
    """A short, non-reversible label for logs (``tok:1a2b3c4d``), or ``tok:none``.

    It is a hash of the digest, not a prefix of the stored digest, so a log line and a
    state file together still reveal nothing about the token.
    """
    if token is None:
        return "tok:none"
    return "tok:" + hashlib.sha256(digest(token).encode()).hexdigest()[:8]


def well_formed(value: str) -> bool:
    """True when ``value`` has the exact shape :func:`issue` produces."""
    return bool(_TOKEN_RE.fullmatch(value))


def matches(presented: str | None, stored_digest: str | None) -> bool:
    """Constant-time check of a presented token against a stored digest.

    Malformed tokens and unknown nodes (``stored_digest is None``) still cost one
    digest and one compare, so timing does not tell which part was wrong.
    """
    candidate = digest(presented) if presented and well_formed(presented) else _NO_DIGEST
    ok = hmac.compare_digest(candidate, stored_digest or _NO_DIGEST)
    return ok and stored_digest is not None and candidate != _NO_DIGEST
