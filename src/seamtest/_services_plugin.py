"""Fixtures and hooks for services beyond PostgreSQL: Redis, containers, a user's own.

Nothing starts until a test asks: ``redis_url``, ``redis`` and ``aredis`` start (or find)
the run's Redis on first use; ``service_fixture(MyService())`` in a conftest does the same
for a user's :class:`~seamtest._services.Service`. Every service is shared by the run's
xdist workers and stopped by the run's owner at the end (``pytest_unconfigure``, before
the core removes the run directory). Two things happen earlier, because applications
read them at import time: ``seamtest_services_env`` exports ``{redis.url}`` and friends
before conftests are imported, and ``seamtest_services = postgres = container`` starts the
PostgreSQL container before the core reads ``seamtest_url``.
"""

from __future__ import annotations

import dataclasses
import os
import string
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ._config import Option, Settings, resolve
from ._run import RUN_ENV
from ._services import (
    Service,
    ServiceProcess,
    ServiceRecord,
    Services,
    TestInfo,
    started_records,
    stop_all,
    stop_record,
)
from .errors import ConfigError, NoContainerEngine, SeamtestError, ServiceError
from .fixtures import SESSION

NO_ENGINE = ("skip", "fail")
SERVICE_OPTIONS = (
    Option(
        "seamtest_redis_url",
        "Use the existing Redis server at this URL (redis://:password@host:port) instead "
        "of starting one.",
    ),
    Option(
        "seamtest_redis_bin",
        "The redis-server or valkey-server to run (a file, or the directory holding it).",
    ),
    Option(
        "seamtest_redis_isolation",
        "Default Redis isolation: flush (a database per xdist worker, flushed around each "
        "test) or prefix (a key prefix per test).",
        "string",
        "flush",
    ),
    Option(
        "seamtest_services",
        "Where services come from, one 'NAME = local|container [IMAGE]' a line "
        "(redis, postgres, kafka, elasticsearch, or a custom service's name).",
        "linelist",
        (),
        cli=False,
        env=False,
    ),
    Option(
        "seamtest_services_env",
        "Environment variables to export before conftest import, one 'NAME=template' a "
        "line, over {redis.url} {redis.host} {redis.port} {redis.password} ...",
        "linelist",
        (),
        cli=False,
        env=False,
    ),
    Option(
        "seamtest_no_engine",
        "When a container service is needed and no container engine answers: skip the "
        "test or fail it.",
        "string",
        "skip",
    ),
)
#: Services whose values env templates may use: started before conftests are imported.
ENV_SERVICES = ("redis", "kafka", "elasticsearch")


def service_settings(config: pytest.Config) -> Settings:
    """This module's settings, resolved like the core's (command line, env, ini)."""
    namespace = getattr(config, "known_args_namespace", None) or config.option
    cli = {o.name: getattr(namespace, o.name, None) for o in SERVICE_OPTIONS}
    ini = {o.name: config.getini(o.name) for o in SERVICE_OPTIONS}
    try:
        settings = resolve(cli, ini, os.environ, config.rootpath, options=SERVICE_OPTIONS)
        from ._containers import parse_backends
        from ._redis import check_isolation

        check_isolation(
            settings["seamtest_redis_isolation"], settings.origin("seamtest_redis_isolation")
        )
        if settings["seamtest_no_engine"] not in NO_ENGINE:
            raise ConfigError(
                f"{settings.origin('seamtest_no_engine')} = {settings['seamtest_no_engine']!r}"
                ": choose one of " + ", ".join(NO_ENGINE)
            )
        parse_backends(settings["seamtest_services"], settings.origin("seamtest_services"))
        env_templates(settings)
    except SeamtestError as exc:
        raise pytest.UsageError(f"seamtest: {exc}") from None
    return settings


def env_templates(settings: Settings) -> dict[str, tuple[str, set[str]]]:
    """``seamtest_services_env`` as NAME -> (template, services it reads), checked."""
    origin = settings.origin("seamtest_services_env")
    templates = {}
    for line in settings["seamtest_services_env"]:
        name, sep, template = line.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{origin}: {line!r} is not 'NAME=template'.")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ConfigError(f"{origin}: {line!r}: {exc}") from None
        services = set()
        for field_name in fields:
            service, dot, value = field_name.partition(".")
            if service not in ENV_SERVICES or not dot or not value:
                raise ConfigError(
                    f"{origin}: {line!r} uses {{{field_name}}}; the placeholders are "
                    "{SERVICE.VALUE} with SERVICE one of "
                    + ", ".join(ENV_SERVICES)
                    + ", such as {redis.url}"
                )
            services.add(service)
        templates[name.strip()] = (template.strip(), services)
    return templates


