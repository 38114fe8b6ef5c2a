"""Domain records, one per table row. Plain dataclasses: psycopg builds them with
``class_row`` and FastAPI serialises them as response models."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class User:
    """A customer; ``email`` is unique across all users."""

    id: int
    name: str
    email: str
    created_at: datetime


@dataclass(frozen=True)
class Order:
    """An order placed by a user. ``total`` is exact money (numeric(10,2))."""

    id: int
    user_id: int
    total: Decimal
    created_at: datetime


@dataclass(frozen=True)
class Payment:
    """A payment attempt for an order; ``status`` is one of payments_status_check's values."""

    id: int
    order_id: int
    amount: Decimal
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Product:
    """Something the shop sells. ``attributes`` is free-form JSONB (colour, sizes, watts)."""

    id: int
    sku: str
    name: str
    price: Decimal
    stock: int
    attributes: dict[str, Any] = field(default_factory=dict)
