"""A tiny shop: users, orders, payments and products in PostgreSQL, served by FastAPI,
with users cached in Redis and "order placed" events on a Redis stream.

It exists to show seamtest at work: ``tests/unit`` tests the business rules with no
infrastructure, ``tests/integration`` tests every seam against real PostgreSQL and Redis.
"""

from __future__ import annotations

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
from shop.models import Order, Payment, Product, User
from shop.repository import OrderRepository, ProductRepository, UserRepository

__all__ = [
    "ConfigError",
    "DuplicateEmail",
    "InvalidMessage",
    "Order",
    "OrderRepository",
    "Overpayment",
    "Payment",
    "PaymentInProgress",
    "Product",
    "ProductRepository",
    "ShopError",
    "UnknownOrder",
    "UnknownProduct",
    "User",
    "UserRepository",
]
