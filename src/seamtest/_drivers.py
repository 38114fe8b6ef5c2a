"""Fixtures for the drivers people use beside psycopg: SQLAlchemy (sync and async) and asyncpg.

Each is available when its library is installed (extras ``seamtest[sqlalchemy]``,
``seamtest[asyncpg]``) and talks to the same database as ``db``. Under
``isolation="transaction"`` SQLAlchemy joins the test's transaction: its engine is built
on the test's own connection, whose commits are savepoints, so ``session.commit()`` works
and everything is rolled back afterwards. asyncpg cannot join a psycopg transaction (it
is another connection), so it is refused there with the reason.

Sync and async twins have matching names: ``sa_engine``/``sa_async_engine``,
``sa_session``/``sa_async_session``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from ._provision import TestDatabase

from .errors import ConfigError, TransactionIsolationError
from .fixtures import isolation_of, strategy_of

try:  # async fixtures belong to pytest-asyncio when it is there (strict mode needs it)
    import pytest_asyncio

    async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # anyio's plugin runs plain async fixtures for its tests
    async_fixture = pytest.fixture


def _require(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConfigError(
            f"this fixture needs {module.partition('.')[0]}: pip install 'seamtest[{extra}]'"
        ) from None


def with_driver(url: str, driver: str) -> str:
    """``postgresql://...`` -> ``postgresql+DRIVER://...`` for SQLAlchemy."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=f"postgresql+{driver}"))


def _transactional(request: pytest.FixtureRequest) -> bool:
    return isolation_of(request.node) == "transaction"


@pytest.fixture
def sa_engine(request: pytest.FixtureRequest, _seamtest_database: TestDatabase) -> Iterator[Any]:
    """SQLAlchemy Engine on this test's database (psycopg driver); joins the test's
    transaction under isolation='transaction'."""
    sqlalchemy = _require("sqlalchemy", "sqlalchemy")
    pool = _require("sqlalchemy.pool", "sqlalchemy")
    if _transactional(request):
        conn = request.getfixturevalue("db")  # the savepoint connection: commits stay inside
        engine = sqlalchemy.create_engine(
            "postgresql+psycopg://", creator=lambda: conn, poolclass=pool.StaticPool
        )
    else:
        url = strategy_of(request.node).url(_seamtest_database)
        engine = sqlalchemy.create_engine(with_driver(url, "psycopg"), poolclass=pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sa_session(sa_engine: Any) -> Iterator[Any]:
    """SQLAlchemy Session bound to ``sa_engine``; closed after the test."""
    orm = _require("sqlalchemy.orm", "sqlalchemy")
    session = orm.Session(sa_engine)
    try:
        yield session
    finally:
        session.close()


@async_fixture
async def sa_async_engine(
    request: pytest.FixtureRequest, _seamtest_database: TestDatabase
) -> AsyncIterator[Any]:
    """SQLAlchemy AsyncEngine on this test's database (psycopg async driver); joins the
    test's transaction under isolation='transaction'."""
    asyncio_ext = _require("sqlalchemy.ext.asyncio", "sqlalchemy")
    pool = _require("sqlalchemy.pool", "sqlalchemy")
    if _transactional(request):
        conn = request.getfixturevalue("adb")

        async def creator() -> Any:
            return conn

        engine = asyncio_ext.create_async_engine(
            "postgresql+psycopg://", async_creator=creator, poolclass=pool.StaticPool
        )
    else:
        url = strategy_of(request.node).url(_seamtest_database)
        engine = asyncio_ext.create_async_engine(
            with_driver(url, "psycopg"), poolclass=pool.NullPool
        )
    try:
        yield engine
    finally:
        await engine.dispose()


@async_fixture
async def sa_async_session(sa_async_engine: Any) -> AsyncIterator[Any]:
    """SQLAlchemy AsyncSession bound to ``sa_async_engine``; closed after the test."""
    asyncio_ext = _require("sqlalchemy.ext.asyncio", "sqlalchemy")
    session = asyncio_ext.AsyncSession(sa_async_engine)
    try:
        yield session
    finally:
        await session.close()


@async_fixture
async def asyncpg_conn(
    request: pytest.FixtureRequest, _seamtest_database: TestDatabase
) -> AsyncIterator[Any]:
    """asyncpg connection to this test's database (a connect, ~5-10 ms)."""
    asyncpg = _require("asyncpg", "asyncpg")
    if _transactional(request):
        raise TransactionIsolationError(
            "asyncpg_conn cannot join the test's transaction under isolation='transaction' "
            "(it is a second connection, and asyncpg cannot share psycopg's). Use adb, or "
            "mark the test isolation='database' or 'reset'."
        )
    conn = await asyncpg.connect(strategy_of(request.node).url(_seamtest_database))
    try:
        yield conn
    finally:
        await conn.close()
