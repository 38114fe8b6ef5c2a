"""Shared pieces of seamtest's own suite.

One embedded server per process (``pg_server``) serves every test that is not about the
server itself: integration tests use it directly, plugin tests hand its URL to inner
pytest sessions with ``--seamtest-url``, which is much faster than an embedded server per
inner session. Tests about the embedded server start their own (``embedded_env``).
"""

from __future__ import annotations

import os
import secrets
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from seamtest._binaries import find_binaries
from seamtest._embedded import EmbeddedServer
from seamtest._privilege import choose_run_as
from seamtest._server import Endpoint

#: How long an inner pytest session may take before pytester kills it (a hang, not speed).
INNER_TIMEOUT = 180

#: Inner sessions get a fresh environment: nothing of ours or of the outer xdist run.
_INHERITED = ("SEAMTEST_", "PYTEST_XDIST_", "PG")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Endpoint]:
    """One embedded PostgreSQL for this pytest process (each xdist worker has its own)."""
    server = EmbeddedServer(find_binaries(), run_as=choose_run_as(None))
    endpoint = server.start()
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def seamtest_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster cache shared by this process's inner sessions (one initdb, then copies)."""
    return tmp_path_factory.mktemp("seamtest-cache")


def query(endpoint: Endpoint, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one query on the maintenance database of ``endpoint``."""
    with endpoint.connect() as conn:
        return list(conn.execute(text, params).fetchall())  # type: ignore[arg-type]


def databases_like(endpoint: Endpoint, pattern: str) -> set[str]:
    rows = query(endpoint, "SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern])
    return {row[0] for row in rows}


def drop_database(endpoint: Endpoint, name: str) -> None:
    """Drop a database of ours, template or not (test clean-up)."""
    with endpoint.connect() as conn:
        ident = sql.Identifier(name)
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident))
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))


@pytest.fixture
def db_prefix(pg_server: Endpoint) -> Iterator[str]:
    """A database prefix of this test's own; everything under it is dropped afterwards."""
    prefix = f"t{secrets.token_hex(4)}_"
    yield prefix
    for name in databases_like(pg_server, prefix.replace("_", r"\_") + "%"):
        drop_database(pg_server, name)


def write_ini(pytester: pytest.Pytester, **settings: str | Sequence[str]) -> None:
    """An inner session's own pytest.ini; list values become ini line lists."""
    lines = ["[pytest]", "asyncio_default_fixture_loop_scope = function"]
    for name, value in settings.items():
        if isinstance(value, str):
            lines.append(f"{name} = {value}")
        else:
            lines.append(f"{name} =")
            lines += [f"    {item}" for item in value]
    pytester.makeini("\n".join(lines) + "\n")


def write_migrations(pytester: pytest.Pytester, files: dict[str, str], where: str = "migrations") -> Path:
    directory = pytester.path / where
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory


ITEMS_MIGRATION = {
    "0001_items.sql": """\
        CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL UNIQUE);
        INSERT INTO items (label) VALUES ('seed');
        """,
}


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, seamtest_cache: Path) -> pytest.Pytester:
    """pytester with an environment free of seamtest, PG* and outer-xdist variables.

    The cluster cache is shared so that inner embedded servers run initdb once.
    """
    for name in list(os.environ):
        if name.startswith(_INHERITED) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SEAMTEST_CACHE_DIR", str(seamtest_cache))
    return pytester


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner pytest session in a subprocess, with a hang guard."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=INNER_TIMEOUT)
