"""Unique values for tests that share a database (the unique strategy, or any other).

Every value carries the run's id and the xdist worker's number, so values from two
workers or two runs against one server never collide, and a counter shared by the whole
process, so two tests of one worker never collide either.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator


class Unique:
    """Mints values no other test of this run gets: ``unique.email()`` and friends."""

    def __init__(self, run_id: str, worker: int, counter: Iterator[int]) -> None:
        self.namespace = f"{run_id}-{worker}"
        self.worker = worker
        self._counter = counter

    def _next(self) -> int:
        return next(self._counter)

    def name(self, prefix: str = "name") -> str:
        """``name-<run>-<worker>-<n>``."""
        return f"{prefix}-{self.namespace}-{self._next()}"

    def email(self, prefix: str = "user", domain: str = "example.test") -> str:
        """``user-<run>-<worker>-<n>@example.test`` (a reserved domain: never delivered)."""
        return f"{prefix}-{self.namespace}-{self._next()}@{domain}"

    def integer(self) -> int:
        """A positive bigint: the worker's own range of 10^12 values, above 10^15."""
        return 10**15 + self.worker * 10**12 + self._next()


def counter() -> Iterator[int]:
    return itertools.count(1)
