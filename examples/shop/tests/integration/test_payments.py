"""Payments: an advisory lock between two real connections, and a check at COMMIT.

Isolation: ``database`` (the default). Both behaviours need what only a database of the
test's own gives: a second connection (``db_url``) that sees committed rows and contends
for the same lock, and a real COMMIT, at which the deferred constraint trigger of
0005_payments_within_total.sql fires. Under ``transaction`` commit() is a savepoint, the
trigger would never run, and a second connection is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors
from shop import Overpayment, PaymentInProgress, UnknownOrder
from shop.payments import capture_payment, try_lock_order

from tests.common.builders import make_order, make_payment

pytestmark = pytest.mark.integration


@pytest.fixture
def other(db_url: str) -> Iterator[psycopg.Connection]:
    """A second connection to the test's database: another API worker, say.

    With a lock timeout: if a change breaks the locking, a test that waits on a lock
    fails after a few seconds instead of hanging the suite.
    """
    with psycopg.connect(db_url, options="-c lock_timeout=5s") as conn:
        yield conn


def test_second_connection_cannot_pay_while_the_first_holds_the_lock(
    db: psycopg.Connection, other: psycopg.Connection
) -> None:
    order = make_order(db, total=Decimal("30.00"))
    db.commit()

    capture_payment(db, order.id, Decimal("10.00"))  # db holds the lock until it commits

    with pytest.raises(PaymentInProgress) as excinfo:
        capture_payment(other, order.id, Decimal("10.00"))
    assert excinfo.value.order_id == order.id

    db.commit()  # releases the lock
    second = capture_payment(other, order.id, Decimal("10.00"))
    other.commit()

    assert second.status == "captured"
    assert db.execute(
        "SELECT sum(amount) FROM payments WHERE order_id = %s", (order.id,)
    ).fetchone() == (Decimal("20.00"),)


def test_the_lock_is_per_order(db: psycopg.Connection, other: psycopg.Connection) -> None:
    first, second = make_order(db), make_order(db)
    db.commit()

    assert try_lock_order(db, first.id)  # db is paying the first order

    assert capture_payment(other, second.id, Decimal("1.00")).order_id == second.id
    with pytest.raises(PaymentInProgress):
        capture_payment(other, first.id, Decimal("1.00"))


def test_a_rolled_back_payment_releases_the_lock_and_pays_nothing(
    db: psycopg.Connection, other: psycopg.Connection
) -> None:
    order = make_order(db, total=Decimal("5.00"))
    db.commit()
    capture_payment(db, order.id, Decimal("5.00"))

    db.rollback()

    # The whole amount is still owed, and the lock is free to take it.
    assert capture_payment(other, order.id, Decimal("5.00")).amount == Decimal("5.00")


def test_the_second_payment_sees_the_first_one_committed(
    db: psycopg.Connection, other: psycopg.Connection
) -> None:
    order = make_order(db, total=Decimal("30.00"))
    db.commit()
    capture_payment(db, order.id, Decimal("25.00"))
    db.commit()

    with pytest.raises(Overpayment) as excinfo:
        capture_payment(other, order.id, Decimal("10.00"))

    assert excinfo.value.remaining == Decimal("5.00")


def test_paying_an_unknown_order(db: psycopg.Connection) -> None:
    with pytest.raises(UnknownOrder):
        capture_payment(db, 424242, Decimal("1.00"))


def test_overpayment_is_refused_at_commit_even_without_the_lock(db: psycopg.Connection) -> None:
    # Raw rows, as a buggy batch job might write them: every statement succeeds, because
    # the constraint trigger is deferred; COMMIT runs it and refuses the transaction.
    order = make_order(db, total=Decimal("30.00"))
    make_payment(db, order=order, amount=Decimal("20.00"))
    make_payment(db, order=order, amount=Decimal("20.00"))

    with pytest.raises(errors.CheckViolation) as excinfo:
        db.commit()

    assert excinfo.value.diag.constraint_name == "payments_within_order_total"
    assert f"captured payments of order {order.id} (40.00) exceed its total (30.00)" in str(
        excinfo.value
    )
    assert db.execute("SELECT count(*) FROM orders").fetchone() == (0,)  # all rolled back


def test_a_correction_within_one_transaction_is_accepted(db: psycopg.Connection) -> None:
    # Deferred, not immediate: the check sees the transaction's final state, so capturing
    # too much and then refunding part of it in the same transaction is fine.
    order = make_order(db, total=Decimal("30.00"))
    first = make_payment(db, order=order, amount=Decimal("30.00"))
    make_payment(db, order=order, amount=Decimal("30.00"))
    db.execute("UPDATE payments SET status = 'refunded' WHERE id = %s", (first.id,))

    db.commit()

    assert db.execute(
        "SELECT count(*) FROM payments WHERE order_id = %s AND status = 'captured'", (order.id,)
    ).fetchone() == (1,)
