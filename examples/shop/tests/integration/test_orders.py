"""OrderRepository and the orders/payments schema against a real PostgreSQL.

Isolation: ``transaction``. Queries and constraints are checked inside one transaction
on one connection, so rolling it back is all the cleaning needed, and the cheapest. The
SQL fixture files are loaded inside that transaction too, and rolled back with it.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg import errors
from shop import OrderRepository

from tests.common.builders import make_order, make_payment, make_user

pytestmark = [pytest.mark.integration, pytest.mark.seamtest(isolation="transaction")]


@pytest.mark.seamtest(fixtures=["users", "orders"])
def test_orders_for_user_are_ordered_by_creation(db: psycopg.Connection) -> None:
    orders = OrderRepository(db).orders_for_user(1)

    assert len(orders) == 3
    assert orders[0].total == Decimal("29.99")
    assert [o.created_at for o in orders] == sorted(o.created_at for o in orders)
    assert {o.user_id for o in orders} == {1}


@pytest.mark.seamtest(fixtures=["users", "orders"])
def test_user_without_orders_has_an_empty_list(db: psycopg.Connection) -> None:
    assert OrderRepository(db).orders_for_user(2) == []


def test_created_order_is_listed(db: psycopg.Connection) -> None:
    user = make_user(db)
    orders = OrderRepository(db)

    order = orders.create(user.id, Decimal("12.50"))

    assert orders.orders_for_user(user.id) == [order]


def test_order_total_cannot_be_negative(db: psycopg.Connection) -> None:
    user = make_user(db)

    with pytest.raises(errors.CheckViolation) as excinfo:
        OrderRepository(db).create(user.id, Decimal("-0.01"))

    assert excinfo.value.diag.constraint_name == "orders_total_check"


def test_order_needs_an_existing_user(db: psycopg.Connection) -> None:
    with pytest.raises(errors.ForeignKeyViolation):
        OrderRepository(db).create(424242, Decimal("1.00"))


@pytest.mark.seamtest(fixtures=["users", "orders"])
def test_payment_status_is_constrained(db: psycopg.Connection) -> None:
    insert = "INSERT INTO payments (order_id, amount, status) VALUES (%s, %s, %s)"
    db.execute(insert, (1, Decimal("49.50"), "authorized"))

    with pytest.raises(errors.CheckViolation) as excinfo:
        db.execute(insert, (1, Decimal("49.50"), "paid-ish"))

    assert excinfo.value.diag.constraint_name == "payments_status_check"


def test_orders_of_one_user_only(db: psycopg.Connection) -> None:
    ada, grace = make_user(db), make_user(db)
    adas = make_order(db, user=ada)
    make_order(db, user=grace)

    assert OrderRepository(db).orders_for_user(ada.id) == [adas]


def test_payment_amount_must_be_positive(db: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation) as excinfo:
        make_payment(db, amount=Decimal("0.00"))

    assert excinfo.value.diag.constraint_name == "payments_amount_check"


def test_payments_go_with_their_order(db: psycopg.Connection) -> None:
    # ON DELETE CASCADE (0003_create_payments.sql): deleting an order deletes its payments.
    payment = make_payment(db)

    db.execute("DELETE FROM orders WHERE id = %s", (payment.order_id,))

    assert db.execute("SELECT count(*) FROM payments WHERE id = %s", (payment.id,)).fetchone() == (
        0,
    )
