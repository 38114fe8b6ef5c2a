"""OrderRepository and the orders/payments schema against a real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg import errors
from shop import OrderRepository, UserRepository

pytestmark = pytest.mark.integration


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
    user = UserRepository(db).create("Ada", "ada@example.com")
    orders = OrderRepository(db)

    order = orders.create(user.id, Decimal("12.50"))

    assert orders.orders_for_user(user.id) == [order]


def test_order_total_cannot_be_negative(db: psycopg.Connection) -> None:
    user = UserRepository(db).create("Ada", "ada@example.com")

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
