"""Failed tests keep their database (and say how to reach it); nothing else is left.

Each test runs under a database prefix of its own (``db_prefix``), so "what is left" is
exactly what the inner run left, whatever else the shared server holds.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from seamtest._server import Endpoint
from tests.helpers import (
    ITEMS_MIGRATION,
    databases_like,
    like_prefix,
    on_shared_server,
    run_inner,
    write_files,
)

TESTS = """
    def test_passes_one(db):
        db.execute("INSERT INTO items (label) VALUES ('one')")
        db.commit()

    def test_passes_two(db_url):
        assert db_url.startswith("postgresql://")
"""

FAILING = """
    def test_fails(db):
        db.execute("INSERT INTO items (label) VALUES ('evidence')")
        db.commit()
        assert False, "on purpose"
"""


@pytest.fixture
def project(inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str) -> pytest.Pytester:
    on_shared_server(inner, pg_server, db_prefix, seamtest_migrations="migrations")
    write_files(inner, "migrations", ITEMS_MIGRATION)
    return inner


def left_behind(endpoint: Endpoint, prefix: str) -> set[str]:
    """The run's databases still on the server, templates aside (they are a cache)."""
    return databases_like(endpoint, like_prefix(prefix)) - databases_like(
        endpoint, like_prefix(prefix + "tpl_")
    )


def kept_databases(result: pytest.RunResult) -> list[tuple[str, str]]:
    """(name, url) of every database the failure sections report as kept."""
    text = result.stdout.str()
    return re.findall(r"kept database (\S+)\n\s+psql '(postgresql://[^']+)'", text)


def test_a_passing_run_leaves_no_test_database(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    project.makepyfile(test_pass=TESTS)
    result = run_inner(project)
    result.assert_outcomes(passed=2)
    assert databases_like(pg_server, like_prefix(db_prefix + "tpl_")), "no template was built"
    assert left_behind(pg_server, db_prefix) == set()
    assert databases_like(pg_server, r"seamtest\_t\_%") == set()  # nor under the default prefix


def test_a_failed_test_keeps_its_database_and_shows_how_to_open_it(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    project.makepyfile(test_mixed=TESTS + FAILING)
    result = run_inner(project)
    result.assert_outcomes(passed=2, failed=1)

    # The failure's report carries a seamtest section with a psql command for it.
    [(name, url)] = kept_databases(result)
    result.stdout.fnmatch_lines(
        ["*- seamtest -*", f"kept database {name}", "    psql 'postgresql://*'"]
    )
    assert name.startswith(db_prefix)
    assert url.rsplit("/", 1)[-1] == name

    # Exactly the failed test's database is left, holding what the test committed.
    assert left_behind(pg_server, db_prefix) == {name}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT label FROM items ORDER BY id").fetchall()
    assert rows == [("seed",), ("evidence",)]


def test_keep_failed_false_keeps_nothing(
    project: pytest.Pytester,
    pg_server: Endpoint,
    db_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project.makepyfile(test_mixed=TESTS + FAILING)
    monkeypatch.setenv("SEAMTEST_KEEP_FAILED", "0")
    result = run_inner(project)
    result.assert_outcomes(passed=2, failed=1)
    assert kept_databases(result) == []
    assert left_behind(pg_server, db_prefix) == set()


def test_a_rerun_starts_fresh_despite_the_kept_database(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    project.makepyfile(test_mixed=TESTS + FAILING)
    first = run_inner(project)
    first.assert_outcomes(passed=2, failed=1)
    [(first_name, _url)] = kept_databases(first)
    second = run_inner(project)
    # The leftover of the first run does not get in the way, and the new database is fresh:
    # the test's INSERT of a UNIQUE label would fail on the first run's 'evidence' row.
    second.assert_outcomes(passed=2, failed=1)
    assert "AssertionError: on purpose" in second.stdout.str()
    [(second_name, second_url)] = kept_databases(second)
    with psycopg.connect(second_url) as conn:
        assert conn.execute("SELECT label FROM items ORDER BY id").fetchall() == [
            ("seed",),
            ("evidence",),
        ]
    # At most the two failures' databases are left (a rerun may replace the first).
    assert second_name in left_behind(pg_server, db_prefix) <= {first_name, second_name}