@dataclass
class State:
    """This process's services: settings, the shared records, what it exported."""

    config: pytest.Config
    settings: Settings
    services: Services
    redis_service: Any = None  # _redis.RedisService, made on first use
    exported: list[str] = field(default_factory=list)
    early: list[ServiceRecord] = field(default_factory=list)  # started before the run existed

    @property
    def backends(self) -> dict[str, Any]:
        from ._containers import parse_backends

        return parse_backends(
            self.settings["seamtest_services"], self.settings.origin("seamtest_services")
        )

    def record(self, service: Service) -> ServiceRecord:
        """``service``'s record: from its configured backend, started once per run."""
        from ._containers import backend_for, start_container

        backend = backend_for(service.name, self.backends)
        run = self.services.run
        if backend.kind == "container":
            return self.services.get(
                service.name,
                lambda: start_container(service, backend.image, owner_pid=run.owner_pid),
            )
        return self.services.get(
            service.name, lambda: ServiceProcess(service, owner_pid=run.owner_pid).start()
        )

    def redis(self) -> ServiceRecord:
        """The run's Redis: named by URL, a container, or a local binary."""
        from ._containers import backend_for, start_container
        from ._redis import RedisService, external_record, find_redis, parse_redis_url

        if self.redis_service is None:
            self.redis_service = RedisService()
        service: RedisService = self.redis_service
        settings = self.settings
        run = self.services.run
        url = settings["seamtest_redis_url"]
        start: Callable[[], ServiceRecord]
        if url:
            origin = settings.origin("seamtest_redis_url")
            core = self.config.stash[SESSION].settings
            address = parse_redis_url(
                url, allow_remote=core["seamtest_allow_remote"], origin=origin
            )
            start = lambda: external_record(address, origin)  # noqa: E731
        elif backend_for("redis", self.backends).kind == "container":
            image = backend_for("redis", self.backends).image
            start = lambda: start_container(service, image, owner_pid=run.owner_pid)  # noqa: E731
        else:
            binary = find_redis(
                settings["seamtest_redis_bin"], settings.origin("seamtest_redis_bin")
            )
            service.binary = binary
            start = lambda: ServiceProcess(  # noqa: E731
                service, owner_pid=run.owner_pid, binary=binary.path
            ).start()
        return self.services.get("redis", start)

    def by_name(self, name: str) -> ServiceRecord:
        from ._containers import KNOWN

        if name == "redis":
            return self.redis()
        return self.record(KNOWN[name]())


STATE = pytest.StashKey[State]()


def state_of(config: pytest.Config) -> State:
    if STATE not in config.stash:
        session = config.stash[SESSION]
        config.stash[STATE] = State(config, service_settings(config), Services(session.run))
    return config.stash[STATE]


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    group = parser.getgroup("seamtest")
    for option in SERVICE_OPTIONS:
        parser.addini(option.name, option.help, type=option.type, default=option.default)  # type: ignore[arg-type]
        if option.cli:
            group.addoption(option.flag, dest=option.name, default=None, help=option.help)
    pluginmanager.register(EnvExport(), "seamtest-services-env")


def _is_worker() -> bool:
    return RUN_ENV in os.environ or "PYTEST_XDIST_WORKER" in os.environ


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, None, None]:
    """Before the core reads seamtest_url: start the PostgreSQL container if chosen."""
    settings = service_settings(early_config)
    from ._containers import backend_for, parse_backends

    backends = parse_backends(settings["seamtest_services"], settings.origin("seamtest_services"))
    backend = backend_for("postgres", backends)
    namespace = early_config.known_args_namespace
    url_set = (
        getattr(namespace, "seamtest_url", None)
        or os.environ.get("SEAMTEST_URL")
        or early_config.getini("seamtest_url")
    )
    early: ServiceRecord | None = None
    if backend.kind == "container" and not url_set and not _is_worker():
        from ._containers import PostgresContainer, start_container

        try:
            early = start_container(PostgresContainer(), backend.image, owner_pid=os.getpid())
        except SeamtestError as exc:
            raise pytest.UsageError(f"seamtest: postgres = container: {exc}") from None
        os.environ["SEAMTEST_URL"] = early.url  # the core and the workers read it
    try:
        result = yield
    except BaseException:
        if early is not None:
            stop_record(early)
        raise
    if early is not None:
        state = state_of(early_config)
        state.early.append(early)
        state.exported.append("SEAMTEST_URL")
    return result


