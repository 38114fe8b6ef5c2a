"""Databases seamtest creates: templates keyed by content, clones, bookkeeping, drops.

Every database seamtest creates carries its prefix *and* a ``COMMENT ON DATABASE`` that
starts with ``seamtest:`` followed by JSON (what it is, which test, which run). Nothing
without both is ever dropped. Templates are built under a PostgreSQL advisory lock into
a scratch database and published by renaming it, so a half-built template never has the
published name and concurrent workers and runs build each template once.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from . import __version__
from ._fingerprint import config_id, explain_rebuild, schema_digest, template_inputs
from ._migrations import MigrationSource
from ._names import MAX_IDENTIFIER, database_name, digest
from ._probes import ProbeCache
from ._server import Endpoint
from .errors import DatabaseError

COMMENT_TAG = "seamtest:"
#: Advisory-lock class of run leases: every process of a live run holds a shared lock on
#: (LEASE_CLASS, its run's id) through its admin connection, so other runs can tell a
#: live run's databases (never touched) from a crashed run's (collected).
LEASE_CLASS = 0x5EA8
#: The first key of seamtest's two-int advisory locks, so they never collide with an
#: application's single-bigint locks or its own two-int ones ( 0x5EA7 = "SEAT").
LOCK_CLASS = 0x5EA7


@dataclass(frozen=True)
class Template:
    """A published template database and how this run came to have it."""

    name: str
    key: str
    built: bool  # built by this process (False: found ready)
    seconds: float
    sources: tuple[str, ...]
    why: str = ""  # "reused", or why it was built ("0002_x.sql changed", "forced ...")


@dataclass(frozen=True)
class TestDatabase:
    """A database handed to one test."""

    name: str
    endpoint: Endpoint
    template: str | None = None

    @property
    def url(self) -> str:
        """URL over TCP, with the password: what applications and ``psql`` use."""
        return self.endpoint.url(self.name)

    @property
    def conninfo(self) -> str:
        """The fastest way in for seamtest's own connections (unix socket when local)."""
        return self.endpoint.conninfo(self.name)


#: Sessions connected to a database, other than the asking one.
SESSIONS_ON = sql.SQL(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
)


