"""Fixtures of seamtest's own suite.

One embedded server per process (``pg_server``) serves every test that is not about the
server itself: integration tests use it directly and plugin tests hand its URL to inner
pytest sessions with ``--seamtest-url``, much faster than an embedded server per inner
session. Tests about the embedded server itself let the inner session start its own.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from seamtest._binaries import find_binaries
from seamtest._embedded import EmbeddedServer
from seamtest._privilege import choose_run_as
from seamtest._server import Endpoint
from tests.helpers import databases_like, drop_database, like_prefix

#: Variables an inner session must not inherit: ours, libpq's, and the outer xdist run's.
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
    """A cluster cache shared by this process's inner sessions: one initdb, then copies."""
    return tmp_path_factory.mktemp("seamtest-cache")


@pytest.fixture
def db_prefix(pg_server: Endpoint) -> Iterator[str]:
    """A database name prefix of this test's own; its databases are dropped afterwards."""
    prefix = f"t{secrets.token_hex(4)}_"
    yield prefix
    for name in databases_like(pg_server, like_prefix(prefix)):
        drop_database(pg_server, name)


@pytest.fixture
def inner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, seamtest_cache: Path
) -> pytest.Pytester:
    """pytester with an environment free of seamtest, libpq and outer-xdist variables."""
    for name in list(os.environ):
        if name.startswith(_INHERITED) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SEAMTEST_CACHE_DIR", str(seamtest_cache))
    return pytester
