"""SHA-512 crypt (``$6$``), the password hash anaconda's ``rootpw --iscrypted`` takes.

Implemented from Ulrich Drepper's specification "Unix crypt using SHA-256 and
SHA-512" (https://www.akkadia.org/drepper/SHA-crypt.txt; the algorithm of glibc's
``crypt(3)`` and ``openssl passwd -6``) with :mod:`hashlib` only: Python's ``crypt``
module is deprecated and gone in 3.13, and passlib is unmaintained. The tests check the
specification's own vectors and OpenSSL's answers.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from metalctl.credentials import Secret

__all__ = ["ROUNDS", "is_sha512_crypt", "sha512_crypt", "verify"]

ROUNDS_DEFAULT = 5000  # the specification's default: no "rounds=" field is written
ROUNDS_MIN = 1000
ROUNDS_MAX = 999_999_999
# Enough to slow offline guessing of a hash that travels in a kickstart, few enough that
# hashing once per provision run stays well under a second in pure Python.
ROUNDS = 100_000
SALT_MAX = 16

_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HASH = re.compile(r"^\$6\$(rounds=(\d+)\$)?([./0-9A-Za-z]{1,16})\$([./0-9A-Za-z]{86})$")

# The byte permutation of the final encoding (groups of three digest bytes).
_ORDER = ((0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
          (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
          (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16),
          (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41))


def _b64(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_B64[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeat(digest: bytes, length: int) -> bytes:
    return digest * (length // 64) + digest[: length % 64]


def _digest(key: bytes, salt: bytes, rounds: int) -> bytes:
    b = hashlib.sha512(key + salt + key).digest()
    a = hashlib.sha512(key + salt)
    a.update(_repeat(b, len(key)))
    n = len(key)
    while n:
        a.update(b if n & 1 else key)
        n >>= 1
    da = a.digest()
    p = _repeat(hashlib.sha512(key * len(key)).digest(), len(key))
    s = _repeat(hashlib.sha512(salt * (16 + da[0])).digest(), len(salt))
    c = da
    for i in range(rounds):
        h = hashlib.sha512(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    return c


def sha512_crypt(password: Secret | str, salt: str | None = None,
                 rounds: int = ROUNDS) -> str:
    """Hash ``password`` as ``$6$[rounds=N$]salt$hash``.

    Args:
        password: the clear password (a :class:`Secret` is revealed here only).
        salt: up to 16 characters of ``[./0-9A-Za-z]``; random when omitted.
        rounds: 1,000 to 999,999,999; the default 5,000 is not written out.

    Raises:
        ValueError: a salt with other characters or a rounds count out of range.
    """
    clear = password.reveal() if isinstance(password, Secret) else password
    if salt is None:
        salt = "".join(secrets.choice(_B64) for _ in range(SALT_MAX))
    salt = salt[:SALT_MAX]
    if not salt or any(ch not in _B64 for ch in salt):
        raise ValueError("salt must be 1-16 characters of [./0-9A-Za-z]")
    if not ROUNDS_MIN <= rounds <= ROUNDS_MAX:
        raise ValueError(f"rounds must be {ROUNDS_MIN}-{ROUNDS_MAX}")
    d = _digest(clear.encode("utf-8"), salt.encode("ascii"), rounds)
    encoded = "".join(_b64(d[i], d[j], d[k], 4) for i, j, k in _ORDER) + _b64(0, 0, d[63], 2)
    prefix = "$6$" if rounds == ROUNDS_DEFAULT else f"$6$rounds={rounds}$"
    return f"{prefix}{salt}${encoded}"


def is_sha512_crypt(text: str) -> bool:
    """Whether ``text`` is shaped like a SHA-512 crypt hash (no weaker ``$1$``/``$5$``)."""
    m = _HASH.match(text)
    return bool(m) and (m.group(2) is None or ROUNDS_MIN <= int(m.group(2)) <= ROUNDS_MAX)


def verify(password: Secret | str, hashed: str) -> bool:
    """Whether ``password`` hashes to ``hashed`` (constant-time comparison)."""
    m = _HASH.match(hashed)
    if not m:
        return False
    rounds = int(m.group(2)) if m.group(2) else ROUNDS_DEFAULT
    return secrets.compare_digest(sha512_crypt(password, m.group(3), rounds), hashed)
