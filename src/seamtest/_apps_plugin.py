"""Fixtures for testing web applications in-process: ``seamtest_app``, ``client``, ``aclient``.

The app is built for the test's own database (``seamtest_app``; a user fixture of that
name replaces it). ``seamtest_app_connection`` optionally names the app's FastAPI
dependency that yields a database connection; seamtest then overrides it with the test's
``db`` connection, so the app and the test share one connection:

* each request runs in ``db.transaction()``: a savepoint when the test has a transaction
  open (the app sees the test's uncommitted rows; a request that fails is undone alone),
  else a real transaction committed when the request succeeds, as the app's own
  dependency would;
* under ``isolation="transaction"`` this is required: the app would otherwise connect by
  URL and see none of the test's data, which lives in a transaction rolled back at the
  end. Under ``isolation="database"`` leaving it unset gives the more production-like
  wiring, the app opening its own connections to the test's database.

``aclient``'s lifespan must run in the test's event loop, which a plain fixture cannot
see (only an async fixture can, and an async fixture binds seamtest to one async
plugin). So ``aclient`` is a plain fixture, as ``adb`` is: the lifespan starts on the
first request or on ``async with aclient``, and ends when the client is closed or, at the
latest, right after the test body returns (``pytest_runtest_call`` below), while
pytest-asyncio's loop, in auto and strict mode alike, is still open. A loop that is
already closed by then (anyio's plugin closes its loop with the test) cannot run the
shutdown: close the client in the test (``async with aclient:``) and a warning says so.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from . import fixtures
from ._config import Option, Settings, resolve
from ._migrations import CallableMigration
from .errors import ConfigError, TransactionIsolationError

if TYPE_CHECKING:
    import httpx
    import psycopg

    from . import _apps

APP_OPTIONS = (
    Option(
        "seamtest_app",
        "The app factory for client/aclient, 'package.module:factory', called with the "
        "test database's URL (or with no argument, DATABASE_URL set).",
    ),
    Option(
        "seamtest_app_connection",
        "The app's FastAPI dependency that yields a database connection, "
        "'package.module:get_connection'; overridden with the test's db connection.",
    ),
)
APP_SETTINGS = pytest.StashKey[Settings]()
PENDING = pytest.StashKey[list["_apps.LifespanASGITransport"]]()
SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

INSTALL_HINT = (
    "seamtest's client and aclient fixtures need httpx: pip install 'seamtest[asgi]' "
    "(or add httpx to your test dependencies)."
)
NO_APP = (
    "no application to test: set the ini option seamtest_app = 'package.module:factory' "
    "(a function that takes the database URL and returns the app), or define a fixture "
    "named seamtest_app that returns it."
)
TRANSACTION_NEEDS_CONNECTION = (
    "this test runs under isolation='transaction', where the test's data lives in a "
    "transaction that is rolled back at the end, and seamtest_app_connection is not set: "
    "the app would open its own connections by URL and see none of it. Set "
    "seamtest_app_connection = 'package.module:get_connection' (the app's FastAPI "
    "dependency that yields a connection; seamtest makes it yield the test's db "
    "connection), or use isolation='database' for these tests."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seamtest", "seamtest: real PostgreSQL for every test")
    for option in APP_OPTIONS:
        parser.addini(option.name, option.help, type="string", default=option.default)
        group.addoption(option.flag, dest=option.name, default=None, help=option.help)


def pytest_configure(config: pytest.Config) -> None:
    cli = {o.name: getattr(config.option, o.name, None) for o in APP_OPTIONS}
    ini = {o.name: config.getini(o.name) for o in APP_OPTIONS}
    settings = resolve(cli, ini, os.environ, config.rootpath, options=APP_OPTIONS)
    for option in APP_OPTIONS:
        value = settings[option.name]
        if value and not SPEC.match(value):
            raise pytest.UsageError(
                f"seamtest: {settings.origin(option.name)} = {value!r}: write "
                "'package.module:name', such as 'shop.api:create_app'."
            )
    config.stash[APP_SETTINGS] = settings


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[APP_SETTINGS]
    if not settings["seamtest_app"]:
        return []
    connection = settings["seamtest_app_connection"]
    wiring = f"its {connection} yields db" if connection else "it connects to db_url itself"
    return [f"  app: {settings['seamtest_app']} (from {settings.source('seamtest_app')}); {wiring}"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Shut aclient's lifespans down in the test's loop, before the loop is torn down."""
    try:
        return (yield)
    finally:
        for transport in item.stash.get(PENDING, []):
            transport.shutdown_after_test()


# -- helpers --------------------------------------------------------------------------


def _apps_module() -> Any:
    if importlib.util.find_spec("httpx") is None:
        raise ModuleNotFoundError(INSTALL_HINT)
    from . import _apps

    return _apps


