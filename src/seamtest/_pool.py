"""A warm pool of clones: a test should never wait for PostgreSQL to copy files.

A background thread keeps ``size`` databases cloned from the template and ready, each
with a connection already open, so taking one costs a queue pop. With recycling, a
database whose test passed comes back through the same thread, with the test's own
connection: its session is cleaned (see ``_connections``), the reset machinery
(statement triggers, snapshots, see ``_reset``) cleans only what the test dirtied, a
digest then proves the database equal to a fresh clone (row counts, sequences, schema,
large objects, database settings), and only then do both go back in the pool, the next
test getting a new connection object over the same, already warm, server session
(a new session would pay ~10 ms of cold catalog caches and plpgsql compilation per
recycle). Anything else is dropped and replaced by a new clone: a schema change, a
failed proof, a test still connected.

Recycling needs the reset machinery inside each clone, so recycled pools clone from a
layer template (the user's template plus the ``seamtest_reset`` schema and triggers),
built once per template; ``seamtest_recycle = false`` clones the user's template as is.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq

from . import _reset
from ._connections import PooledConnection, forget, reopen
from ._names import database_name, digest
from ._provision import Provisioner, Template, TestDatabase, wait_for_zero

#: Seconds a test waits for the pool before cloning in the foreground.
TAKE_TIMEOUT = 10.0
#: Recycles of one database between two VACUUMs of it.
VACUUM_EVERY = 200


@dataclass
class Ready:
    """A pooled database with the libpq connection opened for it."""

    database: TestDatabase
    pgconn: pq.abc.PGconn | None
    recycled: bool = False

    def discard(self) -> None:
        if self.pgconn is not None:
            self.pgconn.finish()


@dataclass
class PoolStats:
    hits: int = 0
    misses: int = 0
    cloned: int = 0
    recycled: int = 0
    discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class RecycleLayer:
    """The migration-source face of the reset machinery, for building the layer template."""

    def describe(self) -> str:
        return "seamtest recycling (reset triggers)"

    def fingerprint(self) -> str:
        return digest(_reset.INSTRUMENT, 16)

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        _reset.instrument(conn)


class ClonePool:
    """Ready clones of one template for one process, refilled in the background."""

    def __init__(
        self,
        provisioner: Provisioner,
        template: Template,
        *,
        size: int,
        recycle: bool,
        worker: str,
    ) -> None:
        self.provisioner = provisioner
        self.template = template
        self.size = max(1, size)
        self.recycle = recycle
        self.worker = worker
        self.stats = PoolStats()
        self._ready: collections.deque[Ready] = collections.deque()
        self._returned: collections.deque[tuple[str, str, pq.abc.PGconn | None]] = (
            collections.deque()
        )
        self._cond = threading.Condition()
        self._closed = False
        self._serial = 0
        self._baseline: dict[str, Any] | None = None
        self._recycles: dict[str, int] = {}
        self._errors: list[str] = []
        #: The background thread's last error, until it next succeeds: takers fail fast.
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="seamtest-pool", daemon=True)
        self._thread.start()

    # -- the test's side -----------------------------------------------------------------
    def take(self) -> Ready:
        """A ready database: at once (a hit), or the next one the pool finishes (a miss).

        Waiting for the background thread is never slower than cloning here: it is
        already cloning or recycling (a recycle takes a few ms, a clone ~20 ms). If it
        stalls (an error), clone in the foreground after ``TAKE_TIMEOUT``.
        """
        with self._cond:
            if self._ready:
                self.stats.hits += 1
            else:
                self.stats.misses += 1
                self._cond.wait_for(
                    lambda: bool(self._ready) or self._closed or self._failure is not None,
                    TAKE_TIMEOUT,
                )
            if self._ready:
                ready = self._ready.popleft()
                self._cond.notify_all()
                return ready
            failure = self._failure
        if failure is not None:  # the background thread cannot clone: say why, now
            raise failure
        return Ready(self._clone(), None)

    def give_back(self, database: TestDatabase, nodeid: str, pgconn: pq.abc.PGconn | None) -> None:
        """The test passed: recycle its database (with its session, if still open)."""
        if not self.recycle:
            if pgconn is not None:
                pgconn.finish()
            self.provisioner.drop_later(database.name, nodeid)
            return
        with self._cond:
            self._returned.append((database.name, nodeid, pgconn))
            self._cond.notify_all()

    # -- the background thread -----------------------------------------------------------
    def _next_name(self) -> str:
        with self._cond:
            self._serial += 1
            serial = self._serial
        unique = f"{self.provisioner.run_id}:{self.worker}:{self.template.name}:{serial}"
        return database_name(self.provisioner.prefix, "p", self.worker, unique=unique)

    def _clone(self) -> TestDatabase:
        database = self.provisioner.create(self._next_name(), self.template.name, pooled=True)
        with self._cond:
            self.stats.cloned += 1
        return database

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._returned and len(self._ready) >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
                returned = self._returned.popleft() if self._returned else None
            try:
                ready = self._recycled(*returned) if returned else None
                if ready is None and returned is None:
                    database = self._clone()
                    conn = PooledConnection.connect(database.conninfo, autocommit=True)
                    conn.prepare_threshold = None  # the next test's wrapper starts afresh
                    if self.recycle and self._baseline is None:
                        self._baseline = _reset.digest(conn)  # a fresh clone's state
                    ready = Ready(database, conn.detach())
            except Exception as exc:  # takers get it at once; retried, reported at the end
                with self._cond:
                    self._failure = exc
                    self._cond.notify_all()
                self._errors.append(f"pool: {exc}")
                time.sleep(0.2)
                continue
            if ready is None:
                continue
            with self._cond:
                self._failure = None
                if self._closed:
                    self._discard_ready(ready)
                    return
                self._ready.append(ready)
                self._cond.notify_all()

    def _recycled(self, name: str, nodeid: str, pgconn: pq.abc.PGconn | None) -> Ready | None:
        """Reset ``name`` in place; None (and the database dropped) unless provably clean."""
        database = TestDatabase(name, self.provisioner.endpoint, self.template.name)
        try:
            conn = reopen(pgconn, database.conninfo)
        except psycopg.Error:  # the test dropped its own database, say
            self._discard(name, nodeid, "cannot connect")
            return None
        reason = None
        try:
            # Clean the session, check that the test's other sessions are gone, reset what
            # the test dirtied and take the digest that proves it: one round trip.
            result = _reset.Reset.parse(forget(conn, then=_reset.reset_query(alone=True)))
            if result.others:  # backends leave moments after their clients close

                def others() -> int:
                    nonlocal result
                    result = _reset.reset(conn, alone=True)
                    return result.others

                wait_for_zero(others, 1.0)
            if result.others:
                reason = "still connected"  # the dropper names the test
            elif result.cleaned is None or result.digest is None:
                reason = "schema changed"
            elif self._baseline is None or _reset.differences(
                self._baseline, result.digest, roles=False
            ):
                reason = "not provably clean"
            else:
                self._vacuum_now_and_then(conn, name)
        except psycopg.Error as exc:
            reason = f"reset failed: {exc.diag.message_primary or exc}"
        if reason is not None:
            conn.close()
            self._discard(name, nodeid, reason)
            return None
        with self._cond:
            self.stats.recycled += 1
        return Ready(database, conn.detach(), recycled=True)

    def _vacuum_now_and_then(self, conn: psycopg.Connection[Any], name: str) -> None:
        """The reset deletes rows and autovacuum is off: reclaim them every so often."""
        self._recycles[name] = self._recycles.get(name, 0) + 1
        if self._recycles[name] % VACUUM_EVERY == 0:
            _reset.vacuum(conn)

    def _discard(self, name: str, nodeid: str, reason: str) -> None:
        """Drop a database that cannot be recycled (``reason`` is for reading here)."""
        with self._cond:
            self.stats.discarded += 1
        self.provisioner.drop_later(name, nodeid)  # the dropper names the test if need be

    def _discard_ready(self, ready: Ready) -> None:
        ready.discard()
        self.provisioner.drop_later(ready.database.name, "pooled database (unused)")

    def notes(self) -> list[str]:
        return list(self._errors)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=60)
        while self._ready:
            self._discard_ready(self._ready.popleft())
        while self._returned:
            name, nodeid, pgconn = self._returned.popleft()
            if pgconn is not None:
                pgconn.finish()
            self.provisioner.drop_later(name, nodeid)