def sessions_on(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(SESSIONS_ON, [name]).fetchone()
    return int(row[0]) if row else 0


def wait_for_zero(count: Callable[[], int], timeout: float) -> int:
    """Poll ``count()`` (backing off from 1 ms to 50 ms) until it is 0 or ``timeout``
    seconds pass; return its last value. Backends leave within milliseconds of their
    client closing, so the first polls are the ones that usually answer."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = count()
        if value == 0 or time.monotonic() > deadline:
            return value
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _lock_id(key: str) -> int:
    """A signed 32-bit lock id from a hex key."""
    return int(key[:8], 16) - (1 << 31)


def _comment(info: dict[str, Any]) -> str:
    return COMMENT_TAG + json.dumps(info, sort_keys=True)


def read_comment(text: str | None) -> dict[str, Any] | None:
    """seamtest's bookkeeping from a database comment, or None if it is not ours."""
    if not text or not text.startswith(COMMENT_TAG):
        return None
    try:
        value = json.loads(text[len(COMMENT_TAG) :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def template_key(sources: Sequence[MigrationSource], server_version: str, user_key: str) -> str:
    """The content hash naming a template: every input that decides what it holds."""
    parts = [
        f"seamtest {__version__}",
        f"server {server_version}",
        f"key {user_key}",
        *(f"{s.describe()} {s.fingerprint()}" for s in sources),
    ]
    return digest("\n".join(parts), 16)


class Provisioner:
    """Creates, tracks and drops the databases of one process (one xdist worker)."""

    def __init__(self, endpoint: Endpoint, *, prefix: str, run_id: str) -> None:
        self.endpoint = endpoint
        self.prefix = prefix
        self.run_id = run_id
        #: Seconds one migration statement (or lock wait) may take before it is cancelled.
        self.migration_timeout = 300.0
        self._admin = endpoint.connect()
        self._admin.execute(
            "SELECT pg_advisory_lock_shared(%s, %s)", [LEASE_CLASS, _lock_id(run_id)]
        )
        self._lock = threading.Lock()
        self._dropper = _Dropper(endpoint, self)
        self._server_version = self._admin.info.server_version
        #: How each template is cloned: measured once per template (see probe_clone).
        self._clone_methods: dict[str, str] = {}
        #: Where probes are remembered across runs (None: each build probes).
        self.probe_cache: ProbeCache | None = None
        #: Scratch databases of builds in progress in this process (see cancel_builds).
        self._building: set[str] = set()

    # -- bookkeeping -------------------------------------------------------------------
    def execute(
        self, query: sql.SQL | sql.Composed, params: Sequence[Any] | None = None
    ) -> list[Any]:
        with self._lock:
            cur = self._admin.execute(query, params)
            return cur.fetchall() if cur.description else []

    def comment_of(self, name: str) -> dict[str, Any] | None:
        rows = self.execute(
            sql.SQL(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
            ),
            [name],
        )
        return read_comment(rows[0][0]) if rows else None

    def exists(self, name: str) -> bool:
        return bool(self.execute(sql.SQL("SELECT 1 FROM pg_database WHERE datname = %s"), [name]))

    def set_comment(self, name: str, info: dict[str, Any]) -> None:
        self.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(_comment(info))
            )
        )

    def _info(self, kind: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "run": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "created": time.time(),
            "version": __version__,
            **extra,
        }

    def wait_unused(self, name: str, timeout: float = 5.0) -> int:
        """Wait until no backend is connected to ``name``; return how many still are."""
        return wait_for_zero(lambda: int(self.execute(SESSIONS_ON, [name])[0][0]), timeout)

    def run_alive(self, run_id: str) -> bool:
        """Whether a process of ``run_id`` still holds its lease on this server."""
        if run_id == self.run_id:
            return True
        try:
            lock = [LEASE_CLASS, _lock_id(run_id)]
        except ValueError:
            return False
        rows = self.execute(sql.SQL("SELECT pg_try_advisory_lock(%s, %s)"), lock)
        if rows and rows[0][0]:
            self.execute(sql.SQL("SELECT pg_advisory_unlock(%s, %s)"), lock)
            return False
        return True

    def ours(self) -> list[tuple[str, dict[str, Any]]]:
        """Every database on the server with seamtest's prefix and bookkeeping."""
        rows = self.execute(
            sql.SQL(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname LIKE %s ORDER BY datname"
            ),
            [self.prefix.replace("_", r"\_") + "%"],
        )
        found = []
        for name, comment in rows:
            info = read_comment(comment)
            if info is not None:
                found.append((str(name), info))
        return found

    def foreign(self) -> list[str]:
        """Databases on the server that are neither PostgreSQL's own nor seamtest's."""
        rows = self.execute(
            sql.SQL(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1"
            )
        )
        return [str(name) for name, comment in rows if read_comment(comment) is None]

    def kept(self) -> list[tuple[str, dict[str, Any]]]:
        """Kept databases (failed tests'), newest first."""
        found = [(name, info) for name, info in self.ours() if info.get("kept")]
        return sorted(found, key=lambda item: -float(item[1]["kept"]))

    def collect_garbage(self, kept_ttl_seconds: float) -> list[str]:
        """Drop what dead runs left (except kept databases younger than the TTL)."""
        dropped = []
        now = time.time()
        for name, info in self.ours():
            if info.get("kind") == "template" or self.run_alive(str(info.get("run", ""))):
                continue
            kept = info.get("kept")
            if kept is not None and now - float(kept) < kept_ttl_seconds:
                continue
            self.drop_now(name)
            dropped.append(name)
        return dropped

    # -- templates ---------------------------------------------------------------------
    def ensure_template(
        self,
        sources: Sequence[MigrationSource],
        user_key: str = "",
        *,
        base: Template | None = None,
        rebuild: bool = False,
    ) -> Template:
        """The published template for ``sources``, built now if no one has built it.

        With ``base``, the template is a layer: ``base`` plus ``sources`` (fixture files
        loaded once, or the recycling machinery), keyed by both. ``rebuild`` builds it
        again even if it exists (once per run: the run's other workers reuse that build).
        """
        started = time.perf_counter()
        key = template_key(sources, self.endpoint.version, user_key)
        if base is not None:
            key = digest(f"{base.key}+{key}", 16)
        name = f"{self.prefix}tpl_{key}"
        described = tuple(s.describe() for s in sources)

        def found(why: str = "reused") -> Template:
            return Template(name, key, False, time.perf_counter() - started, described, why)

        if self.comment_of(name) is not None and not rebuild:
            return found()
        inputs = template_inputs(sources, self.endpoint.version, user_key)
        config = config_id(sources)
        lock = [LOCK_CLASS, _lock_id(key)]
        self.execute(sql.SQL("SELECT pg_advisory_lock(%s, %s)"), lock)
        try:
            existing = self.comment_of(name)
            if existing is not None and (not rebuild or existing.get("run") == self.run_id):
                return found()  # a concurrent worker or run built it
            if existing is not None:
                self.drop_now(name)
                why = "forced by --seamtest-rebuild"
            else:
                why = explain_rebuild(self._previous_inputs(config), inputs)
            self._drop_abandoned_builds(key)
            self._build(
                name,
                key,
                sources,
                base.name if base else "template0",
                {"config": config, "inputs": inputs},
            )
        finally:
            self.execute(sql.SQL("SELECT pg_advisory_unlock(%s, %s)"), lock)
        if base is None:
            self.probe_clone(name, fresh=rebuild)
        else:  # same server, same files: a layer clones best the way its base does
            self._clone_methods[name] = self.clone_method(base.name)
            info = self.comment_of(name) or {}
            self.set_comment(name, {**info, "clone": self._clone_methods[name]})
        return Template(name, key, True, time.perf_counter() - started, described, why)

    def _previous_inputs(self, config: str) -> dict[str, str] | None:
        """The inputs of the newest template built from the same configuration, if any."""
        found = [
            info
            for _name, info in self.ours()
            if info.get("kind") == "template" and info.get("config") == config and "inputs" in info
        ]
        if not found:
            return None
        return dict(max(found, key=lambda info: float(info.get("created", 0)))["inputs"])

    def _drop_abandoned_builds(self, key: str) -> None:
        # We hold this key's lock, so any build database for it was left by a crash.
        pattern = f"{self.prefix}build_{key}_%"
        for (name,) in self.execute(
            sql.SQL("SELECT datname FROM pg_database WHERE datname LIKE %s"), [pattern]
        ):
            self.drop_now(name)

    def _build(
        self,
        name: str,
        key: str,
        sources: Sequence[MigrationSource],
        base: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        scratch = f"{self.prefix}build_{key}_{os.getpid()}"
        # Cloned the way its base clones best (FILE_COPY for template0): not the server's
        # default WAL_LOG, two to three times slower here.
        method = self.clone_method(base)
        self._create(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(scratch), sql.Identifier(base)
            )
            + self._strategy_sql(method),
            method,
        )
        self.set_comment(scratch, self._info("build", template=name))
        self._building.add(scratch)
        try:
            with psycopg.connect(self.endpoint.conninfo(scratch)) as conn:
                # A hung migration (a sleep, a lock never granted) fails with the file
                # named instead of hanging the run.
                timeout = sql.Literal(f"{int(self.migration_timeout * 1000)}ms")
                conn.execute(sql.SQL("SET statement_timeout = {}").format(timeout))
                conn.execute(sql.SQL("SET lock_timeout = {}").format(timeout))
                conn.commit()
                for source in sources:
                    if getattr(source, "needs_url", False):
                        # Tools with their own engine (Alembic) connect by URL themselves.
                        conn.commit()
                        source.apply_url(self.endpoint.url(scratch))  # type: ignore[attr-defined]
                    else:
                        source.apply(conn)
                conn.commit()  # what a source left uncommitted is part of the template
                # A layer's schema is its base's: the layer adds data or seamtest's own.
                schema = (
                    schema_digest(conn)
                    if base == "template0"
                    else (self.comment_of(base) or {}).get("schema")
                )
            self.wait_unused(scratch)
            # Everything is in place before the rename, which is the atomic publish.
            info = self._info(
                "template", sources=[s.describe() for s in sources], schema=schema, **(extra or {})
            )
            self.set_comment(scratch, info)
            self.execute(
                sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(scratch))
            )
            self.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(scratch), sql.Identifier(name)
                )
            )
        except BaseException:
            self.drop_now(scratch)
            raise
        finally:
            self._building.discard(scratch)

    # -- how to clone: measured, not assumed -------------------------------------------
    def clone_methods(self) -> list[str]:
        """What this server can clone with: STRATEGY (PostgreSQL 15+), and reflink copies
        through PostgreSQL 18's file_copy_method = clone where the filesystem has them."""
        if self._server_version < 150000:
            return [""]
        # WAL_LOG first: the probe's first clone also warms caches, and WAL_LOG is the one
        # expected to lose, so the warm-up cost does not decide between the others.
        methods = ["WAL_LOG", "FILE_COPY"]
        if self._server_version >= 180000:
            methods.append("FILE_COPY+clone")
        return methods

    @staticmethod
    def _strategy_sql(method: str) -> sql.Composable:
        strategy = method.split("+", 1)[0]
        return sql.SQL(" STRATEGY {}").format(sql.SQL(strategy)) if strategy else sql.SQL("")

    def _create(self, query: sql.Composed, method: str) -> None:
        """Run CREATE DATABASE, with file_copy_method = clone for that method."""
        if not method.endswith("+clone"):
            self.execute(query)
            return
        with self._lock:
            self._admin.execute("SET file_copy_method = clone")
            try:
                self._admin.execute(query)
            finally:
                self._admin.execute("RESET file_copy_method")

    def clone_method(self, template: str | None) -> str:
        """The method recorded for ``template`` by its probe (FILE_COPY if none was)."""
        if not template or self._server_version < 150000:
            return ""
        if template not in self._clone_methods:
            recorded = (self.comment_of(template) or {}).get("clone")
            # Never probed (an older template): FILE_COPY, the usual winner here.
            self._clone_methods[template] = str(recorded or "FILE_COPY")
        return self._clone_methods[template]

    def probe_clone(
        self, template: str, rounds: int = 1, *, fresh: bool = False
    ) -> dict[str, float]:
        """Time each clone method on ``template`` and remember the fastest with it.

        FILE_COPY is about twice as fast as WAL_LOG with fsync off here, and reflinks
        (``file_copy_method = clone``) help only on filesystems that have them (not
        tmpfs, not ext4): a short probe decides instead of a guess (about 0.2 s, once
        per template and cluster: see ``_probes``; ``fresh`` probes even so). Methods the
        server refuses are skipped. Returns the timings measured now (none if cached).
        """
        key = self._probe_key(template)
        cached = self.probe_cache.get(key) if self.probe_cache and key and not fresh else None
        if cached is not None:
            self._remember_clone(
                template, cached["clone"], probe_ms=cached.get("probe_ms"), cached=True
            )
            return {}
        timings: dict[str, float] = {}
        for method in self.clone_methods():
            if not method:
                return {}
            name = f"{self.prefix}probe_{digest(template + method, 12)}_{os.getpid()}"
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            ) + self._strategy_sql(method)
            best = float("inf")
            try:
                for _round in range(rounds):
                    started = time.perf_counter()
                    self._create(query, method)
                    best = min(best, time.perf_counter() - started)
                    self.set_comment(name, self._info("probe"))
                    self.drop_now(name)
            except psycopg.Error:
                continue  # not supported here (an old server, no reflinks)
            timings[method] = best
        if timings:
            fastest = min(timings, key=lambda method: timings[method])
            probe = {method: round(seconds * 1000, 1) for method, seconds in timings.items()}
            self._remember_clone(template, fastest, probe_ms=probe)
            if self.probe_cache and key:
                self.probe_cache.put(key, {"clone": fastest, "probe_ms": probe})
        return timings

    def _probe_key(self, template: str) -> str | None:
        """The cluster, its version and the template; None if the server will not say."""
        try:
            rows = self.execute(sql.SQL("SELECT system_identifier FROM pg_control_system()"))
        except psycopg.Error:
            return None
        return f"{rows[0][0]}:{self._server_version}:{template}"

    def _remember_clone(self, template: str, method: str, **details: Any) -> None:
        """Use ``method`` for ``template`` and record it (and ``details``) in its comment."""
        self._clone_methods[template] = method
        info = self.comment_of(template) or {}
        self.set_comment(template, {**info, "clone": method, **details})

    # -- clones ------------------------------------------------------------------------
    def create(self, name: str, template: str | None, **info: Any) -> TestDatabase:
        """Create ``name`` from ``template``; replace a leftover of seamtest's own."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            query += self._strategy_sql(self.clone_method(template))
        try:
            self._create(query, self._clone_methods.get(template or "", ""))
        except psycopg.errors.DuplicateDatabase:
            leftover = self.comment_of(name)
            if leftover is None:
                raise DatabaseError(
                    f"database {name!r} exists and was not created by seamtest; seamtest will "
                    "not touch it. Drop or rename it, or set seamtest_db_prefix to another "
                    "prefix."
                ) from None
            if leftover.get("run") == self.run_id:
                raise
            if self.run_alive(str(leftover.get("run", ""))):
                # Another live run (a CI shard on a shared server) has this test's
                # database: never touch it; use a name of our own.
                name = f"{name[: MAX_IDENTIFIER - 9]}_{self.run_id}"
                return self.create(name, template, **info)
            self.drop_now(name)  # a kept or abandoned database of an earlier run
            self._create(query, self._clone_methods.get(template or "", ""))
        except psycopg.errors.ObjectInUse as exc:
            raise DatabaseError(
                f"cannot clone template {template!r}: {exc.diag.message_primary}. Something "
                "is connected to the template; seamtest never connects to templates after "
                "publishing them."
            ) from exc
        self.set_comment(name, self._info("test", template=template, **info))
        return TestDatabase(name, self.endpoint, template)

    def keep(self, name: str, **info: Any) -> None:
        """Mark a database as kept for inspection (a failed test's)."""
        current = self.comment_of(name) or {}
        self.set_comment(name, {**current, "kept": time.time(), **info})

    def rename(self, old: str, new: str, **info: Any) -> TestDatabase:
        """Rename one of our databases (a pooled one becoming a kept test's), replacing a
        leftover of seamtest's own under the new name."""
        if self.exists(new):
            self.drop_now(new)
        self.wait_unused(old)
        self.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)
            )
        )
        current = self.comment_of(new) or {}
        self.set_comment(new, {**current, **info})
        return TestDatabase(new, self.endpoint)

    def drop_now(self, name: str) -> None:
        """Drop one of seamtest's databases, terminating its connections."""
        if not name.startswith(self.prefix) or self.comment_of(name) is None:
            if not self.exists(name):
                return
            raise DatabaseError(
                f"refusing to drop {name!r}: it lacks seamtest's prefix or bookkeeping comment"
            )
        self.wait_unused(name, timeout=2.0)
        # A template cannot be dropped until it is not one (an abandoned build may be).
        self.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def drop_later(self, name: str, nodeid: str = "") -> None:
        """Drop off the test's critical path (a background thread)."""
        self._dropper.put(name, nodeid)

    def session_database_name(self, worker: str, template: str) -> str:
        return database_name(self.prefix, "s", worker, unique=f"{self.run_id}:{worker}:{template}")

    def cancel_builds(self) -> None:
        """Cancel the queries of this process's builds in progress (another thread's: a
        Ctrl-C reaches only the main thread). The build then fails and drops its scratch
        database. Over a connection of its own: the builder may hold the admin one."""
        building = list(self._building)
        if not building:
            return
        with self.endpoint.connect() as conn:
            conn.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = ANY(%s)",
                [building],
            )

    def notes(self) -> list[str]:
        """Problems met off the critical path: failed drops, leaked connections."""
        return self._dropper.errors + self._dropper.leaks

    def close(self) -> None:
        self._dropper.close()
        with self._lock:
            self._admin.close()


