"""The strategies that share a database between tests: transaction, reset, unique.

Each keeps a database cloned from the template (per xdist worker for transaction and
reset, per run for unique) and a leak detector that compares a digest of that database
with what the strategy promises: a test that leaves behind what its strategy does not
clean is named in a warning, or an error with ``seamtest_leaks = "error"``.
"""

from __future__ import annotations

import abc
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import psycopg

from . import _reset
from ._connections import PooledConnection, SessionKeeper
from ._isolation import (
    DatabaseRequest,
    Isolation,
    Outcome,
    apply_fixtures,
    test_database_name,
)
from ._names import database_name
from ._provision import Provisioner, Template, TestDatabase
from ._rollback import SharedTransaction
from ._run import Run
from .errors import LeakError, LeakWarning, TransactionIsolationError

#: Resets between VACUUMs of the shared database: DELETE leaves dead rows and autovacuum
#: is off on the embedded server, so tables would grow and scans slow down over a run.
VACUUM_EVERY = 500


def report_leaks(request: DatabaseRequest, strategy: str, found: list[str], fix: str) -> None:
    if not found or request.leaks == "off":
        return
    message = (
        f"{request.nodeid} left state behind under isolation={strategy!r}: "
        + "; ".join(found)
        + f". {fix}"
    )
    if request.leaks == "error":
        raise LeakError(message)
    warnings.warn(message, LeakWarning, stacklevel=2)


class _SharedDatabase:
    """A clone of the template that several tests use in turn."""

    def __init__(
        self, provisioner: Provisioner, template: Callable[[], Template], kind: str, label: str
    ) -> None:
        self.provisioner = provisioner
        self.template = template
        self.kind = kind
        self.label = label
        self.generation = 0
        self.database: TestDatabase | None = None

    def name(self) -> str:
        unique = f"{self.provisioner.run_id}:{self.label}:{self.generation}"
        return database_name(self.provisioner.prefix, self.kind, self.label, unique=unique)

    def get(self, prepare: Callable[[TestDatabase], None] | None = None) -> TestDatabase:
        if self.database is None:
            database = self.provisioner.create(self.name(), self.template().name, shared=self.label)
            if prepare is not None:
                try:
                    prepare(database)
                except BaseException:
                    self.provisioner.drop_later(database.name, f"{self.label} (setup failed)")
                    self.generation += 1
                    raise
            self.database = database
        return self.database

    def discard(self, reason: str) -> None:
        """Drop it (in the background); the next get() clones a fresh one."""
        if self.database is not None:
            self.provisioner.drop_later(self.database.name, reason)
            self.database = None
            self.generation += 1


