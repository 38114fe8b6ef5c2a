"""The shop's domain errors. Each message says what happened and what to do about it.

::

    ShopError
    ├── DuplicateEmail        a user with this email exists (HTTP 409)
    ├── UnknownOrder          no order with this id (HTTP 404)
    ├── UnknownProduct        an order line names a SKU the shop does not sell
    ├── PaymentInProgress     another payment of the order holds its lock (HTTP 409)
    ├── Overpayment           the payment exceeds what the order still owes (HTTP 422)
    ├── InvalidMessage        a stream message that cannot be read as an event
    └── ConfigError           the configuration file is missing or wrong
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from psycopg import errors

#: Name of the unique constraint on users.email, declared in migrations/0001_create_users.sql.
USERS_EMAIL_CONSTRAINT = "users_email_key"


class ShopError(Exception):
    """Base of every error the shop raises on purpose."""


class DuplicateEmail(ShopError):
    """A user with this email already exists (the ``users_email_key`` constraint said so)."""

    def __init__(self, email: str) -> None:
        super().__init__(f"a user with email {email!r} already exists")
        self.email = email

    @classmethod
    def from_unique_violation(
        cls, error: errors.UniqueViolation, email: str
    ) -> DuplicateEmail | None:
        """The domain error for the driver's ``error``, or None if another unique
        constraint was violated. Raise it ``from error`` to keep the cause."""
        if error.diag.constraint_name != USERS_EMAIL_CONSTRAINT:
            return None
        return cls(email)


class UnknownOrder(ShopError):
    """No order with this id."""

    def __init__(self, order_id: int) -> None:
        super().__init__(f"no order with id {order_id}")
        self.order_id = order_id


class UnknownProduct(ShopError):
    """Order lines name SKUs that are not in the ``products`` table."""

    def __init__(self, skus: Iterable[str]) -> None:
        self.skus = sorted(skus)
        super().__init__("no product with SKU " + ", ".join(map(repr, self.skus)))


class PaymentInProgress(ShopError):
    """Another connection is taking a payment for this order right now."""

    def __init__(self, order_id: int) -> None:
        super().__init__(
            f"order {order_id} already has a payment in progress; retry when it has finished"
        )
        self.order_id = order_id


class Overpayment(ShopError):
    """The amount is more than the order still owes."""

    def __init__(self, order_id: int, amount: Decimal, remaining: Decimal) -> None:
        super().__init__(
            f"a payment of {amount:.2f} exceeds what order {order_id} still owes ({remaining:.2f})"
        )
        self.order_id = order_id
        self.amount = amount
        self.remaining = remaining


class InvalidMessage(ShopError, ValueError):
    """A stream message that is not a well-formed event; ``reason`` says what is wrong."""

    def __init__(self, message_id: str, reason: str) -> None:
        super().__init__(f"message {message_id}: {reason}")
        self.message_id = message_id
        self.reason = reason


class ConfigError(ShopError):
    """The configuration file cannot be used; the message names the file and the key."""

    def __init__(self, path: Path, problem: str, key: str | None = None) -> None:
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.key = key
