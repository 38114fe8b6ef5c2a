"""Isolation strategies: the replaceable piece that hands a test its database.

A strategy turns a :class:`DatabaseRequest` into a :class:`TestDatabase` and takes it back
when the test is over, told whether the test failed. The pytest fixtures only ever talk to
this interface, so other strategies (transaction rollback, reset, unique data) and a warm
pool of clones plug in here without the fixtures changing.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ._migrations import FixtureFiles
from ._names import database_name, label_for_test
from ._provision import Provisioner, Template, TestDatabase


@dataclass(frozen=True)
class DatabaseRequest:
    """What a test asked for: who it is, which fixture files, which strategy."""

    nodeid: str
    fixtures: Sequence[Path] = ()
    isolation: str = "database"


@dataclass
class Outcome:
    """What happened to a database when its test ended."""

    kept_url: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Isolation(abc.ABC):
    """How a test gets its database and what happens to it afterwards."""

    name: str

    @abc.abstractmethod
    def acquire(self, request: DatabaseRequest) -> TestDatabase:
        """Return a database in the template's state plus the request's fixtures."""

    @abc.abstractmethod
    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        """Take the database back; keep it for inspection if the test failed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release whatever the strategy holds for the whole session."""


class DatabasePerTest(Isolation):
    """A fresh clone of the template for every test: complete isolation.

    Commits, multiple connections, ``now()`` and deferred constraints all behave as in
    production, because nothing is wrapped: the test owns a real database. Drops happen in
    a background thread, off the test's critical path.
    """

    name = "database"

    def __init__(
        self, provisioner: Provisioner, template: Callable[[], Template], *, keep_failed: bool
    ) -> None:
        self.provisioner = provisioner
        self.template = template
        self.keep_failed = keep_failed

    def acquire(self, request: DatabaseRequest) -> TestDatabase:
        template = self.template()
        name = database_name(
            self.provisioner.prefix, "t", label_for_test(request.nodeid), unique=request.nodeid
        )
        database = self.provisioner.create(name, template.name, test=request.nodeid)
        if request.fixtures:
            try:
                with psycopg.connect(database.conninfo) as conn:
                    FixtureFiles.apply(conn, request.fixtures)
            except BaseException:
                self.provisioner.drop_later(name, request.nodeid)
                raise
        return database

    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        started = time.perf_counter()
        if failed and self.keep_failed:
            self.provisioner.keep(database.name, test=request.nodeid)
            return Outcome(kept_url=database.url, seconds=time.perf_counter() - started)
        self.provisioner.drop_later(database.name, request.nodeid)
        return Outcome(seconds=time.perf_counter() - started)