class TransactionIsolation(Isolation):
    """Each test runs in a transaction on a per-worker database, rolled back afterwards.

    The fastest strategy (a rollback costs about 0.2 ms here). Commits by the code under
    test become savepoints. What cannot work: a second connection does not see the test's
    uncommitted data (so ``db_url`` is refused), ``now()`` is the same all test long, and
    deferred constraints fire only if the test runs ``SET CONSTRAINTS ALL IMMEDIATE``.
    """

    name = "transaction"

    def __init__(
        self, provisioner: Provisioner, template: Callable[[], Template], worker: str
    ) -> None:
        self.shared = _SharedDatabase(provisioner, template, "x", worker)
        self.check_roles = worker == "main"  # roles are global: unattributable under xdist
        self.transaction: SharedTransaction | None = None
        self._before: dict[str, Any] | None = None
        self._admin: psycopg.Connection[Any] | None = None

    def acquire(self, request: DatabaseRequest) -> TestDatabase:
        database = self.shared.get()
        if self.transaction is None:
            self.transaction = SharedTransaction(database.conninfo)
        if request.leaks != "off":
            self._before = _reset.digest(self._admin_connection(database))
        self.transaction.begin()
        if request.fixtures:
            from ._migrations import FixtureFiles

            FixtureFiles.apply(self.transaction.sync_connection(), request.fixtures)
        return database

    def _admin_connection(self, database: TestDatabase) -> psycopg.Connection[Any]:
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(database.conninfo, autocommit=True)
        return self._admin

    def connect(self, database: TestDatabase) -> psycopg.Connection[Any]:
        assert self.transaction is not None
        return self.transaction.sync_connection()

    def connect_async(self, database: TestDatabase) -> psycopg.AsyncConnection[Any]:
        assert self.transaction is not None
        return self.transaction.async_connection()

    def disconnect(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        """The connection is shared across tests; end() rolls its transaction back."""

    def kept_url(self, database: TestDatabase, request: DatabaseRequest) -> str | None:
        return None  # rolled back: nothing to keep

    def url(self, database: TestDatabase) -> str:
        raise TransactionIsolationError(
            "db_url is not available under isolation='transaction': a new connection to the "
            "database cannot see the test's uncommitted data, and anything it committed would "
            "leak into later tests. Use the db/adb fixtures (one shared transaction), or mark "
            "the test @pytest.mark.seamtest(isolation='database') or 'reset'."
        )

    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        started = time.perf_counter()
        assert self.transaction is not None
        self.transaction.end()
        outcome = Outcome()
        if self._before is not None:
            after = _reset.digest(self._admin_connection(database))
            outcome.leaks = _reset.differences(self._before, after, roles=self.check_roles)
            self._before = None
            if outcome.leaks:
                self._close_admin()
                self.shared.discard(f"{request.nodeid} (leaked)")
                self.transaction.close()
                self.transaction = None
            report_leaks(
                request,
                self.name,
                outcome.leaks,
                "Something committed outside the test's transaction (a second connection, "
                "autocommit, or DDL that cannot roll back); use isolation='database'.",
            )
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def close(self) -> None:
        self._close_admin()
        if self.transaction is not None:
            self.transaction.close()
            self.transaction = None
        self.shared.discard("transaction strategy database")


class _CommittingShared(Isolation):
    """A shared database with real commits: connections are opened ahead of each test."""

    _sessions: SessionKeeper | None = None

    @abc.abstractmethod
    def _database(self) -> TestDatabase:
        """The shared database, created (and its SessionKeeper set up) on first use."""

    def acquire(self, request: DatabaseRequest) -> TestDatabase:
        database = self._database()
        apply_fixtures(database.conninfo, request.fixtures)
        return database

    def connect(self, database: TestDatabase) -> psycopg.Connection[Any]:
        assert self._sessions is not None
        return self._sessions.take()

    def disconnect(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        if isinstance(conn, PooledConnection) and self._sessions is not None:
            self._sessions.give_back(conn)
        else:
            super().disconnect(conn)

    def _close_sessions(self) -> None:
        if self._sessions is not None:
            self._sessions.close()
            self._sessions = None


class ResetIsolation(_CommittingShared):
    """A per-worker database with real commits, cleaned after each test.

    Only what the test dirtied is cleaned (tracked by statement triggers), tables that had
    rows in the template are restored from a snapshot, sequences are set back, and any
    schema change re-clones the database. The leak detector then checks the result.
    """

    name = "reset"

    def __init__(
        self,
        provisioner: Provisioner,
        template: Callable[[], Template],
        worker: str,
        *,
        keep_failed: bool,
    ) -> None:
        self.shared = _SharedDatabase(provisioner, template, "r", worker)
        self.check_roles = worker == "main"  # roles are global: unattributable under xdist
        self.provisioner = provisioner
        self.keep_failed = keep_failed
        self._admin: psycopg.Connection[Any] | None = None
        self._baseline: dict[str, Any] | None = None
        self._resets = 0

    def _prepare(self, database: TestDatabase) -> None:
        with psycopg.connect(database.conninfo) as conn:
            _reset.instrument(conn)
            self._baseline = _reset.digest(conn)

    def _database(self) -> TestDatabase:
        database = self.shared.get(self._prepare)
        if self._admin is None:
            self._admin = psycopg.connect(database.conninfo, autocommit=True)
            # A test that leaves a transaction open holding locks would block the reset
            # forever; fail it with a message instead.
            self._admin.execute("SET lock_timeout = '10s'")
            self._sessions = SessionKeeper(database.conninfo)
        return database

    def kept_url(self, database: TestDatabase, request: DatabaseRequest) -> str | None:
        if not self.keep_failed:
            return None
        return database.endpoint.url(test_database_name(self.provisioner.prefix, request.nodeid))

    def _disconnect_all(self) -> None:
        self._close_sessions()
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome()
        if failed and self.keep_failed:
            outcome.kept_url = self._keep_copy(database, request)
        assert self._admin is not None
        # The digest rides along (one round trip): it counts only the cleaned tables, the
        # triggers vouching for the others, and skips the schema, which event triggers watch.
        result = _reset.reset(self._admin)
        if result.cleaned is None or result.digest is None:
            self._rebuild(f"{request.nodeid} changed the schema")
        else:
            self._resets += 1
            if self._resets % VACUUM_EVERY == 0:
                _reset.vacuum(self._admin)
            if request.leaks != "off":
                assert self._baseline is not None
                outcome.leaks = _reset.differences(
                    self._baseline, result.digest, roles=self.check_roles
                )
                if outcome.leaks:
                    self._rebuild(f"{request.nodeid} leaked")
        outcome.seconds = time.perf_counter() - started
        report_leaks(
            request,
            self.name,
            outcome.leaks,
            "The reset strategy cleans rows, sequences and large objects in this database; "
            "roles and other databases are global. The database was re-cloned.",
        )
        return outcome

    def _keep_copy(self, database: TestDatabase, request: DatabaseRequest) -> str:
        """Copy the shared database as the failed test left it (before the reset)."""
        self._disconnect_all()
        self.provisioner.wait_unused(database.name)
        name = test_database_name(self.provisioner.prefix, request.nodeid)
        kept = self.provisioner.create(name, database.name, test=request.nodeid)
        self.provisioner.keep(kept.name, test=request.nodeid)
        self._database()
        return kept.url

    def _rebuild(self, reason: str) -> None:
        self._disconnect_all()
        self.shared.discard(reason)
        self._database()

    def close(self) -> None:
        self._disconnect_all()
        self.shared.discard("reset strategy database")


class UniqueIsolation(_CommittingShared):
    """One database for the whole run, shared by every xdist worker; nothing cleaned per test.

    Tests stay apart by using unique values (the ``unique`` fixture) instead of cleaning.
    The database is dropped when the run ends. The leak detector checks the schema and
    roles only: rows are expected to accumulate.
    """

    name = "unique"

    def __init__(
        self, provisioner: Provisioner, template: Callable[[], Template], run: Run
    ) -> None:
        self.provisioner = provisioner
        self.template = template
        self.run = run
        self.check_roles = run.is_owner  # roles are global: unattributable under xdist
        self.database: TestDatabase | None = None
        self._baseline: dict[str, Any] | None = None
        self._admin: psycopg.Connection[Any] | None = None

    def _create(self) -> str:
        name = database_name(self.provisioner.prefix, "u", "run", unique=self.run.run_id)
        self.provisioner.create(name, self.template().name, shared="unique")
        return json.dumps({"name": name})

    def _database(self) -> TestDatabase:
        if self.database is None:
            name = json.loads(self.run.shared("unique-database", self._create))["name"]
            database = TestDatabase(name, self.provisioner.endpoint, self.template().name)
            self._admin = psycopg.connect(database.conninfo, autocommit=True)
            self._baseline = _reset.digest(self._admin, data=False)
            self._sessions = SessionKeeper(database.conninfo)
            self.database = database
        return self.database

    def kept_url(self, database: TestDatabase, request: DatabaseRequest) -> str | None:
        return None  # shared by the run; dropped when it ends

    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome()
        if request.leaks != "off" and self._admin is not None and self._baseline is not None:
            outcome.leaks = _reset.differences(
                self._baseline,
                _reset.digest(self._admin, data=False),
                data=False,
                roles=self.check_roles,
            )
            if outcome.leaks:
                self._baseline = _reset.digest(self._admin, data=False)  # report each once
        outcome.seconds = time.perf_counter() - started
        report_leaks(
            request,
            self.name,
            outcome.leaks,
            "Tests sharing one database must not change its schema or roles; use "
            "isolation='database' for such a test.",
        )
        return outcome

    def close(self) -> None:
        self._close_sessions()
        if self._admin is not None:
            self._admin.close()
        # The run's owner drops the shared database when the run ends (drop_unique).


def drop_unique(provisioner: Provisioner, run: Run) -> None:
    """Owner only, at the end of the run: drop the unique strategy's database."""
    text = run.recorded("unique-database")
    if text:
        provisioner.drop_now(json.loads(text)["name"])