def isolation_of(request: pytest.FixtureRequest) -> str:
    """The isolation strategy in force for the requesting test."""
    item = request.node
    assert isinstance(item, pytest.Item)
    return fixtures.isolation_of(item)


def check_wiring(isolation: str, connection_spec: str | None) -> None:
    """Refuse an app that cannot see the test's data under the isolation in force."""
    if isolation == "transaction" and not connection_spec:
        raise TransactionIsolationError(TRANSACTION_NEEDS_CONNECTION)


def uses_dependency(app: Any, dependency: Callable[..., Any]) -> bool:
    """Whether any of the app's own routes depends, at any depth, on ``dependency``.

    Walks routes, their ``Dependant`` trees and ``Depends`` lists, and included routers,
    which FastAPI either copied into ``app.routes`` or (newer releases) keeps as a node
    with an ``original_router`` and an ``include_context``.
    """
    pending: list[Any] = list(getattr(app, "routes", []))
    seen: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if dependency in (getattr(node, "call", None), getattr(node, "dependency", None)):
            return True
        pending.extend(getattr(node, "dependencies", None) or [])
        pending.extend(
            child
            for child in (getattr(node, name, None) for name in ("dependant", "include_context"))
            if child is not None
        )
        router = getattr(node, "original_router", None)
        if router is not None:
            pending.extend(getattr(router, "dependencies", None) or [])
            pending.extend(getattr(router, "routes", []))
    return False


def connection_override(conn: psycopg.Connection[Any]) -> Callable[[], Iterator[Any]]:
    """A dependency yielding ``conn``, each request in its own transaction or savepoint."""

    def seamtest_db_connection() -> Iterator[Any]:
        with conn.transaction():
            yield conn

    return seamtest_db_connection


@contextmanager
def wired(app: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    """Apply ``seamtest_app_connection`` to ``app`` for the block, if it is set."""
    settings = request.config.stash[APP_SETTINGS]
    spec = settings["seamtest_app_connection"]
    if not spec:
        yield
        return
    origin = settings.origin("seamtest_app_connection")
    dependency = CallableMigration(spec, origin).load()
    if inspect.iscoroutinefunction(dependency) or inspect.isasyncgenfunction(dependency):
        raise ConfigError(
            f"{origin} = {spec!r} is async; seamtest can stand in only for a sync dependency "
            "yielding a psycopg Connection (the test's db). Leave it unset and let the app "
            "connect to the test's database by URL (isolation='database' or 'reset')."
        )
    overrides = getattr(app, "dependency_overrides", None)
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"{origin} = {spec!r}, but the app ({type(app).__qualname__}) has no FastAPI "
            "dependency_overrides. Leave it unset and let the app connect to db_url, or "
            "wire the test's db connection into the app in your own seamtest_app fixture."
        )
    if not uses_dependency(app, dependency):
        raise ConfigError(
            f"{origin} = {spec!r}, but none of the app's routes depends on it, so overriding "
            "it would change nothing. Name the function the routes pass to Depends(...), "
            "imported by the same module path the app uses (a mounted sub-application "
            "keeps its own dependency_overrides and is not reached)."
        )
    conn = request.getfixturevalue("db")
    missing = object()
    previous = overrides.get(dependency, missing)
    overrides[dependency] = connection_override(conn)
    try:
        yield
    finally:
        if previous is missing:
            overrides.pop(dependency, None)
        else:
            overrides[dependency] = previous


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def seamtest_app(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The app under test, from the seamtest_app factory (a database clone plus the call)."""
    settings = request.config.stash[APP_SETTINGS]
    spec = settings["seamtest_app"]
    if not spec:
        raise ConfigError(NO_APP)
    check_wiring(isolation_of(request), settings["seamtest_app_connection"])
    apps = _apps_module()
    database = request.getfixturevalue("_seamtest_database")
    with apps.build_app(spec, settings.origin("seamtest_app"), database.url) as app:
        yield app


@pytest.fixture
def client(seamtest_app: Any, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """Sync httpx client calling the app in-process (no socket); lifespan around the test."""
    apps = _apps_module()
    with ExitStack() as stack:
        stack.enter_context(wired(seamtest_app, request))
        yield stack.enter_context(apps.sync_client(seamtest_app))


@pytest.fixture
def aclient(seamtest_app: Any, request: pytest.FixtureRequest) -> Iterator[httpx.AsyncClient]:
    """Async httpx client calling the app in the test's loop; lifespan from first use."""
    apps = _apps_module()
    with ExitStack() as stack:
        stack.enter_context(wired(seamtest_app, request))
        client, transport = apps.async_client(seamtest_app)
        if isinstance(transport, apps.LifespanASGITransport):
            pending = request.node.stash.setdefault(PENDING, [])
            pending.append(transport)
            stack.callback(pending.remove, transport)
            stack.callback(transport.finish_at_teardown)
        yield client
