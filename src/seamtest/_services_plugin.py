"""Fixtures and hooks for services beyond PostgreSQL (work in progress)."""

from __future__ import annotations
