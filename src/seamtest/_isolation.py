"""Isolation strategies: the replaceable piece that hands a test its database.

A strategy turns a :class:`DatabaseRequest` into a :class:`TestDatabase`, hands out
connections to it, and takes it back when the test is over, told whether the test
failed. The pytest fixtures only ever talk to this interface, so every strategy (and a
warm pool of clones) plugs in here without the fixtures changing.

=============  ==========================================  ===============================
strategy       what the test gets                           cleaned by
=============  ==========================================  ===============================
database       a fresh clone of the template               dropping it (in the background)
transaction    a transaction on a per-worker database      ROLLBACK (commits -> savepoints)
reset          a per-worker database, real commits         deleting what the test dirtied
unique         one database for the whole run              nothing per test: unique values
=============  ==========================================  ===============================
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from ._connections import PooledConnection
from ._migrations import FixtureFiles, MigrationSource
from ._names import database_name, digest, label_for_test
from ._pool import ClonePool, RecycleLayer
from ._provision import Provisioner, Template, TestDatabase


@dataclass(frozen=True)
class DatabaseRequest:
    """What a test asked for: who it is, which fixture files, which strategy."""

    nodeid: str
    fixtures: Sequence[Path] = ()
    isolation: str = "database"
    leaks: str = "off"  # off, warn or error


@dataclass
class Outcome:
    """What happened to a database when its test ended."""

    kept_url: str | None = None
    seconds: float = 0.0
    leaks: list[str] = field(default_factory=list)


def connect_async(conninfo: str) -> psycopg.AsyncConnection[Any]:
    """An AsyncConnection opened with libpq's blocking connect, usable from any loop.

    Fixtures are synchronous so that they work under pytest-asyncio and anyio alike;
    psycopg looks up the running loop on every wait, so the connection binds to whichever
    loop the test runs in.
    """
    pgconn = pq.PGconn.connect(conninfo.encode())
    if pgconn.status != pq.ConnStatus.OK:
        message = pgconn.get_error_message()
        pgconn.finish()
        raise psycopg.OperationalError(f"connection failed: {message}")
    return psycopg.AsyncConnection(pgconn)


class Isolation(abc.ABC):
    """How a test gets its database and what happens to it afterwards."""

    name: str

    @abc.abstractmethod
    def acquire(self, request: DatabaseRequest) -> TestDatabase:
        """Return a database in the template's state plus the request's fixtures."""

    @abc.abstractmethod
    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        """Take the database back; keep it for inspection if the test failed and can be."""

    def prepare(self) -> None:  # noqa: B027 (optional: most strategies have nothing to do)
        """Make ready ahead what the first test will need (seamtest's warm-up calls this
        in a background thread)."""

    def connect(self, database: TestDatabase) -> psycopg.Connection[Any]:
        """The test's ``db`` connection."""
        return psycopg.connect(database.conninfo)

    def connect_async(self, database: TestDatabase) -> psycopg.AsyncConnection[Any]:
        """The test's ``adb`` connection."""
        return connect_async(database.conninfo)

    def disconnect(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        """Give back a connection from :meth:`connect` or :meth:`connect_async`."""
        if isinstance(conn, psycopg.AsyncConnection):
            conn.pgconn.finish()  # no event loop here; libpq's close needs none
        else:
            conn.close()

    def url(self, database: TestDatabase) -> str:
        """The test's ``db_url``."""
        return database.url

    def kept_url(self, database: TestDatabase, request: DatabaseRequest) -> str | None:
        """Where a failed test's database will be kept, or None if it cannot be."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release whatever the strategy holds for the whole session."""


def test_database_name(prefix: str, nodeid: str) -> str:
    """The name of a test's own database (also of a kept copy): readable and unique."""
    return database_name(prefix, "t", label_for_test(nodeid), unique=nodeid)


#: Tests that must share a fixture set before it becomes a template layer of its own.
LAYER_MIN_USES = 2
#: Fixture layers per process at most (each has a pool of its own: clones, connections).
MAX_LAYERS = 4


def apply_fixtures(conninfo: str, paths: Sequence[Path]) -> None:
    if paths:
        with psycopg.connect(conninfo) as conn:
            FixtureFiles.apply(conn, paths)


class FixtureLayer:
    """SQL fixture files as a template layer: loaded once, cloned per test."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)

    def describe(self) -> str:
        return "fixtures " + ", ".join(path.stem for path in self.paths)

    def fingerprint(self) -> str:
        return digest("\0".join(f"{p.name}\0{p.read_text()}" for p in self.paths), 16)

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        FixtureFiles.apply(conn, self.paths)


class DatabasePerTest(Isolation):
    """A fresh clone of the template for every test: complete isolation.

    Commits, multiple connections, ``now()`` and deferred constraints all behave as in
    production, because nothing is wrapped: the test owns a real database. With a pool
    (the default), the clone and its connection were made ahead in the background and a
    passing test's database is recycled; drops happen in the background too.

    A set of fixture files that several tests load becomes a template layer of its own
    (the template plus those files), built once and cloned, so those tests pay a clone
    (from their own pool) instead of replaying the files: ``LAYER_MIN_USES``.
    """

    name = "database"

    def __init__(
        self,
        provisioner: Provisioner,
        template: Callable[[], Template],
        *,
        keep_failed: bool,
        pool_size: int = 0,
        recycle: bool = False,
        worker: str = "main",
        fixture_uses: Mapping[tuple[Path, ...], int] | None = None,
    ) -> None:
        self.provisioner = provisioner
        self.template = template
        self.keep_failed = keep_failed
        self.pool_size = pool_size
        self.recycle = recycle
        self.worker = worker
        self.fixture_uses = fixture_uses if fixture_uses is not None else {}
        #: Pools by fixture set (``()``: the plain template); templates built as layers.
        self.pools: dict[tuple[Path, ...], ClonePool] = {}
        self.layers: list[Template] = []
        self._templates: dict[tuple[Path, ...], Template] = {}
        self._pool_of: dict[str, ClonePool] = {}
        #: Per database: the session opened ahead (before the test), or handed back
        #: by the test's ``db`` at teardown, for the pool to recycle.
        self._sessions: dict[str, pq.abc.PGconn] = {}

    def _layered(self, fixtures: Sequence[Path]) -> tuple[Path, ...]:
        """The fixture set to clone with, ``()`` when the files are loaded per test.

        A layer costs a template build once and a clone per test; loading the files
        costs their replay per test. Layering pays from the second use (with a pool the
        clone is made ahead anyway), so a set used once is replayed.
        """
        key = tuple(fixtures)
        if not key or self.fixture_uses.get(key, 0) < LAYER_MIN_USES:
            return ()
        if key not in self._templates and len(self._templates) > MAX_LAYERS:
            return ()  # each layer has its own pool: keep connections and clones bounded
        return key

    def _template_for(self, key: tuple[Path, ...]) -> Template:
        """The template clones for ``key`` come from (layers built on first use)."""
        if key not in self._templates:
            layers: list[MigrationSource] = [FixtureLayer(key)] if key else []
            if self.recycle and self.pool_size > 0:
                layers.append(RecycleLayer())
            template = self.template()
            if layers:
                template = self.provisioner.ensure_template(layers, base=template)
                self.layers.append(template)
            self._templates[key] = template
        return self._templates[key]

    def _pool(self, key: tuple[Path, ...]) -> ClonePool:
        if key not in self.pools:
            self.pools[key] = ClonePool(
                self.provisioner,
                self._template_for(key),
                size=self.pool_size,
                recycle=self.recycle,
                worker=self.worker,
            )
        return self.pools[key]

    def prepare(self) -> None:
        """The plain template's layer and those of the fixture sets several collected
        tests load (most used first, within ``MAX_LAYERS``), each with its pool filling:
        otherwise the first test of each set waits for its layer's build."""
        by_use = sorted(self.fixture_uses, key=lambda key: -self.fixture_uses[key])
        for key in [(), *by_use]:
            if key and not self._layered(key):
                continue
            if self.pool_size > 0:
                self._pool(key)
            else:
                self._template_for(key)

    def acquire(self, request: DatabaseRequest) -> TestDatabase:
        key = self._layered(request.fixtures)
        if self.pool_size > 0:
            pool = self._pool(key)
            ready = pool.take()
            database = ready.database
            self._pool_of[database.name] = pool
            if ready.pgconn is not None:
                self._sessions[database.name] = ready.pgconn
        else:
            name = test_database_name(self.provisioner.prefix, request.nodeid)
            template = self._template_for(key).name
            database = self.provisioner.create(name, template, test=request.nodeid)
        try:
            if not key:
                apply_fixtures(database.conninfo, request.fixtures)
        except BaseException:
            self._close_opened(database)
            self._pool_of.pop(database.name, None)
            self.provisioner.drop_later(database.name, request.nodeid)
            raise
        return database

    def connect(self, database: TestDatabase) -> psycopg.Connection[Any]:
        if database.name not in self._pool_of:
            return psycopg.connect(database.conninfo)
        pgconn = self._sessions.pop(database.name, None)
        if pgconn is not None and pgconn.status == pq.ConnStatus.OK:
            return PooledConnection(pgconn)  # a new object over the session opened ahead
        return PooledConnection.connect(database.conninfo)

    def disconnect(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        if isinstance(conn, PooledConnection) and self.recycle:
            pgconn = conn.detach()  # back to the pool with its database, if still usable
            if pgconn is not None:
                self._sessions.setdefault(pgconn.db.decode(), pgconn)
            return  # detach() closed it otherwise
        super().disconnect(conn)

    def _close_opened(self, database: TestDatabase) -> None:
        pgconn = self._sessions.pop(database.name, None)
        if pgconn is not None:
            pgconn.finish()

    def kept_url(self, database: TestDatabase, request: DatabaseRequest) -> str | None:
        if not self.keep_failed:
            return None
        return database.endpoint.url(test_database_name(self.provisioner.prefix, request.nodeid))

    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome()
        name = test_database_name(self.provisioner.prefix, request.nodeid)
        pool = self._pool_of.pop(database.name, None)
        if failed and self.keep_failed:
            self._close_opened(database)
            if database.name != name:
                database = self.provisioner.rename(database.name, name, test=request.nodeid)
            self.provisioner.keep(database.name, test=request.nodeid)
            outcome.kept_url = database.url
        elif pool is not None:
            pool.give_back(database, request.nodeid, self._sessions.pop(database.name, None))
        else:
            self._close_opened(database)
            self.provisioner.drop_later(database.name, request.nodeid)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def close(self) -> None:
        for pgconn in self._sessions.values():
            pgconn.finish()
        self._sessions.clear()
        for pool in self.pools.values():
            pool.close()
