"""Password hashing (shop/passwords.py): the standard library's scrypt, no database."""

from __future__ import annotations

import pytest
from shop.passwords import SCRYPT_N, hash_password, verify_password


def test_a_hash_verifies_its_own_password_only() -> None:
    stored = hash_password("correct horse battery staple")

    assert verify_password("correct horse battery staple", stored)
    assert not verify_password("correct horse battery stapler", stored)
    assert not verify_password("", stored)


def test_the_hash_never_contains_the_password_and_carries_its_parameters() -> None:
    stored = hash_password("hunter2")

    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, 8, 1)
    assert "hunter2" not in stored
    assert len(salt) == 24  # 16 bytes in base64
    assert len(digest) == 44  # 32 bytes


def test_the_same_password_hashes_differently_each_time() -> None:
    # A random salt per hash: equal passwords do not show up as equal hashes in a leak.
    assert hash_password("hunter2") != hash_password("hunter2")


def test_a_fixed_salt_gives_a_reproducible_hash() -> None:
    salt = bytes(range(16))

    assert hash_password("hunter2", salt=salt) == hash_password("hunter2", salt=salt)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "bcrypt$12$abc",
        "scrypt$16384$8$1$not-base64!$AAAA",
        "scrypt$sixteen$8$1$AAAA$AAAA",
        "scrypt$3$8$1$AAAA$AAAA",  # N must be a power of two: scrypt itself refuses it
    ],
)
def test_a_malformed_hash_is_a_wrong_password_not_a_crash(stored: str) -> None:
    assert verify_password("hunter2", stored) is False
