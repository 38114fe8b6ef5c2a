"""The "order placed" event on a Redis stream, and the worker that consumes it.

Checkout publishes :class:`OrderPlaced` to ``STREAM`` after the order is committed. The
stock worker (:class:`OrderPlacedConsumer`, in consumer group ``stock``) takes the ordered
quantities off ``products.stock``. Delivery is at least once: a worker that dies after
committing but before XACK gets the message again, and checkout may publish twice after a
timeout, so the worker records each order in ``processed_orders`` in the same transaction
as the stock change, and skips orders already there.

A message that cannot be processed (not an event, an unknown SKU, stock that would go
below zero) goes to ``DEAD_LETTERS`` with the reason and is acknowledged, so one bad
message never blocks the stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from psycopg import errors

from shop.errors import InvalidMessage, UnknownProduct
from shop.repository import require_no_transaction

STREAM = "shop:orders:placed"
DEAD_LETTERS = "shop:orders:placed:dead"
GROUP = "stock"
EVENT_TYPE = "order_placed"
#: Bumped on an incompatible payload change; a worker refuses versions it does not know.
VERSION = "1"


@dataclass(frozen=True)
class OrderLine:
    """``quantity`` units of the product ``sku``."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class OrderPlaced:
    """An order was committed: what was bought, by whom, for how much."""

    order_id: int
    user_id: int
    total: Decimal
    lines: tuple[OrderLine, ...]

    def to_fields(self) -> dict[str, str]:
        """The stream entry: a type, a version and a JSON payload (money as a string)."""
        payload = {
            "order_id": self.order_id,
            "user_id": self.user_id,
            "total": str(self.total),
            "lines": [{"sku": line.sku, "quantity": line.quantity} for line in self.lines],
        }
        return {"type": EVENT_TYPE, "version": VERSION, "payload": json.dumps(payload)}

    @classmethod
    def from_fields(cls, message_id: str, fields: Mapping[Any, Any]) -> OrderPlaced:
        """Read an entry written by :meth:`to_fields`; :class:`InvalidMessage` says why not.

        Fields may be bytes (a client without ``decode_responses``) or str.
        """
        text = {_text(key): _text(value) for key, value in fields.items()}
        if text.get("type") != EVENT_TYPE:
            raise InvalidMessage(message_id, f"type is {text.get('type')!r}, not {EVENT_TYPE!r}")
        if text.get("version") != VERSION:
            raise InvalidMessage(message_id, f"unsupported version {text.get('version')!r}")
        try:
            payload = json.loads(text["payload"])
            lines = tuple(
                OrderLine(sku=str(line["sku"]), quantity=_positive(line["quantity"]))
                for line in payload["lines"]
            )
            event = cls(
                order_id=int(payload["order_id"]),
                user_id=int(payload["user_id"]),
                total=Decimal(payload["total"]),
                lines=lines,
            )
        except KeyError as exc:
            raise InvalidMessage(message_id, f"missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError, InvalidOperation) as exc:
            raise InvalidMessage(message_id, f"malformed payload: {exc}") from exc
        if not event.lines:
            raise InvalidMessage(message_id, "an order needs at least one line")
        return event


def publish(redis: Any, event: OrderPlaced, *, stream: str = STREAM) -> str:
    """Append the event to the stream; its message id."""
    return _text(redis.xadd(stream, event.to_fields()))


@dataclass
class ConsumeResult:
    """What one :meth:`OrderPlacedConsumer.run_once` did, by message id."""

    processed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)


class OrderPlacedConsumer:
    """A member of the ``stock`` consumer group, applying order events to ``products.stock``.

    It owns its connection's transactions: pass it a connection with none open.
    """

    def __init__(
        self,
        redis: Any,
        conn: psycopg.Connection[Any],
        *,
        name: str = "worker-1",
        group: str = GROUP,
        stream: str = STREAM,
        dead_letters: str = DEAD_LETTERS,
    ) -> None:
        self._redis = redis
        self._conn = conn
        self.name = name
        self.group = group
        self.stream = stream
        self.dead_letters = dead_letters

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if they do not exist yet."""
        try:
            self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except Exception as exc:  # redis.ResponseError; redis-py is the caller's import
            if "BUSYGROUP" not in str(exc):
                raise

    def run_once(self, *, count: int = 100, block_ms: int | None = None) -> ConsumeResult:
        """Process this worker's unacknowledged messages (left by a crash), then new ones."""
        require_no_transaction(self._conn, "OrderPlacedConsumer.run_once()")
        self.ensure_group()
        result = ConsumeResult()
        for start in ("0", ">"):  # "0": our pending entries list; ">": never delivered
            replies = self._redis.xreadgroup(
                self.group, self.name, {self.stream: start}, count=count, block=block_ms
            )
            for _stream, messages in replies or []:
                for raw_id, fields in messages:
                    if fields:  # a pending entry whose message was trimmed away has none
                        self._handle(_text(raw_id), fields, result)
        return result

    def _handle(self, message_id: str, fields: Mapping[Any, Any], result: ConsumeResult) -> None:
        try:
            event = OrderPlaced.from_fields(message_id, fields)
            with self._conn.transaction():
                if self._apply(message_id, event):
                    result.processed.append(message_id)
                else:
                    result.duplicates.append(message_id)
        except (InvalidMessage, UnknownProduct, errors.CheckViolation) as exc:
            self._redis.xadd(
                self.dead_letters, {**_as_text(fields), "error": str(exc), "source_id": message_id}
            )
            result.dead.append(message_id)
        # After the commit: if we die before this line, the message comes back and
        # processed_orders turns the second delivery into a duplicate.
        self._redis.xack(self.stream, self.group, message_id)

    def _apply(self, message_id: str, event: OrderPlaced) -> bool:
        """Take the stock; False if this order was already processed."""
        inserted = self._conn.execute(
            "INSERT INTO processed_orders (order_id, message_id) VALUES (%s, %s)"
            " ON CONFLICT (order_id) DO NOTHING",
            (event.order_id, message_id),
        ).rowcount
        if inserted == 0:
            return False
        missing = set()
        for line in event.lines:
            updated = self._conn.execute(
                "UPDATE products SET stock = stock - %s WHERE sku = %s",
                (line.quantity, line.sku),
            ).rowcount
            if updated == 0:
                missing.add(line.sku)
        if missing:
            raise UnknownProduct(missing)  # rolls the whole message back
        return True


def lines_of(items: Sequence[tuple[str, int]]) -> tuple[OrderLine, ...]:
    """``[("LAMP-1", 2)]`` as order lines."""
    return tuple(OrderLine(sku, quantity) for sku, quantity in items)


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"quantity must be a positive integer, not {value!r}")
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_text(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(key): _text(value) for key, value in fields.items()}