class _Dropper:
    """Drops databases in a background thread, so no test waits for a DROP.

    A backend needs a moment to exit after its client closes; DROP DATABASE sleeps
    100 ms when it finds one still there (shared/MEASUREMENTS.md), so this thread waits
    for the database to be unused first and uses WITH (FORCE) only as a last resort.
    """

    def __init__(self, endpoint: Endpoint, owner: Provisioner) -> None:
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._owner = owner
        self._endpoint = endpoint
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        #: Tests that left connections open (reported in the terminal summary).
        self.leaks: list[str] = []

    def put(self, name: str, nodeid: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seamtest-dropper", daemon=True)
            self._thread.start()
        self._queue.put((name, nodeid))

    def _run(self) -> None:
        with self._endpoint.connect() as conn:
            while (item := self._queue.get()) is not None:
                name, nodeid = item
                try:
                    self._drop(conn, name, nodeid)
                except Exception as exc:
                    self.errors.append(f"could not drop {name} ({nodeid}): {exc}")

    def _drop(self, conn: psycopg.Connection[Any], name: str, nodeid: str) -> None:
        left = wait_for_zero(lambda: sessions_on(conn, name), 2.0)
        if left:
            self.leaks.append(
                f"{nodeid or name} left {left} connection(s) open to its database "
                f"{name}; seamtest terminated them to drop it. Close connections in the "
                "test or its fixtures."
            )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)
