"""Taking payments: one at a time per order, guarded by a PostgreSQL advisory lock.

Why an advisory lock and not ``SELECT ... FOR UPDATE`` on the order: the lock says "a
payment of order N is being taken" without locking the order row itself, which the API
keeps reading and the fulfilment worker keeps updating; and ``pg_try_advisory_xact_lock``
answers at once, so a second attempt gets a 409 to retry instead of queueing behind a
slow card authorisation. The lock is released when the caller's transaction ends.

The database backs this up at commit time: the deferred constraint trigger of
migrations/0005_payments_within_total.sql refuses captured payments above the order's total.
On its own that check is racy (two transactions each see only their own new payment under
READ COMMITTED); the lock is what serialises them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from shop.errors import Overpayment, PaymentInProgress, UnknownOrder
from shop.models import Payment

__all__ = ["capture_payment", "try_lock_order"]


def try_lock_order(conn: psycopg.Connection[Any], order_id: int) -> bool:
    """Take the order's payment lock for the current transaction; False if another holds it.

    The key is the order id on its own: in the shop's database, advisory locks are used
    for payments only. (Advisory locks are per database, so other databases on the same
    server, every test's own included, never contend for them.)
    """
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (order_id,)).fetchone()
    return bool(row and row[0])


def capture_payment(conn: psycopg.Connection[Any], order_id: int, amount: Decimal) -> Payment:
    """Record a captured payment of ``amount`` for the order, in the caller's transaction.

    Raises :class:`PaymentInProgress` if another transaction is taking a payment for this
    order, :class:`UnknownOrder` and :class:`Overpayment` as their names say. Commit to
    keep the payment and release the lock; roll back to release it without paying.
    """
    if not try_lock_order(conn, order_id):
        raise PaymentInProgress(order_id)
    row = conn.execute(
        "SELECT o.total, coalesce(sum(p.amount), 0) FROM orders o"
        " LEFT JOIN payments p ON p.order_id = o.id AND p.status = 'captured'"
        " WHERE o.id = %s GROUP BY o.total",
        (order_id,),
    ).fetchone()
    if row is None:
        raise UnknownOrder(order_id)
    total, captured = row
    remaining: Decimal = total - captured
    if amount > remaining:
        raise Overpayment(order_id, amount, remaining)
    with conn.cursor(row_factory=class_row(Payment)) as cur:
        cur.execute(
            "INSERT INTO payments (order_id, amount, status) VALUES (%s, %s, 'captured')"
            " RETURNING id, order_id, amount, status, created_at",
            (order_id, amount),
        )
        payment = cur.fetchone()
    assert payment is not None  # INSERT ... RETURNING yields one row
    return payment
