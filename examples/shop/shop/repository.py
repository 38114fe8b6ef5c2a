"""Data access over a psycopg connection.

The repositories never commit or roll back: the caller owns the transaction (the API
commits once per request, a test's ``db`` connection is thrown away with its database).
After :class:`DuplicateEmail` the transaction is aborted, as with any failed statement,
and must be rolled back before the connection can be used again.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from shop.errors import USERS_EMAIL_CONSTRAINT, DuplicateEmail
from shop.models import Order, Product, User
from shop.passwords import hash_password, verify_password

__all__ = [
    "USERS_EMAIL_CONSTRAINT",
    "DuplicateEmail",
    "OrderRepository",
    "ProductRepository",
    "UserRepository",
    "require_no_transaction",
]

_T = TypeVar("_T")


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

    def rename(self, user_id: int, name: str) -> User | None:
        """Change the user's name; the updated user, or None if there is no such user."""
        with self._conn.cursor(row_factory=class_row(User)) as cur:
            cur.execute(
                "UPDATE users SET name = %s WHERE id = %s RETURNING id, name, email, created_at",
                (name, user_id),
            )
            return cur.fetchone()

    def set_password(self, user_id: int, password: str) -> None:
        """Store a salted scrypt hash of ``password`` (never the password itself)."""
        self._conn.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s",
            (hash_password(password), user_id),
        )

    def authenticate(self, email: str, password: str) -> User | None:
        """The user if ``password`` is theirs; None for a wrong password or unknown email."""
        row = self._conn.execute(
            "SELECT id, password_hash FROM users WHERE email = %s", (email,)
        ).fetchone()
        if row is None or row[1] is None or not verify_password(password, row[1]):
            return None
        return self.find_by_id(row[0])


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


class ProductRepository:
    """Products in the ``products`` table: JSONB attributes and full-text search."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def create(
        self,
        sku: str,
        name: str,
        price: Decimal,
        *,
        stock: int = 0,
        attributes: Mapping[str, Any] | None = None,
    ) -> Product:
        """Insert a product and return it."""
        with self._conn.cursor(row_factory=class_row(Product)) as cur:
            cur.execute(
                "INSERT INTO products (sku, name, price, stock, attributes)"
                " VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id, sku, name, price, stock, attributes",
                (sku, name, price, stock, Jsonb(dict(attributes or {}))),
            )
            return _one(cur.fetchone())

    def find_by_sku(self, sku: str) -> Product | None:
        """The product with this SKU, or None."""
        with self._conn.cursor(row_factory=class_row(Product)) as cur:
            cur.execute(
                "SELECT id, sku, name, price, stock, attributes FROM products WHERE sku = %s",
                (sku,),
            )
            return cur.fetchone()

    def with_attributes(self, attributes: Mapping[str, Any]) -> list[Product]:
        """Products whose attributes contain ``attributes`` (JSONB ``@>``), by SKU.

        Containment is structural: ``{"sizes": ["M"]}`` matches ``{"sizes": ["S", "M"]}``
        and ``{"size": {"w": 3}}`` matches ``{"size": {"w": 3, "h": 4}}``. The
        ``products_attributes_idx`` GIN index (jsonb_path_ops) serves it.
        """
        with self._conn.cursor(row_factory=class_row(Product)) as cur:
            cur.execute(
                "SELECT id, sku, name, price, stock, attributes FROM products"
                " WHERE attributes @> %s ORDER BY sku",
                (Jsonb(dict(attributes)),),
            )
            return cur.fetchall()

    def search(self, query: str, *, limit: int = 20) -> list[Product]:
        """Products whose name matches ``query``, best match first.

        ``query`` is web-search syntax (``desk lamp``, ``"desk lamp"``, ``lamp -desk``),
        parsed by websearch_to_tsquery, which never raises on user input. English
        stemming makes "lamps" find "Lamp". The expression matches the generated
        ``search`` column, so the ``products_search_idx`` GIN index serves it.
        """
        with self._conn.cursor(row_factory=class_row(Product)) as cur:
            cur.execute(
                "SELECT id, sku, name, price, stock, attributes FROM products,"
                " websearch_to_tsquery('english', %s) AS query"
                " WHERE search @@ query"
                " ORDER BY ts_rank(search, query) DESC, sku"
                " LIMIT %s",
                (query, limit),
            )
            return cur.fetchall()


def require_no_transaction(conn: psycopg.Connection[Any], caller: str) -> None:
    """Refuse a connection with a transaction open: ``caller`` commits its own work.

    Without this, ``conn.transaction()`` would quietly become a savepoint inside the open
    transaction, and the caller's "commit" would commit nothing.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(
            f"{caller} commits its own transaction, but the connection has one open"
            f" ({conn.info.transaction_status.name}): commit or roll back first"
        )


def _one(row: _T | None) -> _T:
    # INSERT ... RETURNING always yields exactly one row; say so if it ever does not.
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row
