"""Domain records, one per table row. Plain dataclasses: psycopg builds them with
``class_row`` and FastAPI serialises them as response models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


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
