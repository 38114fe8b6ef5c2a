"""Checkout: price the lines, apply the capped discount, store the order, announce it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg

from shop.errors import UnknownProduct
from shop.events import OrderPlaced, lines_of, publish
from shop.models import Order
from shop.repository import OrderRepository, require_no_transaction
from shop.rules import apply_discount, combined_discount


def place_order(
    conn: psycopg.Connection[Any],
    redis: Any,
    user_id: int,
    items: Sequence[tuple[str, int]],
    *,
    coupons: Iterable[Decimal] = (),
) -> Order:
    """Store an order for ``items`` (SKU, quantity), commit, then publish OrderPlaced.

    Publishing after the commit means a consumer never hears of an order that was rolled
    back; if the process dies in between, the order exists unannounced (an outbox table
    would close that gap; the example keeps it simple). Call with no transaction open.
    """
    require_no_transaction(conn, "place_order()")
    lines = lines_of(items)
    with conn.transaction():
        prices = dict(
            conn.execute(
                "SELECT sku, price FROM products WHERE sku = ANY(%s)",
                ([line.sku for line in lines],),
            ).fetchall()
        )
        missing = {line.sku for line in lines} - prices.keys()
        if missing:
            raise UnknownProduct(missing)
        subtotal = sum((prices[line.sku] * line.quantity for line in lines), Decimal(0))
        total = apply_discount(subtotal, combined_discount(coupons))
        order = OrderRepository(conn).create(user_id, total)
    publish(redis, OrderPlaced(order.id, user_id, order.total, lines))
    return order