class EnvExport:
    """``seamtest_services_env``, after the core made the session, before conftests."""

    def pytest_load_initial_conftests(self, early_config: pytest.Config) -> None:
        state = state_of(early_config)
        templates = env_templates(state.settings)
        from .plugin import _is_controller

        if not templates or _is_controller(early_config.known_args_namespace):
            return
        try:
            records = {
                name: _env_view(state, state.by_name(name))
                for name in sorted({s for _, used in templates.values() for s in used})
            }
            for name, (template, _used) in templates.items():
                os.environ[name] = template.format(**records)
                state.exported.append(name)
        except (SeamtestError, AttributeError) as exc:
            raise pytest.UsageError(f"seamtest: seamtest_services_env: {exc}") from None


def _env_view(state: State, record: ServiceRecord) -> ServiceRecord:
    """Redis under flush isolation: ``{redis.url}`` names this worker's own database."""
    if record.name != "redis" or state.settings["seamtest_redis_isolation"] != "flush":
        return record
    from ._redis import address_of

    db = TestInfo("", state.config.stash[SESSION].worker).worker_number + 1
    values = {**record.values, "url": address_of(record).url(db), "db": str(db)}
    return dataclasses.replace(record, values=values)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "seamtest(redis='flush'|'prefix'): Redis isolation for this test: its worker's "
        "database flushed around it, or a key prefix of its own.",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = state_of(config)
    settings = state.settings
    isolation = (
        f"isolation {settings['seamtest_redis_isolation']} "
        f"(from {settings.source('seamtest_redis_isolation')})"
    )
    if settings["seamtest_redis_url"]:
        where = f"{settings['seamtest_redis_url'].split('@')[-1]} " + (
            f"(from {settings.source('seamtest_redis_url')})"
        )
    else:
        from ._containers import backend_for

        backend = backend_for("redis", state.backends)
        if backend.kind == "container":
            where = f"container {backend.image or 'redis:7-alpine'} (from seamtest_services)"
        else:
            from ._redis import find_redis

            try:
                where = find_redis(
                    settings["seamtest_redis_bin"], settings.origin("seamtest_redis_bin")
                ).describe()
            except SeamtestError:
                where = "no local server found (tests that use Redis will say how to fix it)"
    return [f"  redis: {where}, started on first use; {isolation}"]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(SESSION, None)
    if session is None or not session.run.is_owner:
        return
    state = config.stash.get(STATE, None)
    records = started_records(session.run) + (state.early if state else [])
    if not records:
        return
    terminalreporter.section("seamtest services")
    for record in records:
        terminalreporter.write_line(
            f"{record.name}: {record.description}; started in {record.seconds * 1000:.0f} ms"
        )


@pytest.hookimpl(tryfirst=True)  # before the core's, which removes the run directory
def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    session = config.stash.get(SESSION, None)
    if session is None or not session.run.is_owner:
        return
    problems = stop_all(session.run)
    if state is not None:
        for record in state.early:
            try:
                stop_record(record)
            except Exception as exc:
                problems.append(f"stopping {record.name}: {type(exc).__name__}: {exc}")
        for name in state.exported:
            os.environ.pop(name, None)
    for problem in problems:
        sys.stderr.write(f"seamtest: {problem}\n")


# -- fixtures -----------------------------------------------------------------------------------
def _test_info(request: pytest.FixtureRequest, **options: Any) -> TestInfo:
    session = request.config.stash[SESSION]
    return TestInfo(request.node.nodeid, session.worker, session.run.run_id, options)


def _or_skip(state: State, fetch: Callable[[], ServiceRecord]) -> ServiceRecord:
    try:
        return fetch()
    except NoContainerEngine as exc:
        if state.settings["seamtest_no_engine"] == "skip":
            pytest.skip(f"seamtest: {exc}")
        raise


def redis_isolation(item: pytest.Item, settings: Settings) -> tuple[str, str]:
    """The item's Redis isolation and where it came from (marker, else the setting)."""
    from ._redis import check_isolation

    for marker in item.iter_markers("seamtest"):
        if "redis" in marker.kwargs:
            origin = "@pytest.mark.seamtest(redis=...)"
            return check_isolation(marker.kwargs["redis"], origin), "marker"
    return settings["seamtest_redis_isolation"], settings.source("seamtest_redis_isolation")


