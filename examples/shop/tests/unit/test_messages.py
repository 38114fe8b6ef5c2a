"""Error messages (shop/errors.py) say what happened and what to do: checked word for word."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from shop.errors import (
    ConfigError,
    DuplicateEmail,
    InvalidMessage,
    Overpayment,
    PaymentInProgress,
    ShopError,
    UnknownOrder,
    UnknownProduct,
)


def test_duplicate_email() -> None:
    error = DuplicateEmail("ada@example.com")

    assert str(error) == "a user with email 'ada@example.com' already exists"
    assert error.email == "ada@example.com"


def test_payment_in_progress_says_to_retry() -> None:
    assert str(PaymentInProgress(7)) == (
        "order 7 already has a payment in progress; retry when it has finished"
    )


def test_overpayment_shows_money_with_two_decimals() -> None:
    error = Overpayment(7, Decimal("60"), Decimal("49.5"))

    assert str(error) == "a payment of 60.00 exceeds what order 7 still owes (49.50)"
    assert error.remaining == Decimal("49.5")


def test_unknown_product_lists_skus_sorted() -> None:
    assert str(UnknownProduct({"B-2", "A-1"})) == "no product with SKU 'A-1', 'B-2'"


def test_unknown_order() -> None:
    assert str(UnknownOrder(424242)) == "no order with id 424242"


def test_invalid_message_names_the_message() -> None:
    error = InvalidMessage("1700000000000-0", "missing field 'lines'")

    assert str(error) == "message 1700000000000-0: missing field 'lines'"
    assert isinstance(error, ValueError)


def test_config_error_names_file_and_key() -> None:
    path = Path("/etc/shop/shop.toml")

    assert str(ConfigError(path, "missing; add url = ... under [redis]", "redis.url")) == (
        "/etc/shop/shop.toml: redis.url: missing; add url = ... under [redis]"
    )
    assert str(ConfigError(path, "no such file")) == "/etc/shop/shop.toml: no such file"


def test_every_domain_error_is_a_shop_error() -> None:
    errors = [
        DuplicateEmail("a@b"),
        UnknownOrder(1),
        UnknownProduct(["X"]),
        PaymentInProgress(1),
        Overpayment(1, Decimal(2), Decimal(1)),
        InvalidMessage("0-1", "why"),
        ConfigError(Path("x.toml"), "why"),
    ]

    assert all(isinstance(error, ShopError) for error in errors)
