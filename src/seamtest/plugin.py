"""seamtest's pytest hooks: options, roles under xdist, reports. Fixtures live in
``seamtest.fixtures``.

Roles: the process pytest was started as owns the run (a run directory and, lazily, the
server). Under ``-n N`` that is the xdist controller, which runs no tests: its workers
adopt its run through the environment and share its server and templates.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator
from typing import Any

import pytest

from . import __version__
from ._binaries import find_binaries
from ._config import BY_NAME, OPTIONS, Settings, resolve
from ._run import Run
from ._session import Session, Stats
from .errors import FixtureError, SeamtestError
from .fixtures import ACTIVE, REPORTS, SESSION, marker_for

#: Modules with fixtures (and their own hooks), registered as plugins alongside this one.
pytest_plugins = [
    "seamtest.fixtures",
    "seamtest._drivers",
    "seamtest._services_plugin",
    "seamtest._apps_plugin",
    "seamtest._checks_plugin",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seamtest", "seamtest: real PostgreSQL for every test")
    for option in OPTIONS:
        parser.addini(option.name, option.help, type=option.type, default=option.default)  # type: ignore[arg-type]
        if not option.cli:
            continue
        if option.type == "bool":  # --seamtest-x switches it on, --seamtest-no-x off
            group.addoption(
                option.flag,
                dest=option.name,
                action="store_const",
                const=True,
                default=None,
                help=option.help,
            )
            group.addoption(
                option.flag.replace("--seamtest-", "--seamtest-no-", 1),
                dest=option.name,
                action="store_const",
                const=False,
                default=None,
                help=f"The opposite of {option.flag}.",
            )
        else:
            group.addoption(option.flag, dest=option.name, default=None, help=option.help)


def _settings(config: pytest.Config, namespace: Any) -> Settings:
    cli = {o.name: getattr(namespace, o.name, None) for o in OPTIONS}
    # getini() returns the default when the ini is silent; only a different value is the
    # ini's (the report header says where each value came from).
    ini = {o.name: config.getini(o.name) for o in OPTIONS}
    ini = {name: value for name, value in ini.items() if value != BY_NAME[name].default}
    try:
        return resolve(cli, ini, os.environ, config.rootpath)
    except SeamtestError as exc:
        raise pytest.UsageError(f"seamtest: {exc}") from None


def _is_controller(namespace: Any) -> bool:
    return getattr(namespace, "numprocesses", None) not in (None, 0, "0") or getattr(
        namespace, "dist", "no"
    ) not in ("no", None)


def _make_session(config: pytest.Config, namespace: Any) -> Session:
    settings = _settings(config, namespace)
    run = Run.adopt_from_environment()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main") if run else "main"
    if run is None:
        run = Run.create()
        if _is_controller(namespace):
            run.export_for_workers()
    return Session(settings, run, worker)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Create the session; with ``seamtest_env``, export the variables before conftests."""
    namespace = early_config.known_args_namespace
    session = _make_session(early_config, namespace)
    early_config.stash[SESSION] = session
    # The xdist controller imports conftest files too, so it exports as well (its own
    # session database, which no test uses but a conftest may connect to on import).
    if session.settings["seamtest_env"]:
        try:
            session.export_environment()
        except SeamtestError as exc:
            if session.run.is_owner:
                session.finish_run(keep=False)
            raise pytest.UsageError(f"seamtest: {exc}") from exc


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "seamtest(fixtures=[...], isolation=...): SQL fixture files to load into the test's "
        "database, in order; the isolation strategy for this test.",
    )
    if SESSION not in config.stash:  # loaded late (-p seamtest.plugin, pytester inline runs)
        config.stash[SESSION] = _make_session(config, config.option)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "seamtest-xdist")


