"""Fixtures for testing web applications in-process: ``client`` and ``aclient``."""

from __future__ import annotations
