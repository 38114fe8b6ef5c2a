"""Connections for the transaction strategy: commits become savepoints, the end rolls back.

The test's connection is inside a transaction opened before the test and rolled back
after it. Code under test that commits must keep working, so ``commit()`` releases and
re-opens a savepoint (the work stays visible on this connection, exactly as after a real
commit) and ``rollback()`` rolls back to it (undoing only what came after the last
"commit"). ``conn.transaction()`` blocks already nest as savepoints in psycopg when a
transaction is open. This is what Django's TestCase and SQLAlchemy's
``join_transaction_mode="create_savepoint"`` do.

One libpq connection per worker is shared by the sync and async wrappers, so a test that
uses both ``db`` and ``adb`` sees one transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq

from .errors import DatabaseError, TransactionIsolationError

SAVEPOINT = b"seamtest_commit"
AUTOCOMMIT_REFUSED = (
    "autocommit cannot be turned on under isolation='transaction': the test runs inside a "
    "transaction that is rolled back afterwards. Use isolation='database' (or 'reset') for "
    "code that needs autocommit."
)


def _exec(pgconn: pq.abc.PGconn, command: bytes) -> None:
    result = pgconn.exec_(command)
    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        message = result.error_message.decode(errors="replace").strip()
        raise DatabaseError(f"{command.decode()} failed: {message}")


def _commit_commands(pgconn: pq.abc.PGconn) -> bytes:
    if pgconn.transaction_status == pq.TransactionStatus.INERROR:
        # A real COMMIT of a failed transaction rolls it back; so do we.
        return b"ROLLBACK TO SAVEPOINT " + SAVEPOINT
    return b"RELEASE SAVEPOINT " + SAVEPOINT + b"; SAVEPOINT " + SAVEPOINT


def _check_not_in_block(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], what: str
) -> None:
    if conn._num_transactions:
        raise psycopg.ProgrammingError(
            f"Explicit {what}() forbidden within a Transaction context. (Transaction will be "
            "automatically committed on successful exit from context.)"
        )


class SavepointConnection(psycopg.Connection[Any]):
    """A psycopg connection whose commit/rollback stay inside the test's transaction."""

    def commit(self) -> None:
        _check_not_in_block(self, "commit")
        with self.lock:
            _exec(self.pgconn, _commit_commands(self.pgconn))

    def rollback(self) -> None:
        _check_not_in_block(self, "rollback")
        with self.lock:
            _exec(self.pgconn, b"ROLLBACK TO SAVEPOINT " + SAVEPOINT)

    def set_autocommit(self, value: bool) -> None:
        if value:
            raise TransactionIsolationError(AUTOCOMMIT_REFUSED)

    def _set_autocommit(self, value: bool) -> None:
        self.set_autocommit(value)

    def close(self) -> None:
        """The libpq connection is the strategy's, shared across tests: nothing to close."""

    def __del__(self, *args: Any) -> None:
        """No "deleted while still open" warning: this wrapper does not own the connection."""


class AsyncSavepointConnection(psycopg.AsyncConnection[Any]):
    """The async twin of :class:`SavepointConnection`."""

    async def commit(self) -> None:
        _check_not_in_block(self, "commit")
        async with self.lock:
            _exec(self.pgconn, _commit_commands(self.pgconn))

    async def rollback(self) -> None:
        _check_not_in_block(self, "rollback")
        async with self.lock:
            _exec(self.pgconn, b"ROLLBACK TO SAVEPOINT " + SAVEPOINT)

    async def set_autocommit(self, value: bool) -> None:
        if value:
            raise TransactionIsolationError(AUTOCOMMIT_REFUSED)

    def _set_autocommit(self, value: bool) -> None:
        if value:
            raise TransactionIsolationError(AUTOCOMMIT_REFUSED)

    async def close(self) -> None:
        """The libpq connection is the strategy's, shared across tests: nothing to close."""

    def __del__(self, *args: Any) -> None:
        """No "deleted while still open" warning: this wrapper does not own the connection."""


class SharedTransaction:
    """One libpq connection per worker; each test runs in a transaction on it."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.pgconn: pq.abc.PGconn | None = None

    def _connection(self) -> pq.abc.PGconn:
        if self.pgconn is None or self.pgconn.status != pq.ConnStatus.OK:
            if self.pgconn is not None:
                self.pgconn.finish()
            self.pgconn = pq.PGconn.connect(self.conninfo.encode())
            if self.pgconn.status != pq.ConnStatus.OK:
                message = self.pgconn.get_error_message()
                self.pgconn = None
                raise DatabaseError(f"cannot connect for the transaction strategy: {message}")
        return self.pgconn

    def begin(self) -> pq.abc.PGconn:
        """Open the test's transaction and the savepoint its commits move."""
        pgconn = self._connection()
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            _exec(pgconn, b"ROLLBACK")
        _exec(pgconn, b"BEGIN; SAVEPOINT " + SAVEPOINT)
        return pgconn

    def end(self) -> None:
        """Roll back everything the test did and reset session state for the next one."""
        pgconn = self.pgconn
        if pgconn is None or pgconn.status != pq.ConnStatus.OK:
            return  # the test terminated its own connection; the next begin() reconnects
        if pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            pgconn.finish()  # a query still running (a leaked cursor): start over
            self.pgconn = None
            return
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            _exec(pgconn, b"ROLLBACK")
        # Session state outlives transactions: SET (outside one), advisory locks, LISTEN,
        # prepared statements. DISCARD ALL forgets all of it.
        _exec(pgconn, b"DISCARD ALL")

    def sync_connection(self) -> SavepointConnection:
        assert self.pgconn is not None
        conn = SavepointConnection(self.pgconn)
        conn.prepare_threshold = None  # DISCARD ALL drops server-side prepared statements
        return conn

    def async_connection(self) -> AsyncSavepointConnection:
        assert self.pgconn is not None
        conn = AsyncSavepointConnection(self.pgconn)
        conn.prepare_threshold = None
        return conn

    def close(self) -> None:
        if self.pgconn is not None:
            self.pgconn.finish()
            self.pgconn = None
