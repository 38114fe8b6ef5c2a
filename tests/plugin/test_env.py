"""``seamtest_env``: settings modules that read the environment at import time just work."""

from __future__ import annotations

import json

import pytest

from seamtest._server import Endpoint
from tests.helpers import (
    ITEMS_MIGRATION,
    databases_like,
    like_prefix,
    run_inner,
    write_files,
    write_ini,
)

ENV = [
    "DATABASE_URL={url}",
    "APP_DB_HOST={host}",
    "APP_DB_PORT={port}",
    "APP_DB_NAME={dbname}",
    "APP_DB_DSN=host={host} port={port} user={user} password={password} dbname={dbname}",
]

#: Read at import time, like a settings module would: before any fixture runs.
CONFTEST = """
    import os

    import pytest

    DATABASE_URL = os.environ["DATABASE_URL"]

    @pytest.fixture
    def settings_url():
        return DATABASE_URL
"""

TESTS = """
    import json, os, pathlib, subprocess, sys

    import psycopg

    OUT = pathlib.Path(__file__).parent / "out"

    CHILD = (
        "import os, psycopg\\n"
        "with psycopg.connect('') as conn:\\n"  # libpq reads PGHOST, PGPORT, PGUSER, ...
        "    print(conn.execute('SELECT current_database()').fetchone()[0])\\n"
        "print(os.environ['DATABASE_URL'])\\n"
    )

    def test_import_time_url_reaches_a_migrated_database(settings_url):
        assert settings_url == os.environ["DATABASE_URL"]
        with psycopg.connect(settings_url) as conn:
            assert conn.execute("SELECT label FROM items").fetchall() == [("seed",)]
            name = conn.execute("SELECT current_database()").fetchone()[0]
        assert os.environ["PGDATABASE"] == os.environ["APP_DB_NAME"] == name
        with psycopg.connect(os.environ["APP_DB_DSN"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == name
        child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                               check=True)
        assert child.stdout.splitlines() == [name, settings_url]
        OUT.mkdir(exist_ok=True)
        (OUT / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.json").write_text(json.dumps({
            "host": os.environ["APP_DB_HOST"],
            "pghost": os.environ["PGHOST"],
            "port": os.environ["APP_DB_PORT"],
            "pgport": os.environ["PGPORT"],
            "pguser": os.environ["PGUSER"],
            "password": "PGPASSWORD" in os.environ,
            "dbname": name,
        }))

    def test_db_is_still_a_database_of_its_own(db):
        assert db.execute("SELECT current_database()").fetchone()[0] != os.environ["PGDATABASE"]
"""


def read_out(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in (pytester.path / "out").glob("*.json")}


def test_env_is_exported_before_conftest_import_with_the_embedded_server(
    inner: pytest.Pytester,
) -> None:
    write_ini(inner, seamtest_migrations="migrations", seamtest_env=ENV)
    write_files(inner, "migrations", ITEMS_MIGRATION)
    inner.makeconftest(CONFTEST)
    inner.makepyfile(test_env=TESTS)
    result = run_inner(inner)
    result.assert_outcomes(passed=2)
    [seen] = read_out(inner).values()
    assert seen["host"] == seen["pghost"] == "127.0.0.1"
    assert seen["port"] == seen["pgport"]
    assert seen["pguser"] == "seamtest"
    assert seen["password"] is True


def test_each_xdist_worker_gets_its_own_session_database_dropped_at_the_end(
    inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    write_ini(
        inner,
        seamtest_migrations="migrations",
        seamtest_env=ENV,
        seamtest_url=pg_server.url(),
        seamtest_db_prefix=db_prefix,
    )
    write_files(inner, "migrations", ITEMS_MIGRATION)
    inner.makeconftest(CONFTEST)
    inner.makepyfile(
        test_env=TESTS,
        test_more="""
        def test_more_one(settings_url):
            assert settings_url

        def test_more_two(settings_url):
            assert settings_url
        """,
    )
    result = run_inner(inner, "-n", "2")
    # The xdist controller imports conftest.py too, so it needs the variables as well.
    assert "ImportError while loading conftest" not in result.stderr.str()
    result.assert_outcomes(passed=4)
    seen = read_out(inner)
    assert len(seen) == 1  # one worker ran the env test; the other ran the rest
    assert {str(s["dbname"]).startswith(db_prefix + "s_") for s in seen.values()} == {True}
    assert databases_like(pg_server, like_prefix(db_prefix + "s_")) == set()
    assert databases_like(pg_server, like_prefix(db_prefix + "t_")) == set()
