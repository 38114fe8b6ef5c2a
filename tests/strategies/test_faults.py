"""Faults: each ends with a clear message, nothing lost, nothing left, no hang."""

from __future__ import annotations

import pytest

from seamtest._server import Endpoint
from tests.helpers import databases_like, like_prefix, run_inner, write_files, write_ini

SCHEMA = {"0001_items.sql": "CREATE TABLE items (id serial PRIMARY KEY, label text);\n"}


@pytest.fixture
def project(inner: pytest.Pytester, db_prefix: str) -> pytest.Pytester:
    write_files(inner, "migrations", SCHEMA)
    write_ini(inner, seamtest_migrations="migrations", seamtest_db_prefix=db_prefix)
    return inner


def test_server_killed_mid_run_fails_the_rest_fast_naming_the_log(
    project: pytest.Pytester,
) -> None:
    write_files(
        project,
        "tests",
        {
            "test_kill.py": """
                import os, signal, time

                def test_kills_the_server(db):
                    pid = int(db.execute("SELECT pg_backend_pid()").fetchone()[0])
                    ppid = int(open(f"/proc/{pid}/status").read().split("PPid:")[1].split()[0])
                    os.kill(ppid, signal.SIGKILL)
                    time.sleep(0.5)

                def test_after_1(db):
                    pass

                def test_after_2(db):
                    pass
            """
        },
    )
    result = run_inner(project)  # its own embedded server: this test kills it
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*embedded PostgreSQL server (pid *) has stopped*server.log*"])


def test_test_that_drops_its_own_database_or_leaves_connections(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    write_files(
        project,
        "tests",
        {
            "test_rude.py": """
                import psycopg

                LEAKED = []

                def test_drops_its_own_database(db, db_url):
                    name = db.execute("SELECT current_database()").fetchone()[0]
                    db.close()
                    with psycopg.connect(db_url, dbname="postgres", autocommit=True) as admin:
                        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

                def test_terminates_its_own_connections(db):
                    db.execute("SELECT pg_terminate_backend(pg_backend_pid())")

                def test_never_closes_a_connection(db_url):
                    LEAKED.append(psycopg.connect(db_url))

                def test_still_fine_afterwards(db):
                    assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 0
            """
        },
    )
    result = run_inner(project, f"--seamtest-url={pg_server.url()}")
    result.assert_outcomes(passed=3, failed=1)  # terminating its connection fails the test
    result.stdout.fnmatch_lines(
        ["*test_never_closes_a_connection left 1 connection(s) open*terminated them*"]
    )
    leftovers = databases_like(pg_server, like_prefix(db_prefix + "t_"))
    assert leftovers == {
        name for name in leftovers if "test_terminates_its_own_connections" in name
    }  # only the failed test's database is kept


def test_hanging_migration_times_out_naming_the_file(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    write_files(project, "migrations", {"0002_hang.sql": "SELECT pg_sleep(60);\n"})
    write_files(project, "tests", {"test_x.py": "def test_x(db):\n    pass\n"})
    result = run_inner(
        project, f"--seamtest-url={pg_server.url()}", "-o", "seamtest_migration_timeout=1"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*0002_hang.sql: ERROR: canceling statement due to statement timeout*"]
    )


def test_connection_budget_exhausted_says_the_numbers(project: pytest.Pytester) -> None:
    write_files(
        project,
        "tests",
        {
            "test_budget.py": """
                import psycopg
                import pytest

                HELD = []

                def test_hogs_connections(db_url):
                    with pytest.raises(psycopg.OperationalError):
                        while True:
                            HELD.append(psycopg.connect(db_url))

                def test_needs_one(db):
                    pass
            """
        },
    )
    result = run_inner(
        project,
        "-o",
        "seamtest_server_settings=max_connections=12",
        "-o",
        "seamtest_pool_size=0",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*no connection slots left (*max_connections = 12*in use)*seamtest_pool_size*"]
    )
