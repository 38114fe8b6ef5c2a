"""Server sessions that outlive the connection objects tests get.

A new PostgreSQL session costs a connect (4.5-6 ms here) and then, on its first queries,
cold catalog caches and plpgsql compilation (several ms more). seamtest keeps one
session per database it reuses and hands each test a new psycopg connection object over
it, after ROLLBACK and DISCARD ALL have forgotten everything the last test did to the
session (SET, LISTEN, advisory locks, prepared statements, temporary tables). Round trips
are what a background thread pays most for (each waits for the interpreter while pytest
runs a test), so the cleaning shares one with the query that follows it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq


class PooledConnection(psycopg.Connection[Any]):
    """A connection whose server session outlives it: seamtest takes it back at teardown.

    A test may close it (the session ends then, and seamtest connects anew); otherwise
    :meth:`detach` hands the libpq connection back and this object goes quiet.
    """

    _detached = False

    def detach(self) -> pq.abc.PGconn | None:
        """The libpq connection, if it can serve again (open, no query running)."""
        if self.closed or self.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            self.close()
            return None
        self._detached = True
        return self.pgconn

    def close(self) -> None:
        if not self._detached:
            super().close()

    def __del__(self, *args: Any) -> None:
        if not self._detached:
            super().__del__(*args)


#: ``DISCARD ALL`` spelled out, as PostgreSQL documents it, but for ``DISCARD PLANS``:
#: ``DISCARD ALL`` refuses to share a query string with other statements and these do not,
#: so cleaning a session and the next query can go in one round trip. Cached plans are
#: not state a test can see (PostgreSQL re-plans when what they depend on changes), and
#: dropping them would make the recycle's own statements re-plan on every test.
DISCARD_ALL = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)


def reopen(pgconn: pq.abc.PGconn | None, conninfo: str) -> PooledConnection:
    """``pgconn``'s session, its transaction rolled back, in autocommit; a new session if
    it is gone. What the test did to the session (SET, LISTEN, locks...) is still there."""
    if pgconn is not None and pgconn.status == pq.ConnStatus.OK:
        conn = PooledConnection(pgconn)
        conn.prepare_threshold = None  # the next test's object prepares afresh
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True
        return conn
    if pgconn is not None:
        pgconn.finish()
    conn = PooledConnection.connect(conninfo, autocommit=True)
    conn.prepare_threshold = None
    return conn


def forget(conn: psycopg.Connection[Any], then: str | None = None) -> Any:
    """Forget everything a test did to ``conn``'s session (autocommit, no transaction open);
    ``then`` (a query without parameters) runs in the same round trip, and its first value
    is returned."""
    cursor = conn.execute((DISCARD_ALL if then is None else f"{DISCARD_ALL}; {then}").encode())
    while cursor.nextset():  # to the last statement's result
        pass
    row = cursor.fetchone() if then is not None else None
    return row[0] if row else None


class SessionKeeper:
    """One session to a shared database, handed to test after test."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._pgconn: pq.abc.PGconn | None = None

    def take(self) -> PooledConnection:
        pgconn, self._pgconn = self._pgconn, None
        if pgconn is not None and pgconn.status == pq.ConnStatus.OK:
            return PooledConnection(pgconn)
        return PooledConnection.connect(self.conninfo)

    def give_back(self, conn: PooledConnection) -> None:
        """Keep the session (cleaned now, so its locks go before any reset runs)."""
        detached = conn.detach()
        if detached is None:
            return
        try:
            conn = reopen(detached, self.conninfo)
            forget(conn)
            pgconn = conn.detach()
        except psycopg.Error:
            detached.finish()
            return
        if self._pgconn is not None:  # a test that took two: keep one
            self._pgconn.finish()
        self._pgconn = pgconn

    def close(self) -> None:
        if self._pgconn is not None:
            self._pgconn.finish()
            self._pgconn = None
