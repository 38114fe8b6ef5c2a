"""Password hashing with scrypt from the standard library (``hashlib.scrypt``).

A hash is stored as ``scrypt$N$r$p$salt$digest`` (salt and digest in base64), so the
cost parameters travel with it and can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

#: Cost parameters: N=2**14, r=8 uses 16 MiB and ~40 ms per hash on a CI core, the
#: minimum OWASP's password storage cheat sheet lists for scrypt (N=2^17 is its first choice;
#: lower here to keep the example's tests quick).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
DIGEST_BYTES = 32


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password``, with its parameters, for the database."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (from :func:`hash_password`).

    A malformed ``stored`` value is a wrong password, not a crash: it may come from an
    old scheme or a hand-edited row. The comparison takes constant time.
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:  # wrong field count, bad base64, bad numbers, or scrypt refusing them
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: OpenSSL's default limit (32 MiB) is just above 128*N*r; leave head room.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=DIGEST_BYTES, maxmem=64 * 2**20
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
