"""SSH host public keys as an installer reports them: parsed strictly, never trusted loosely.

The ``hostkeys`` callback carries the installed host's ``/etc/ssh/ssh_host_*_key.pub``
files, one OpenSSH public key per line (``type base64 [comment]``, the format of
``sshd(8)`` AUTHORIZED_KEYS and ``ssh-keygen -y``). Each key's wire blob (RFC 4253
§6.6, RFC 5656 §3.1, RFC 8709 §4) is decoded and checked against its declared type, so
only well-formed keys of known types reach metalctl's known_hosts. Comments are dropped:
they are the installer's free text and known_hosts does not need them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from metalctl.errors import InputError

#: the host key types OpenSSH generates today (DSA is gone since OpenSSH 9.8)
KNOWN_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
               "ecdsa-sha2-nistp521", "ssh-rsa")
MAX_LINE_CHARS = 4096  # an RSA 16384-bit key is about 2,800 characters
MIN_RSA_BITS = 2048
# uncompressed EC point sizes (0x04 || X || Y), RFC 5656 §3.1 and SEC 1 §2.3.3
_EC_POINT_BYTES = {"nistp256": 65, "nistp384": 97, "nistp521": 133}
_WHERE = "hostkeys callback"


@dataclass(frozen=True)
class HostKey:
    """One host public key.

    Attributes:
        type: the OpenSSH key type (``ssh-ed25519``, ...).
        blob_b64: the base64 wire blob, exactly as ``ssh-keygen`` prints it.
    """

    type: str
    blob_b64: str

    def known_hosts_line(self, *hosts: str) -> str:
        """The known_hosts line for ``hosts`` (names or addresses, comma-joined)."""
        return f"{','.join(hosts)} {self.type} {self.blob_b64}"

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
        raw = hashlib.sha256(base64.b64decode(self.blob_b64)).digest()
        return "SHA256:" + base64.b64encode(raw).decode().rstrip("=")

    def to_dict(self) -> dict[str, str]:
        """Return the key as ``{"type", "key"}`` (key base64)."""
        return {"type": self.type, "key": self.blob_b64}


def _strings(blob: bytes, field: str) -> list[bytes]:
    """Split an SSH wire blob into its length-prefixed strings (all of it, nothing left)."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise InputError(_WHERE, field, "truncated key blob")
        (size,) = struct.unpack(">I", blob[pos:pos + 4])
        pos += 4
        if size > len(blob) - pos:
            raise InputError(_WHERE, field, "truncated key blob")
        out.append(blob[pos:pos + size])
        pos += size
    return out


def _check_blob(key_type: str, blob: bytes, field: str) -> None:
    parts = _strings(blob, field)
    if not parts or parts[0] != key_type.encode():
        raise InputError(_WHERE, field, f"key blob is not of the declared type {key_type}")
    if key_type == "ssh-ed25519":
        ok = len(parts) == 2 and len(parts[1]) == 32
    elif key_type.startswith("ecdsa-sha2-"):
        curve = key_type.removeprefix("ecdsa-sha2-")
        ok = (len(parts) == 3 and parts[1] == curve.encode()
              and len(parts[2]) == _EC_POINT_BYTES[curve] and parts[2][:1] == b"\x04")
    else:  # ssh-rsa: e, n as mpints
        ok = len(parts) == 3 and parts[1] and parts[2]
        if ok:
            bits = int.from_bytes(parts[2], "big").bit_length()
            if bits < MIN_RSA_BITS:
                raise InputError(_WHERE, field,
                                 f"RSA key of {bits} bits; at least {MIN_RSA_BITS} required")
    if not ok:
        raise InputError(_WHERE, field, f"malformed {key_type} key")


def parse_line(line: str, field: str = "line 1") -> HostKey:
    """Parse one ``type base64 [comment]`` line.

    Raises:
        InputError: unknown type, bad base64, a blob that does not match its type, a
            weak RSA key or an over-long line.
    """
    if len(line) > MAX_LINE_CHARS:
        raise InputError(_WHERE, field, f"longer than {MAX_LINE_CHARS} characters")
    words = line.split()
    if len(words) < 2:
        raise InputError(_WHERE, field, "expected 'type base64 [comment]'")
    key_type, b64 = words[0], words[1]
    if key_type not in KNOWN_TYPES:
        raise InputError(_WHERE, field, f"key type {key_type[:40]!r} is not one of "
                                        + ", ".join(KNOWN_TYPES))
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(_WHERE, field, "key is not valid base64") from None
    _check_blob(key_type, blob, field)
    return HostKey(key_type, base64.b64encode(blob).decode())


def parse(text: str) -> tuple[HostKey, ...]:
    """Parse a ``hostkeys`` body: one key per line, blank lines and ``#`` comments skipped.

    Returns:
        The keys, identical duplicates removed, in the order given.

    Raises:
        InputError: any bad line, no key at all, or two different keys of one type (a
            host has one key per type, so there are at most five keys).
    """
    keys: list[HostKey] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = parse_line(line, f"line {number}")
        if key in keys:
            continue
        if any(k.type == key.type for k in keys):
            raise InputError(_WHERE, f"line {number}", f"a second, different {key.type} key")
        keys.append(key)
    if not keys:
        raise InputError(_WHERE, "body", "no host key")
    return tuple(keys)
