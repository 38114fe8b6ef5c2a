"""The stock worker consuming "order placed" events from a real Redis stream.

Isolation: ``reset``, with the leak detector set to fail. The worker commits every
message before acknowledging it (an ack before a durable commit could lose an order), so
these tests need real commits; and as a suite they share one database per xdist worker,
which seamtest cleans after each test by deleting only what it dirtied (products,
processed_orders, orders) and restoring the fixture rows and sequences. That costs a few
milliseconds, against ~20 ms for a database of each test's own. ``leaks="error"`` fails
a test that leaves behind anything the reset cannot clean.

Redis is flushed around every test (``redis="flush"``, the default): streams, consumer
groups and pending entries all start empty.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from shop import UnknownProduct
from shop.checkout import place_order
from shop.events import (
    DEAD_LETTERS,
    GROUP,
    STREAM,
    OrderLine,
    OrderPlaced,
    OrderPlacedConsumer,
    publish,
)

from tests.common.builders import make_user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.seamtest(isolation="reset", leaks="error", fixtures=["products"]),
]


def event(order_id: int, *lines: tuple[str, int]) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        user_id=1,
        total=Decimal("10.00"),
        lines=tuple(OrderLine(sku, quantity) for sku, quantity in lines),
    )


def stock(db: psycopg.Connection, sku: str) -> int:
    row = db.execute("SELECT stock FROM products WHERE sku = %s", (sku,)).fetchone()
    db.rollback()  # leave no transaction open: the worker refuses a connection in one
    assert row is not None
    return int(row[0])


def pending(redis: Any) -> int:
    return int(redis.xpending(STREAM, GROUP)["pending"])


def test_an_order_takes_its_stock(db: psycopg.Connection, redis: Any) -> None:
    message_id = publish(redis, event(1001, ("LAMP-DESK", 2), ("TSHIRT-RED", 3)))

    result = OrderPlacedConsumer(redis, db).run_once()

    assert result.processed == [message_id]
    assert stock(db, "LAMP-DESK") == 8
    assert stock(db, "TSHIRT-RED") == 22
    assert pending(redis) == 0  # acknowledged


def test_the_work_is_committed_before_the_ack(
    db: psycopg.Connection, redis: Any, db_url: str
) -> None:
    publish(redis, event(1001, ("LAMP-DESK", 1)))

    OrderPlacedConsumer(redis, db).run_once()

    with psycopg.connect(db_url) as other:  # another connection sees it: committed
        assert other.execute("SELECT stock FROM products WHERE sku = 'LAMP-DESK'").fetchone() == (
            9,
        )
        assert other.execute("SELECT order_id FROM processed_orders").fetchall() == [(1001,)]


def test_a_republished_order_takes_stock_once(db: psycopg.Connection, redis: Any) -> None:
    first = publish(redis, event(1001, ("LAMP-DESK", 2)))
    again = publish(redis, event(1001, ("LAMP-DESK", 2)))  # checkout retried after a timeout

    result = OrderPlacedConsumer(redis, db).run_once()

    assert result.processed == [first]
    assert result.duplicates == [again]
    assert stock(db, "LAMP-DESK") == 8


def test_a_message_left_unacknowledged_by_a_crash_is_processed_on_restart(
    db: psycopg.Connection, redis: Any
) -> None:
    worker = OrderPlacedConsumer(redis, db, name="worker-1")
    worker.ensure_group()
    message_id = publish(redis, event(1001, ("LAMP-DESK", 1)))
    # worker-1's previous life read the message, then died before processing it. Redis
    # keeps it in worker-1's pending entries list; reading ">" would never return it again.
    redis.xreadgroup(GROUP, "worker-1", {STREAM: ">"})
    assert pending(redis) == 1

    result = worker.run_once()

    assert result.processed == [message_id]
    assert stock(db, "LAMP-DESK") == 9
    assert pending(redis) == 0


def test_workers_of_one_group_share_the_messages(
    db: psycopg.Connection, redis: Any, db_url: str
) -> None:
    ids = [publish(redis, event(1001 + n, ("TSHIRT-RED", 1))) for n in range(4)]

    with psycopg.connect(db_url) as other:
        first = OrderPlacedConsumer(redis, db, name="worker-1").run_once(count=2)
        second = OrderPlacedConsumer(redis, other, name="worker-2").run_once(count=2)

    assert first.processed == ids[:2]
    assert second.processed == ids[2:]
    assert stock(db, "TSHIRT-RED") == 21


def test_a_malformed_message_is_dead_lettered_and_does_not_block_the_stream(
    db: psycopg.Connection, redis: Any
) -> None:
    bad = redis.xadd(STREAM, {"type": "order_placed", "version": "1", "payload": "{oops"}).decode()
    good = publish(redis, event(1001, ("LAMP-DESK", 1)))

    result = OrderPlacedConsumer(redis, db).run_once()

    assert result.dead == [bad]
    assert result.processed == [good]
    assert pending(redis) == 0
    [(_, fields)] = redis.xrange(DEAD_LETTERS)
    assert fields[b"source_id"].decode() == bad
    assert fields[b"error"].decode().startswith(f"message {bad}: malformed payload")
    assert fields[b"payload"] == b"{oops"  # the original, for a human to replay


def test_overselling_is_refused_by_the_database_and_nothing_is_taken(
    db: psycopg.Connection, redis: Any
) -> None:
    # MUG-RED has no stock: products_stock_check refuses the UPDATE, and the whole
    # message rolls back, the T-shirt line included.
    message_id = publish(redis, event(1001, ("TSHIRT-RED", 1), ("MUG-RED", 1)))

    result = OrderPlacedConsumer(redis, db).run_once()

    assert result.dead == [message_id]
    assert stock(db, "TSHIRT-RED") == 25
    assert stock(db, "MUG-RED") == 0
    assert b"products_stock_check" in redis.xrange(DEAD_LETTERS)[0][1][b"error"]
    assert db.execute("SELECT count(*) FROM processed_orders").fetchone() == (0,)


def test_an_unknown_sku_is_dead_lettered(db: psycopg.Connection, redis: Any) -> None:
    publish(redis, event(1001, ("LAMP-DESK", 1), ("NO-SUCH-SKU", 1)))

    result = OrderPlacedConsumer(redis, db).run_once()

    assert len(result.dead) == 1
    assert stock(db, "LAMP-DESK") == 10
    assert redis.xrange(DEAD_LETTERS)[0][1][b"error"] == b"no product with SKU 'NO-SUCH-SKU'"


def test_the_worker_refuses_a_connection_with_a_transaction_open(
    db: psycopg.Connection, redis: Any
) -> None:
    db.execute("SELECT 1")  # autocommit is off: this opened a transaction

    with pytest.raises(RuntimeError, match=r"commit or roll back first"):
        OrderPlacedConsumer(redis, db).run_once()


def test_checkout_to_stock_end_to_end(db: psycopg.Connection, redis: Any) -> None:
    user = make_user(db)
    db.commit()

    order = place_order(db, redis, user.id, [("LAMP-DESK", 2)], coupons=[Decimal(30), Decimal(30)])
    result = OrderPlacedConsumer(redis, db).run_once()

    assert order.total == Decimal("49.00")  # 2 x 49.00, and 60% off capped at 50%
    assert len(result.processed) == 1
    [(_, fields)] = redis.xrange(STREAM)
    assert OrderPlaced.from_fields("-", fields).total == Decimal("49.00")
    assert stock(db, "LAMP-DESK") == 8


def test_checkout_of_an_unknown_product_stores_and_publishes_nothing(
    db: psycopg.Connection, redis: Any
) -> None:
    user = make_user(db)
    db.commit()

    with pytest.raises(UnknownProduct):
        place_order(db, redis, user.id, [("NO-SUCH-SKU", 1)])

    assert db.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    assert redis.exists(STREAM) == 0
