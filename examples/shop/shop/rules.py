"""Business rules with no I/O: plain functions, unit-tested without a database.

Money is :class:`~decimal.Decimal` throughout. A discount is rounded *down* to the cent:
rounding it half-up would take 0.11 off a 0.21 order at 50%, more than half.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_DOWN, Decimal

#: No combination of coupons takes more than half off an order (a finance rule: below that,
#: the shop sells at a loss on most products).
MAX_DISCOUNT_PERCENT = Decimal(50)

CENT = Decimal("0.01")


def combined_discount(coupon_percents: Iterable[Decimal]) -> Decimal:
    """The percentage off for these coupons: their sum, capped at ``MAX_DISCOUNT_PERCENT``.

    A negative coupon is a bug upstream, not a surcharge: it raises ValueError.
    """
    total = Decimal(0)
    for percent in coupon_percents:
        if percent < 0:
            raise ValueError(f"a coupon cannot be negative: {percent}%")
        total += percent
    return min(total, MAX_DISCOUNT_PERCENT)


def apply_discount(subtotal: Decimal, percent: Decimal) -> Decimal:
    """``subtotal`` minus ``percent`` (capped at 50) per cent; the discount rounds down."""
    if subtotal < 0:
        raise ValueError(f"a subtotal cannot be negative: {subtotal}")
    if percent < 0:
        raise ValueError(f"a discount cannot be negative: {percent}%")
    percent = min(percent, MAX_DISCOUNT_PERCENT)
    discount = (subtotal * percent / 100).quantize(CENT, rounding=ROUND_DOWN)
    return subtotal.quantize(CENT) - discount
