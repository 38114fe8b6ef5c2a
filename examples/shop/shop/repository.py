"""Data access over a psycopg connection.

The repositories never commit or roll back: the caller owns the transaction (the API
commits once per request, a test's ``db`` connection is thrown away with its database).
After :class:`DuplicateEmail` the transaction is aborted, as with any failed statement,
and must be rolled back before the connection can be used again.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.rows import class_row

from shop.models import Order, User

#: Name of the unique constraint on users.email, declared in migrations/0001_create_users.sql.
USERS_EMAIL_CONSTRAINT = "users_email_key"

_T = TypeVar("_T")


class DuplicateEmail(Exception):
    """A user with this email already exists (the ``users_email_key`` constraint said so)."""

    def __init__(self, email: str) -> None:
        super().__init__(f"a user with email {email!r} already exists")
        self.email = email

    @classmethod
    def from_unique_violation(
        cls, error: errors.UniqueViolation, email: str
    ) -> DuplicateEmail | None:
        """The domain error for the driver's ``error``, or None if another unique
        constraint was violated. Raise it ``from error`` to keep the cause."""
        if error.diag.constraint_name != USERS_EMAIL_CONSTRAINT:
            return None
        return cls(email)


class UserRepository:
    """Users stored in the ``users`` table."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def create(self, name: str, email: str) -> User:
        """Insert a user and return it with its generated id and timestamp.

        Raises :class:`DuplicateEmail` if the email is taken.
        """
        try:
            with self._conn.cursor(row_factory=class_row(User)) as cur:
                cur.execute(
                    "INSERT INTO users (name, email) VALUES (%s, %s)"
                    " RETURNING id, name, email, created_at",
                    (name, email),
                )
                return _one(cur.fetchone())
        except errors.UniqueViolation as exc:
            duplicate = DuplicateEmail.from_unique_violation(exc, email)
            if duplicate is None:
                raise
            raise duplicate from exc

    def find_by_id(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        with self._conn.cursor(row_factory=class_row(User)) as cur:
            cur.execute("SELECT id, name, email, created_at FROM users WHERE id = %s", (user_id,))
            return cur.fetchone()

    def find_by_email(self, email: str) -> User | None:
        """The user with this exact email, or None."""
        with self._conn.cursor(row_factory=class_row(User)) as cur:
            cur.execute("SELECT id, name, email, created_at FROM users WHERE email = %s", (email,))
            return cur.fetchone()


class OrderRepository:
    """Orders stored in the ``orders`` table."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def create(self, user_id: int, total: Decimal) -> Order:
        """Insert an order for an existing user and return it."""
        with self._conn.cursor(row_factory=class_row(Order)) as cur:
            cur.execute(
                "INSERT INTO orders (user_id, total) VALUES (%s, %s)"
                " RETURNING id, user_id, total, created_at",
                (user_id, total),
            )
            return _one(cur.fetchone())

    def orders_for_user(self, user_id: int) -> list[Order]:
        """The user's orders, oldest first; ``id`` breaks ties between equal timestamps."""
        with self._conn.cursor(row_factory=class_row(Order)) as cur:
            cur.execute(
                "SELECT id, user_id, total, created_at FROM orders"
                " WHERE user_id = %s ORDER BY created_at, id",
                (user_id,),
            )
            return cur.fetchall()


def _one(row: _T | None) -> _T:
    # INSERT ... RETURNING always yields exactly one row; say so if it ever does not.
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row
