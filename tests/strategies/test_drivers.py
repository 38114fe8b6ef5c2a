"""SQLAlchemy and asyncpg fixtures, on their own and joined to the test's transaction."""

from __future__ import annotations

import pytest

from seamtest._server import Endpoint
from tests.helpers import run_inner, write_files, write_ini

DRIVERS = """
    import pytest
    from sqlalchemy import text

    COUNT = text("SELECT count(*) FROM users")
    INSERT = text("INSERT INTO users (email) VALUES ('sa@example.test')")

    @pytest.mark.parametrize("n", range(2))
    @pytest.mark.seamtest(isolation="transaction")
    def test_session_joins_the_transaction(sa_session, db, n):
        assert sa_session.execute(COUNT).scalar() == 0  # the other run rolled back
        sa_session.execute(INSERT)
        sa_session.commit()  # a savepoint
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1  # same transaction

    @pytest.mark.parametrize("n", range(2))
    @pytest.mark.seamtest(isolation="transaction")
    async def test_async_session_joins_the_transaction(sa_async_session, adb, n):
        assert (await sa_async_session.execute(COUNT)).scalar() == 0
        await sa_async_session.execute(INSERT)
        await sa_async_session.commit()
        cur = await adb.execute("SELECT count(*) FROM users")
        assert (await cur.fetchone())[0] == 1

    def test_session_commits_for_real_under_database(sa_session, db):
        sa_session.execute(INSERT)
        sa_session.commit()
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1

    async def test_asyncpg(asyncpg_conn):
        assert await asyncpg_conn.fetchval("SELECT count(*) FROM users") == 0

    @pytest.mark.seamtest(isolation="transaction")
    async def test_asyncpg_is_refused_under_transaction(asyncpg_conn):
        pass
"""


def test_driver_fixtures(inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str) -> None:
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("asyncpg")
    write_files(
        inner,
        "migrations",
        {"0001_users.sql": "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE);\n"},
    )
    write_ini(
        inner, seamtest_migrations="migrations", seamtest_db_prefix=db_prefix, asyncio_mode="auto"
    )
    write_files(inner, "tests", {"test_drivers.py": DRIVERS})
    result = run_inner(inner, f"--seamtest-url={pg_server.url()}", "-p", "asyncio")
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(["*asyncpg_conn cannot join the test's transaction*"])
