"""A tiny shop: users and their orders in PostgreSQL, served by FastAPI.

It exists to show seamtest at work: every test in ``tests/`` gets its own freshly
migrated database, so the tests can commit, violate constraints and run in parallel.
"""

from __future__ import annotations

from shop.models import Order, User
from shop.repository import DuplicateEmail, OrderRepository, UserRepository

__all__ = ["DuplicateEmail", "Order", "OrderRepository", "User", "UserRepository"]