def _warms_up(config: pytest.Config, items: list[pytest.Item]) -> bool:
    """Whether this process readies the server while the first tests run: some test
    needs a database, and tests run here (not the xdist controller, not --collect-only
    and the like)."""
    option = config.option
    worker = hasattr(config, "workerinput")  # workers inherit the controller's -n
    no_tests = ("collectonly", "showfixtures", "show_fixtures_per_test", "setupplan")
    return (
        bool(config.stash[SESSION].settings["seamtest_warm_up"])
        and (worker or not _is_controller(option))
        and not any(getattr(option, name, False) for name in no_tests)
        and any("_seamtest_database" in getattr(item, "fixturenames", ()) for item in items)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every seamtest marker now, so a typo fails the run before any test runs."""
    errors = []
    uses = config.stash[SESSION].fixture_uses
    for item in items:
        try:
            fixtures = marker_for(item).get("fixtures")
        except (TypeError, SeamtestError) as exc:
            errors.append(f"{item.nodeid}: @pytest.mark.seamtest: {exc}")
            continue
        if fixtures and "_seamtest_database" in getattr(item, "fixturenames", ()):
            with contextlib.suppress(FixtureError):  # the test's setup names the paths
                uses[tuple(config.stash[SESSION].fixture_files.resolve(fixtures))] += 1
    if errors:
        raise pytest.UsageError("seamtest: bad marker arguments:\n  " + "\n  ".join(errors))


def pytest_collection_finish(session: pytest.Session) -> None:
    if _warms_up(session.config, session.items):  # the items left after -k and -m
        session.config.stash[SESSION].warm_up()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    active = item.stash.get(ACTIVE, None)
    if report.failed and active and report.when != "teardown":
        database, request = active
        url = item.config.stash[SESSION].strategy(request.isolation).kept_url(database, request)
        if url:
            text = f"kept database {url.rsplit('/', 1)[-1]}\n    psql '{url}'"
        else:
            text = (
                f"isolation={request.isolation!r}: this test's database is not kept "
                "(rolled back or shared); mark it isolation='database' to keep it"
            )
        report.sections.append(("seamtest", text))
    return report


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash[SESSION]
    settings = session.settings
    lines = [f"seamtest {__version__}"]
    if settings["seamtest_url"]:
        lines.append(
            f"  server: {settings['seamtest_url'].split('@')[-1]} "
            f"(from {settings.source('seamtest_url')})"
        )
    else:
        try:
            binaries = find_binaries(
                settings["seamtest_bin_dir"], settings.origin("seamtest_bin_dir")
            )
            when = (
                "started once a collected test needs it"
                if settings["seamtest_warm_up"]
                else "started on first use"
            )
            lines.append(f"  server: embedded, {when}; {binaries.describe()}")
        except SeamtestError as exc:
            lines.append(f"  server: embedded, but {exc}")
        if os.geteuid() == 0:
            lines.append(
                "  running as root: the server runs as "
                f"{settings['seamtest_server_user'] or 'postgres (or nobody)'}"
            )
    migrations = ", ".join(settings["seamtest_migrations"]) or "none"
    lines.append(
        f"  migrations: {migrations} (from {settings.source('seamtest_migrations')}); "
        f"isolation: {settings.isolation} (from {settings.source('seamtest_isolation')})"
    )
    return lines


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    seamtest = config.stash[SESSION]
    seamtest.close()
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["seamtest_stats"] = json.dumps(seamtest.stats.to_dict())


def pytest_unconfigure(config: pytest.Config) -> None:
    seamtest = config.stash.get(SESSION, None)
    if seamtest is None:
        return
    seamtest.close()
    if seamtest.run.is_owner:
        keep = bool(seamtest.stats.kept) and seamtest.settings["seamtest_keep_failed"]
        seamtest.finish_run(keep=keep)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    seamtest = config.stash[SESSION]
    stats: Stats = seamtest.stats
    if not stats.setup_seconds and not stats.server:
        return
    write = terminalreporter.write_line
    terminalreporter.section("seamtest")
    server = stats.server
    if server.get("description"):
        timings = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in server.get("timings", {}).items())
        write(f"server: {server['description']}" + (f"; {timings}" if timings else ""))
    for template in stats.templates:
        verb = "built" if template["built"] else "reused"
        if template.get("layer"):
            verb = "layer " + verb
        why = template.get("why", "")
        because = f", {why}" if template["built"] and why and not template.get("layer") else ""
        sources = ", ".join(template["sources"]) or "no migrations"
        write(
            f"template {template['name']}: {verb} in {template['seconds'] * 1000:.0f} ms"
            f"{because} ({template['worker']}; {sources})"
        )
    if stats.setup_seconds:
        write(
            f"databases: {len(stats.setup_seconds)} for tests; setup "
            f"{Stats.percentiles(stats.setup_seconds)}; teardown "
            f"{Stats.percentiles(stats.teardown_seconds)}"
        )
    if stats.pool:
        pool = stats.pool
        write(
            f"pool: {pool.get('hits', 0)} hits, {pool.get('misses', 0)} misses; "
            f"{pool.get('cloned', 0)} cloned, {pool.get('recycled', 0)} recycled, "
            f"{pool.get('discarded', 0)} discarded"
        )
    for nodeid, url in stats.kept:
        write(f"kept {nodeid}: {url}")
    record = seamtest.run.started_server()
    if stats.kept and record is not None and record.pid is not None:
        write(
            f"the embedded server stops with the run; its data, with the kept databases, "
            f"goes to {seamtest.kept_target()}: 'seamtest kept' lists kept runs and "
            f"'seamtest serve {seamtest.run.run_id}' starts that server again"
        )
    for leak in stats.leaks:
        write(f"leak: {leak}", yellow=True)
    for note in stats.notes:
        write(f"note: {note}", yellow=True)


class XdistHooks:
    """Hooks that exist only when pytest-xdist is installed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        raw = getattr(node, "workeroutput", {}).get("seamtest_stats")
        if raw:
            self.config.stash[SESSION].stats.merge(json.loads(raw))
