"""seamtest's fixtures: what a test asks for in its signature is what it gets.

``db_url``, ``db`` and ``adb`` all sit on ``_seamtest_database``, which asks the session's
isolation strategy for a database and gives it back afterwards, told whether the test
failed (a failed test's database is kept and its URL shown in the report).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ._config import ISOLATIONS, LEAK_MODES
from ._session import Session
from ._unique import Unique
from .errors import ConfigError, MigrationError, SeamtestError

if TYPE_CHECKING:  # imported by the first test that asks for a database
    import psycopg

    from ._isolation import DatabaseRequest, Isolation
    from ._provision import TestDatabase

C = TypeVar("C", "psycopg.Connection[Any]", "psycopg.AsyncConnection[Any]")

#: Redis isolation per test: FLUSHDB of the worker's logical database, or a key prefix.
REDIS_ISOLATIONS = ("flush", "prefix")
SESSION = pytest.StashKey["Session"]()
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
ACTIVE: pytest.StashKey[tuple[TestDatabase, DatabaseRequest]] = pytest.StashKey()


def marker_arguments(
    *,
    fixtures: Sequence[str] = (),
    isolation: str | None = None,
    leaks: str | None = None,
    redis: str | None = None,
) -> dict[str, Any]:
    """The arguments ``@pytest.mark.seamtest`` takes; a typo raises TypeError naming it."""
    if isinstance(fixtures, str) or not all(isinstance(f, str) for f in fixtures):
        raise ConfigError(
            f"fixtures={fixtures!r}: give a list of fixture names, such as "
            "fixtures=['users', 'orders']"
        )
    if isolation is not None and isolation not in ISOLATIONS:
        raise ConfigError(
            f"isolation={isolation!r}: choose one of " + ", ".join(repr(i) for i in ISOLATIONS)
        )
    if leaks is not None and leaks not in LEAK_MODES:
        raise ConfigError(f"leaks={leaks!r}: choose one of " + ", ".join(map(repr, LEAK_MODES)))
    if redis is not None and redis not in REDIS_ISOLATIONS:
        raise ConfigError(
            f"redis={redis!r}: choose one of " + ", ".join(map(repr, REDIS_ISOLATIONS))
        )
    return {"fixtures": tuple(fixtures), "isolation": isolation, "leaks": leaks, "redis": redis}


def marker_for(item: pytest.Item) -> dict[str, Any]:
    """The merged ``seamtest`` markers of an item: the closest one wins, key by key."""
    merged: dict[str, Any] = {}
    for marker in item.iter_markers("seamtest"):
        if marker.args:
            raise ConfigError(
                "@pytest.mark.seamtest takes keyword arguments only (fixtures=[...], "
                f"isolation=...), not {marker.args!r}"
            )
        for key, value in marker_arguments(**marker.kwargs).items():
            if key in marker.kwargs and key not in merged:
                merged[key] = value
    return merged


def session_of(config: pytest.Config) -> Session:
    return config.stash[SESSION]


def isolation_of(item: pytest.Item) -> str:
    """The isolation strategy in force for a test: its marker, else the configured default."""
    return str(marker_for(item).get("isolation") or session_of(item.config).settings.isolation)


def strategy_of(item: pytest.Item) -> Isolation:
    """The strategy that gave the test its database (markers are read once, at setup)."""
    active = item.stash.get(ACTIVE, None)
    isolation = active[1].isolation if active else isolation_of(item)
    return session_of(item.config).strategy(isolation)


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture
def _seamtest_database(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    from ._isolation import DatabaseRequest

    session = session_of(request.config)
    item = request.node
    assert isinstance(item, pytest.Item)
    options = marker_for(item)
    fixture_paths = session.fixture_files.resolve(options.get("fixtures", ()))
    isolation = isolation_of(item)
    database_request = DatabaseRequest(
        item.nodeid,
        fixture_paths,
        isolation,
        session.settings.leaks_for(isolation, options.get("leaks")),
    )
    try:
        with session.explaining():
            database = session.acquire(database_request)
    except SeamtestError as exc:
        if isinstance(exc, MigrationError):  # every later test would fail the same way
            request.session.shouldstop = f"seamtest: the template could not be built: {exc}"
        # seamtest's errors say what happened and the fix; its own traceback adds noise.
        pytest.fail(f"seamtest: {exc}", pytrace=False)
    item.stash[ACTIVE] = (database, database_request)
    try:
        yield database
    finally:
        del item.stash[ACTIVE]
        session.release(database, database_request, failed=_failed(item))


@pytest.fixture
def db_url(request: pytest.FixtureRequest, _seamtest_database: TestDatabase) -> str:
    """URL of this test's database (a clone from the warm pool: a queue pop, or a wait
    for the pool's next one, ~2-3 ms)."""
    return strategy_of(request.node).url(_seamtest_database)


def _connected(
    request: pytest.FixtureRequest,
    database: TestDatabase,
    open_connection: Callable[[Isolation, TestDatabase], C],
) -> Iterator[C]:
    """The strategy's connection for the test, given back to it afterwards."""
    strategy = strategy_of(request.node)
    with session_of(request.config).explaining():
        conn = open_connection(strategy, database)
    try:
        yield conn
    finally:
        strategy.disconnect(conn)


@pytest.fixture
def db(
    request: pytest.FixtureRequest, _seamtest_database: TestDatabase
) -> Iterator[psycopg.Connection[Any]]:
    """psycopg connection to this test's database, autocommit off (its server session
    was opened ahead: no connect on the test's path)."""
    yield from _connected(request, _seamtest_database, lambda strategy, db: strategy.connect(db))


@pytest.fixture
def adb(
    request: pytest.FixtureRequest, _seamtest_database: TestDatabase
) -> Iterator[psycopg.AsyncConnection[Any]]:
    """Async psycopg connection to this test's database, autocommit off (a connect).

    A plain fixture, so it works under pytest-asyncio and anyio alike: the connection is
    opened with libpq's blocking connect and binds to whichever event loop the test runs
    in (psycopg looks the loop up on every wait).
    """
    yield from _connected(
        request, _seamtest_database, lambda strategy, db: strategy.connect_async(db)
    )


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Unique:
    """Values no other test of this run gets (emails, names, ids); costs nothing."""
    session = session_of(request.config)
    return Unique(session.run.run_id, session.worker_number, session.unique_counter)
