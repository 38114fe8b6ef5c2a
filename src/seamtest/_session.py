"""One pytest process's view of seamtest: server, template, strategies and statistics.

Everything is lazy: a run whose tests never ask for a database starts no server. The
first request starts (or finds) the run's server, builds (or finds) the template, and
picks the isolation strategy; later requests reuse them.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The database machinery (and psycopg) is imported on first use, not when pytest loads
# the plugin: a run whose tests never ask for a database does not pay for it.
if TYPE_CHECKING:
    from ._isolation import DatabaseRequest, Isolation, Outcome
    from ._provision import Provisioner, Template, TestDatabase

from . import _watchdog
from ._binaries import find_binaries
from ._cluster import cache_dir
from ._config import ISOLATIONS, Settings, env_templates, server_settings
from ._embedded import TEST_SETTINGS, EmbeddedServer, log_tail, stop_recorded
from ._fingerprint import EXTENSIONS_QUERY, extensions_fingerprint, fingerprint_extras
from ._kept import collect_kept, kept_root
from ._migrations import FixtureFiles, template_sources
from ._privilege import RunAs, choose_run_as
from ._probes import ProbeCache
from ._reuse import find_running
from ._run import Run, ServerRecord
from ._server import ExternalServer, parse_url
from ._unique import counter
from .errors import ConfigError, DatabaseError, MigrationError, SeamtestError, ServerError


@dataclass
class Stats:
    """What seamtest did in one process; workers send theirs to the controller."""

    server: dict[str, Any] = field(default_factory=dict)
    templates: list[dict[str, Any]] = field(default_factory=list)
    setup_seconds: list[float] = field(default_factory=list)
    teardown_seconds: list[float] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (test id, url)
    leaks: list[str] = field(default_factory=list)
    pool: dict[str, int] = field(default_factory=dict)

    def add_pool(self, counts: dict[str, int]) -> None:
        for key, value in counts.items():
            self.pool[key] = self.pool.get(key, 0) + value

    notes: list[str] = field(default_factory=list)

    def merge(self, other: dict[str, Any]) -> None:
        if other.get("server") and not self.server.get("started_here"):
            self.server = other["server"]
        self.templates += [t for t in other.get("templates", []) if t not in self.templates]
        self.setup_seconds += other.get("setup_seconds", [])
        self.teardown_seconds += other.get("teardown_seconds", [])
        self.kept += [(str(test), str(url)) for test, url in other.get("kept", [])]
        self.notes += other.get("notes", [])
        self.leaks += other.get("leaks", [])
        self.add_pool(other.get("pool", {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def percentiles(values: list[float]) -> str:
        if not values:
            return "-"
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        return f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms"


class Session:
    """seamtest inside one pytest process (the only one, or one xdist worker)."""

    def __init__(self, settings: Settings, run: Run, worker: str) -> None:
        self.settings = settings
        self.run = run
        self.worker = worker
        self.stats = Stats()
        self._record: ServerRecord | None = None
        self._provisioner: Provisioner | None = None
        self._template: Template | None = None
        self._strategies: dict[str, Isolation] = {}
        self._session_db: TestDatabase | None = None
        self._server_gone: ServerError | None = None
        self._template_error: SeamtestError | None = None
        self._server_error: SeamtestError | None = None
        #: The warm-up thread while it runs (see warm_up), and whether it was called off.
        self._warming: threading.Thread | None = None
        self._warmed = threading.Event()
        self._cancelled = False
        self.fixture_files = FixtureFiles(settings.rootdir / settings["seamtest_fixtures"])
        self.unique_counter = counter()
        #: How many collected tests load each fixture set (layers pay from the second).
        self.fixture_uses: collections.Counter[tuple[Path, ...]] = collections.Counter()

    @property
    def worker_number(self) -> int:
        """0 outside xdist, N for worker gwN."""
        digits = "".join(ch for ch in self.worker if ch.isdigit())
        return int(digits) if digits else 0

    # -- server --------------------------------------------------------------------------
    def _start_server(self) -> ServerRecord:
        url = self.settings["seamtest_url"]
        if url:
            endpoint = parse_url(
                url,
                allow_remote=self.settings["seamtest_allow_remote"],
                origin=self.settings.origin("seamtest_url"),
            )
            return ServerRecord(ExternalServer(endpoint).start())
        if self.settings["seamtest_reuse"]:
            running = find_running(self.settings["seamtest_bin_dir"])
            if running is not None:
                self.stats.server = {
                    "started_here": True,
                    "description": f"{running.endpoint.description}, started by 'seamtest up'",
                    "reused": True,
                }
                return ServerRecord(running.endpoint)  # no pid: this run does not stop it
        binaries = find_binaries(
            self.settings["seamtest_bin_dir"], self.settings.origin("seamtest_bin_dir")
        )
        server = EmbeddedServer(
            binaries,
            run_as=choose_run_as(self.settings["seamtest_server_user"]),
            owner_pid=self.run.owner_pid,
            settings=server_settings(self.settings),
            watch_dirs=(self.run.path,),
        )
        endpoint = server.start()
        assert server.process is not None
        timings = dict(server.timings)
        self.stats.server = {
            "started_here": True,
            "description": server.binaries.describe(),
            "run_as": server.run_as.name if server.run_as else None,
            "timings": timings,
            "cluster_built": server.cluster_built,
        }
        return ServerRecord(
            endpoint,
            server.process.pid,
            str(server.runtime_dir),
            timings,
            str(server.binaries.bin_dir),
        )

    # -- warm-up -------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Start the server, build the template and make the default strategy ready in a
        background thread, while pytest runs what comes before the first database test
        (other tests, fixtures, reporting): that test finds them done, or waits less."""
        self._warmed = threading.Event()
        self._warming = threading.Thread(target=self._warm, name="seamtest-warm-up", daemon=True)
        self._warming.start()

    def _warm(self) -> None:
        try:
            self.template()
            if not self._cancelled:
                self.strategy(self.settings.isolation).prepare()
        except Exception:  # the first test does again what failed, and says why
            pass
        finally:
            self._warmed.set()

    def _settled(self, *, cancel: bool = False) -> None:
        """Wait for the warm-up to finish (unless this is it): one thread builds at a time.
        With ``cancel`` (the run is ending, Ctrl-C included) stop its work instead: its
        build fails and drops its scratch database, as one in the main thread would."""
        if self._warming is None or self._warming is threading.current_thread():
            return
        self._cancelled = cancel
        # An Event, not Thread.join: a join that Ctrl-C interrupts leaves the thread
        # looking finished (is_alive() False) on Python before 3.13.
        while not self._warmed.is_set():
            if cancel and self._provisioner is not None:
                import psycopg

                with contextlib.suppress(psycopg.Error):
                    self._provisioner.cancel_builds()
            self._warmed.wait(0.1 if cancel else None)
        self._warming = None

    @property
    def record(self) -> ServerRecord:
        self._settled()
        if self._server_error is not None:  # tried once, failed: no test waits for it again
            raise self._server_error
        if self._record is None:
            started = time.perf_counter()
            try:
                self._record = self.run.server(self._start_server)
            except SeamtestError as exc:
                self._server_error = exc
                raise
            if not self.stats.server:
                self.stats.server = {"started_here": False}
            self.stats.server["wait"] = time.perf_counter() - started
        return self._record

    @property
    def provisioner(self) -> Provisioner:
        self._settled()
        if self._provisioner is None:
            from ._provision import Provisioner

            self._provisioner = Provisioner(
                self.record.endpoint,
                prefix=self.settings["seamtest_db_prefix"],
                run_id=self.run.run_id,
            )
            self._provisioner.migration_timeout = self.settings.migration_timeout
            self._provisioner.probe_cache = ProbeCache(cache_dir() / "clone-probes.json")
            if self.run.is_owner:
                self._check_shared_server(self._provisioner)
                self._provisioner.collect_garbage(self.settings.kept_ttl_seconds)
                collect_kept(self.settings.kept_ttl_seconds / 3600)
        return self._provisioner

    def _check_shared_server(self, provisioner: Provisioner) -> None:
        """A server with others' databases on it needs a prefix that is the user's choice."""
        if not self.settings["seamtest_url"] or self.settings.source("seamtest_db_prefix") != (
            "default"
        ):
            return
        foreign = provisioner.foreign()
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise ConfigError(
                f"the server at {self.settings.origin('seamtest_url')} holds databases "
                f"seamtest did not create ({shown}). seamtest creates and drops databases "
                "there; to confirm it may, name a prefix of its own for them: "
                "seamtest_db_prefix = 'seamtest_ci_' (ini) or SEAMTEST_DB_PREFIX."
            )

    # -- templates and databases -------------------------------------------------------
    def template(self) -> Template:
        self._settled()
        if self._template_error is not None:  # built once, failed: no test gets a retry
            raise self._template_error
        try:
            return self._ensure_template()
        except (MigrationError, ConfigError) as exc:
            self._template_error = exc
            raise

    def _ensure_template(self) -> Template:
        if self._template is None:
            sources = template_sources(self.settings)
            from psycopg import sql

            extensions = extensions_fingerprint(self.provisioner.execute(sql.SQL(EXTENSIONS_QUERY)))
            self._template = self.provisioner.ensure_template(
                sources,
                fingerprint_extras(self.settings, extensions),
                rebuild=bool(self.settings["seamtest_rebuild"]),
            )
            self._record_template(self._template)
        return self._template

    def _record_template(self, template: Template, *, layer: bool = False) -> None:
        self.stats.templates.append(
            {
                "name": template.name,
                "built": template.built,
                "why": template.why,
                "seconds": template.seconds,
                "sources": list(template.sources),
                "worker": self.worker,
                "layer": layer,
            }
        )

    def strategy(self, name: str) -> Isolation:
        self._settled()
        if name not in self._strategies:
            from ._isolation import DatabasePerTest
            from ._shared import ResetIsolation, TransactionIsolation, UniqueIsolation

            keep = bool(self.settings["seamtest_keep_failed"])
            strategy: Isolation
            if name == "database":
                strategy = DatabasePerTest(
                    self.provisioner,
                    self.template,
                    keep_failed=keep,
                    pool_size=self.settings.pool_size,
                    recycle=bool(self.settings["seamtest_recycle"]),
                    worker=self.worker,
                    fixture_uses=self.fixture_uses,
                )
            elif name == "transaction":
                strategy = TransactionIsolation(self.provisioner, self.template, self.worker)
            elif name == "reset":
                strategy = ResetIsolation(
                    self.provisioner, self.template, self.worker, keep_failed=keep
                )
            elif name == "unique":
                strategy = UniqueIsolation(self.provisioner, self.template, self.run)
            else:
                raise ConfigError(f"isolation {name!r}: choose one of {', '.join(ISOLATIONS)}")
            self._strategies[name] = strategy
        return self._strategies[name]

    @contextlib.contextmanager
    def explaining(self) -> Iterator[None]:
        """Turn a lost server or a full connection table into an error that says so."""
        import psycopg

        if self._server_gone is not None:
            raise self._server_gone
        try:
            yield
        except psycopg.OperationalError as exc:
            # A refused connect carries no SQLSTATE class, only libpq's text.
            if exc.sqlstate == "53300" or "too many clients" in str(exc):
                raise self._too_many_connections() from exc
            record = self._record
            if record is None or record.pid is None or _watchdog.alive(record.pid):
                raise
            log = Path(record.runtime_dir or ".") / "server.log"
            self._server_gone = ServerError(
                f"the embedded PostgreSQL server (pid {record.pid}) has stopped; the tests "
                f"that remain cannot get databases. Server log {log}, last lines:\n"
                f"{log_tail(log)}"
            )
            raise self._server_gone from exc

    def _too_many_connections(self) -> DatabaseError:
        import psycopg

        detail = ""
        try:  # superuser_reserved_connections leaves seamtest's superuser a way in
            with self.record.endpoint.connect(connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT current_setting('max_connections')::int, count(*) "
                    "FROM pg_stat_activity WHERE backend_type = 'client backend'"
                ).fetchone()
            if row:
                detail = f" ({row[1]} of max_connections = {row[0]} in use)"
        except psycopg.Error:  # every slot taken, the reserved ones too
            if not self.settings["seamtest_url"]:
                limit = {**TEST_SETTINGS, **server_settings(self.settings)}["max_connections"]
                detail = f" (max_connections = {limit}, all in use)"
        return DatabaseError(
            f"the server has no connection slots left{detail}. Each process keeps "
            f"seamtest_pool_size ({self.settings.pool_size}) + 3 connections besides the "
            "tests' own. Fix: raise max_connections (seamtest_server_settings = "
            "max_connections=400 for the embedded server), run fewer xdist workers, lower "
            "seamtest_pool_size, or close connections your tests open."
        )

    def acquire(self, request: DatabaseRequest) -> TestDatabase:
        strategy = self.strategy(request.isolation)
        self.template()  # server start and template build are reported on their own
        started = time.perf_counter()
        database = strategy.acquire(request)
        self.stats.setup_seconds.append(time.perf_counter() - started)
        return database

    def release(self, database: TestDatabase, request: DatabaseRequest, *, failed: bool) -> Outcome:
        outcome = self.strategy(request.isolation).release(database, request, failed=failed)
        self.stats.teardown_seconds.append(outcome.seconds)
        if outcome.kept_url:
            self.stats.kept.append((request.nodeid, outcome.kept_url))
        self.stats.leaks += [f"{request.nodeid}: {leak}" for leak in outcome.leaks]
        return outcome

    # -- the session database, for suites that read settings at import time -----------
    def session_database(self) -> TestDatabase:
        """A migrated database for this process, for ``seamtest_env`` (one per worker)."""
        if self._session_db is None:
            template = self.template()
            name = self.provisioner.session_database_name(self.worker, template.name)
            self._session_db = self.provisioner.create(name, template.name, session=self.worker)
        return self._session_db

    def export_environment(self) -> dict[str, str]:
        """Set ``seamtest_env``'s variables and the standard ``PG*`` ones in os.environ."""
        database = self.session_database()
        endpoint = database.endpoint
        values = {
            "url": database.url,
            "host": endpoint.host,
            "port": str(endpoint.port),
            "user": endpoint.user,
            "password": endpoint.password or "",
            "dbname": database.name,
        }
        exported = {
            "PGHOST": endpoint.host,
            "PGPORT": str(endpoint.port),
            "PGUSER": endpoint.user,
            "PGDATABASE": database.name,
        }
        if endpoint.password:
            exported["PGPASSWORD"] = endpoint.password
        for name, template in env_templates(self.settings).items():
            exported[name] = template.format(**values)
        os.environ.update(exported)
        return exported

    # -- the end -------------------------------------------------------------------------
    def close(self) -> None:
        """Give back this process's databases (the server stays until the run ends)."""
        self._settled(cancel=True)
        for strategy in self._strategies.values():
            from ._isolation import DatabasePerTest  # imported already: a strategy exists

            strategy.close()
            if isinstance(strategy, DatabasePerTest):
                for pool in strategy.pools.values():
                    self.stats.add_pool(pool.stats.as_dict())
                    self.stats.notes += pool.notes()
                for layer in strategy.layers:
                    self._record_template(layer, layer=True)
        self._strategies.clear()
        if self._provisioner is not None:
            if self._session_db is not None:
                self._provisioner.drop_later(self._session_db.name, "session database")
            self._provisioner.close()
            self.stats.notes += self._provisioner.notes()
            self._provisioner = None

    def finish_run(self, *, keep: bool) -> Path | None:
        """Owner only: stop the run's server. Returns where kept data went, if anywhere."""
        self._settled(cancel=True)
        record = self.run.started_server()
        if record is not None and self.run.recorded("unique-database"):
            # The unique strategy's database belongs to the whole run (every worker).
            from ._shared import drop_unique

            drop_unique(self.provisioner, self.run)
            self.close()
        kept_dir = None
        if record is not None and record.pid is not None and record.runtime_dir:
            runtime = Path(record.runtime_dir)
            stop_recorded(record.pid, runtime, keep_data=keep)
            if keep:
                kept_dir = self._move_kept(record, runtime)
        self.run.remove()
        return kept_dir

    def kept_target(self) -> Path:
        """Where the embedded server's data goes when the run kept databases."""
        return kept_root() / self.run.run_id

    def _move_kept(self, record: ServerRecord, runtime: Path) -> Path:
        target = self.kept_target()
        target.parent.mkdir(parents=True, exist_ok=True)
        owner = runtime.stat()
        shutil.move(str(runtime), target)  # a copy across filesystems (tmpfs -> cache)
        if os.geteuid() == 0:  # the copy belongs to root; give it back to the server's user
            RunAs("", owner.st_uid, owner.st_gid).chown_tree(target)
        (target / _watchdog.KEEP_MARKER).unlink(missing_ok=True)
        (target / "seamtest.json").write_text(
            json.dumps(
                {
                    "run": self.run.run_id,
                    "endpoint": json.loads(record.endpoint.to_json()),
                    "bin_dir": record.bin_dir,
                    "kept": self.stats.kept,
                    "stopped": time.time(),
                },
                indent=2,
            )
        )
        return target
