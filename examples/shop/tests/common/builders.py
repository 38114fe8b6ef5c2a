"""Builders: one call puts a valid row in the database, with every field defaulted.

A test names only what it is about (``make_order(db, total=Decimal("0"))``) and leaves the
rest to the builder, so a new NOT NULL column means one change here, not in fifty tests.

Defaults that must be unique (emails, SKUs) are random, so the builders are safe in a
database shared by other tests and other xdist workers (``isolation="unique"``). A test
that looks rows up by such a value passes its own, from seamtest's ``unique`` fixture.
The builders never commit: the test decides, as its isolation strategy requires.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row
from shop import Order, OrderRepository, Payment, Product, ProductRepository, User, UserRepository


def _token() -> str:
    return uuid.uuid4().hex[:12]


def make_user(
    db: psycopg.Connection[Any], *, name: str = "Ada Lovelace", email: str | None = None
) -> User:
    """A user; ``email`` defaults to a fresh ``user-<random>@example.test``."""
    return UserRepository(db).create(name, email or f"user-{_token()}@example.test")


def make_order(
    db: psycopg.Connection[Any], *, user: User | None = None, total: Decimal = Decimal("42.00")
) -> Order:
    """An order of ``total``; for a new user unless ``user`` is given."""
    owner = user or make_user(db)
    return OrderRepository(db).create(owner.id, total)


def make_payment(
    db: psycopg.Connection[Any],
    *,
    order: Order | None = None,
    amount: Decimal | None = None,
    status: str = "captured",
) -> Payment:
    """A payment row (no lock, no checks: use shop.payments to test those) of the whole
    order's total unless ``amount`` is given; for a new order unless ``order`` is given."""
    paid = order or make_order(db)
    with db.cursor(row_factory=class_row(Payment)) as cur:
        cur.execute(
            "INSERT INTO payments (order_id, amount, status) VALUES (%s, %s, %s)"
            " RETURNING id, order_id, amount, status, created_at",
            (paid.id, paid.total if amount is None else amount, status),
        )
        payment = cur.fetchone()
    assert payment is not None
    return payment


def make_product(
    db: psycopg.Connection[Any],
    *,
    name: str = "Plain Product",
    sku: str | None = None,
    price: Decimal = Decimal("10.00"),
    stock: int = 10,
    attributes: Mapping[str, Any] | None = None,
) -> Product:
    """A product; ``sku`` defaults to a fresh ``SKU-<random>``."""
    return ProductRepository(db).create(
        sku or f"SKU-{_token()}", name, price, stock=stock, attributes=attributes
    )
