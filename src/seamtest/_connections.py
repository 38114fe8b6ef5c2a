"""Server sessions that outlive the connection objects tests get.

A new PostgreSQL session costs a connect (4.5-6 ms here) and then, on its first queries,
cold catalog caches and plpgsql compilation (several ms more). seamtest keeps one
session per database it reuses and hands each test a new psycopg connection object over
it, after ROLLBACK and DISCARD ALL have forgotten everything the last test did to the
session (SET, LISTEN, advisory locks, prepared statements, temporary tables).
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


def clean_session(pgconn: pq.abc.PGconn | None, conninfo: str) -> PooledConnection:
    """``pgconn``'s session with everything a test did to it forgotten, in autocommit;
    a new session if it is gone."""
    if pgconn is not None and pgconn.status == pq.ConnStatus.OK:
        conn = PooledConnection(pgconn)
        conn.prepare_threshold = None  # the next test's object prepares afresh
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True
        conn.execute("DISCARD ALL")
        return conn
    if pgconn is not None:
        pgconn.finish()
    conn = PooledConnection.connect(conninfo, autocommit=True)
    conn.prepare_threshold = None
    return conn


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
            pgconn = clean_session(detached, self.conninfo).detach()
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
