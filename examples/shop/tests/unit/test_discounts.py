"""The discount rules (shop/rules.py): pure arithmetic, so plain unit tests, no database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from shop.rules import MAX_DISCOUNT_PERCENT, apply_discount, combined_discount


@pytest.mark.parametrize(
    ("subtotal", "percent", "expected"),
    [
        (Decimal("100.00"), Decimal(0), Decimal("100.00")),
        (Decimal("100.00"), Decimal(10), Decimal("90.00")),
        (Decimal("100.00"), Decimal(50), Decimal("50.00")),
        (Decimal("19.99"), Decimal(15), Decimal("17.00")),  # 2.9985 off rounds down to 2.99
        (Decimal("0.01"), Decimal(50), Decimal("0.01")),  # half a cent off is no cent off
        (Decimal("0.00"), Decimal(30), Decimal("0.00")),
    ],
)
def test_apply_discount(subtotal: Decimal, percent: Decimal, expected: Decimal) -> None:
    assert apply_discount(subtotal, percent) == expected


@pytest.mark.parametrize("percent", [Decimal(51), Decimal(80), Decimal(100), Decimal(1000)])
def test_a_discount_above_50_percent_is_capped(percent: Decimal) -> None:
    assert apply_discount(Decimal("80.00"), percent) == Decimal("40.00")


def test_a_discount_never_exceeds_half_of_the_subtotal() -> None:
    # A grid rather than one example: cheap here, and it covers the rounding edges. It
    # caught rounding the discount half-up: 0.21 at 50% took 0.11 off, more than half.
    for cents in range(0, 2001):
        subtotal = Decimal(cents) / 100
        for percent in (1, 15, 33, 49, 50, 51, 99, 100, 250):
            total = apply_discount(subtotal, Decimal(percent))
            assert subtotal - total <= subtotal / 2, (subtotal, percent, total)
            assert total == total.quantize(Decimal("0.01"))


def test_coupons_add_up_to_the_cap() -> None:
    assert combined_discount([]) == 0
    assert combined_discount([Decimal(10), Decimal(15)]) == Decimal(25)
    assert combined_discount([Decimal(30), Decimal(30)]) == MAX_DISCOUNT_PERCENT


def test_negative_values_are_bugs_not_surcharges() -> None:
    with pytest.raises(ValueError, match=r"coupon cannot be negative: -5%"):
        combined_discount([Decimal(10), Decimal(-5)])
    with pytest.raises(ValueError, match=r"discount cannot be negative"):
        apply_discount(Decimal(10), Decimal(-1))
    with pytest.raises(ValueError, match=r"subtotal cannot be negative: -1"):
        apply_discount(Decimal(-1), Decimal(10))
