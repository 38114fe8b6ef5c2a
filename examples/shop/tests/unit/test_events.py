"""The "order placed" message format (shop/events.py), encoded and decoded without Redis.

Whether a real stream delivers it, to which consumer, and what the worker then does to
the stock is tests/integration/test_order_consumer.py's job.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from shop.errors import InvalidMessage
from shop.events import OrderLine, OrderPlaced

EVENT = OrderPlaced(
    order_id=7, user_id=1, total=Decimal("68.50"), lines=(OrderLine("LAMP-DESK", 1),)
)


def test_round_trip_through_stream_fields() -> None:
    fields = EVENT.to_fields()

    assert fields["type"] == "order_placed"
    assert json.loads(fields["payload"])["total"] == "68.50"  # money as a string: exact
    assert OrderPlaced.from_fields("1-0", fields) == EVENT


def test_bytes_fields_as_redis_returns_them() -> None:
    raw = {key.encode(): value.encode() for key, value in EVENT.to_fields().items()}

    assert OrderPlaced.from_fields("1-0", raw) == EVENT


def _with_payload(**changes: object) -> dict[str, str]:
    fields = EVENT.to_fields()
    payload = json.loads(fields["payload"])
    payload.update(changes)
    return {**fields, "payload": json.dumps(payload)}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": "order_cancelled", "version": "1", "payload": "{}"}, "type is 'order_cancelled'"),
        ({**EVENT.to_fields(), "version": "2"}, "unsupported version '2'"),
        ({"type": "order_placed", "version": "1"}, "missing field 'payload'"),
        ({**EVENT.to_fields(), "payload": "{not json"}, "malformed payload"),
        (_with_payload(total="a lot"), "malformed payload"),
        (_with_payload(lines=[{"sku": "X", "quantity": 0}]), "quantity must be a positive"),
        (_with_payload(lines=[{"sku": "X", "quantity": True}]), "quantity must be a positive"),
        (_with_payload(lines=[{"sku": "X"}]), "missing field 'quantity'"),
        (_with_payload(lines=[]), "at least one line"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(
    fields: dict[str, str], reason: str
) -> None:
    with pytest.raises(InvalidMessage, match=r"^message 9-0: ") as excinfo:
        OrderPlaced.from_fields("9-0", fields)

    assert reason in excinfo.value.reason