@pytest.fixture
def _seamtest_redis(request: pytest.FixtureRequest) -> Iterator[ServiceRecord]:
    state = state_of(request.config)
    item = request.node
    assert isinstance(item, pytest.Item)
    try:
        mode, _source = redis_isolation(item, state.settings)
    except ConfigError as exc:
        raise pytest.UsageError(f"seamtest: {item.nodeid}: {exc}") from None
    record = _or_skip(state, state.redis)
    with state.redis_service.isolate(record, _test_info(request, redis=mode)) as isolated:
        yield isolated


@pytest.fixture
def redis_url(_seamtest_redis: ServiceRecord) -> str:
    """URL of this test's Redis database (the run's server starts on first use, ~10 ms)."""
    return _seamtest_redis.url


@pytest.fixture
def redis_prefix(_seamtest_redis: ServiceRecord) -> str:
    """This test's key prefix under ``redis="prefix"`` isolation; "" under flush."""
    return _seamtest_redis.values.get("prefix", "")


def _redis_py(module: str = "redis") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ServiceError(
            "the redis and aredis fixtures need redis-py: pip install 'redis>=5' "
            "(or pip install 'seamtest[redis]'); redis_url needs nothing"
        ) from None


def _client_options(record: ServiceRecord) -> dict[str, Any]:
    values = record.values
    options: dict[str, Any] = {
        "db": int(values.get("db", "0")),
        "password": values.get("password") or None,
        "username": values.get("username") or None,
    }
    if values.get("socket"):
        options["unix_socket_path"] = values["socket"]
    else:
        options.update(host=values["host"], port=int(values["port"]), ssl=values.get("tls") == "1")
    return options


@pytest.fixture
def redis(_seamtest_redis: ServiceRecord) -> Iterator[Any]:
    """A ``redis.Redis`` client on this test's database (one connection, opened on use)."""
    client = _redis_py().Redis(**_client_options(_seamtest_redis))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def aredis(_seamtest_redis: ServiceRecord) -> Iterator[Any]:
    """A ``redis.asyncio.Redis`` client on this test's database, for asyncio and anyio.

    A plain fixture: the client connects in whichever event loop the test runs in. Its
    connections are closed at teardown in that loop when it is still open, else dropped.
    """
    client = _redis_py("redis.asyncio").Redis(**_client_options(_seamtest_redis))
    try:
        yield client
    finally:
        _close_async(client)


def _close_async(client: Any) -> None:
    """Close an async client's connections without the loop that opened them running.

    Under pytest-asyncio the test's loop is closed before this fixture's teardown; redis-py
    would then warn about each unclosed connection when it is collected, and seamtest's
    users run with warnings as errors. A loop that is still open closes them itself.
    """
    pool = client.connection_pool
    for connection in [*pool._available_connections, *pool._in_use_connections]:
        writer = getattr(connection, "_writer", None)
        if writer is None:
            continue
        transport = writer.transport
        loop = getattr(transport, "_loop", None)
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(connection.disconnect())
            continue
        # The loop is gone, and with it any way to close the transport properly: close its
        # socket and mark it closed, as the loop would have.
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            sock.close()
            transport._sock = None
        transport._closing = True
        connection._reader = connection._writer = None


def service_fixture(service: Service, *, name: str | None = None) -> Any:
    """A fixture giving each test ``service``'s record (started once per run, isolated).

    In a conftest: ``mailer = service_fixture(MailCatcher())``; a test asking for
    ``mailer`` gets a :class:`~seamtest._services.ServiceRecord` (``mailer.url``, ...).
    """

    @pytest.fixture(name=name or service.name)
    def _service(request: pytest.FixtureRequest) -> Iterator[ServiceRecord]:
        state = state_of(request.config)
        record = _or_skip(state, lambda: state.record(service))
        with service.isolate(record, _test_info(request)) as isolated:
            yield isolated

    return _service


@pytest.fixture
def kafka_bootstrap_servers(request: pytest.FixtureRequest) -> str:
    """Kafka's bootstrap servers (container backend only; skipped without an engine)."""
    state = state_of(request.config)
    return _or_skip(state, lambda: state.by_name("kafka")).url


@pytest.fixture
def elasticsearch_url(request: pytest.FixtureRequest) -> str:
    """Elasticsearch's URL (container backend only; skipped without an engine)."""
    state = state_of(request.config)
    return _or_skip(state, lambda: state.by_name("elasticsearch")).url
