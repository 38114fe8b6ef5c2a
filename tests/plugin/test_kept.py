"""Failed tests keep their database (and say how to reach it); nothing else is left."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import psycopg
import pytest

from seamtest._server import Endpoint

from ..helpers import ITEMS_MIGRATION, databases_like, drop_database, run_inner, write_files, write_ini

TESTS = """
    import json, pathlib

    OUT = pathlib.Path(__file__).parent / "out"

    def record(name, db):
        OUT.mkdir(exist_ok=True)
        (OUT / f"{name}.json").write_text(json.dumps(db.execute("SELECT current_database()").fetchone()[0]))

    def test_passes_one(db):
        db.execute("INSERT INTO items (label) VALUES ('one')")
        db.commit()
        record("passes_one", db)

    def test_passes_two(db):
        record("passes_two", db)
"""

FAILING = """
    def test_fails(db):
        db.execute("INSERT INTO items (label) VALUES ('evidence')")
        db.commit()
        record("fails", db)
        assert False, "on purpose"
"""


@pytest.fixture
def project(inner: pytest.Pytester, pg_server: Endpoint) -> pytest.Pytester:
    write_ini(inner, seamtest_migrations="migrations", seamtest_url=pg_server.url())
    write_files(inner, "migrations", ITEMS_MIGRATION)
    return inner


@pytest.fixture
def test_databases(pg_server: Endpoint) -> Iterator[set[str]]:
    """The server's seamtest_t_% databases before the test; any new ones are dropped after."""
    before = databases_like(pg_server, r"seamtest\_t\_%")
    yield before
    for name in databases_like(pg_server, r"seamtest\_t\_%") - before:
        drop_database(pg_server, name)


def recorded(pytester: pytest.Pytester) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text()) for p in (pytester.path / "out").glob("*.json")}


def test_a_passing_run_leaves_no_test_database(
    project: pytest.Pytester, pg_server: Endpoint, test_databases: set[str]
) -> None:
    project.makepyfile(test_pass=TESTS)
    result = run_inner(project)
    result.assert_outcomes(passed=2)
    used = set(recorded(project).values())
    assert len(used) == 2
    assert all(name.startswith("seamtest_t_") for name in used)
    assert databases_like(pg_server, r"seamtest\_t\_%") - test_databases == set()
    assert databases_like(pg_server, r"seamtest\_s\_%") == set()  # no session database either


def test_a_failed_test_keeps_its_database_and_shows_how_to_open_it(
    project: pytest.Pytester, pg_server: Endpoint, test_databases: set[str]
) -> None:
    project.makepyfile(test_mixed=TESTS + FAILING)
    result = run_inner(project)
    result.assert_outcomes(passed=2, failed=1)
    failed_db = recorded(project)["fails"]

    # The failure's report carries a seamtest section with a psql command for it.
    result.stdout.fnmatch_lines(
        ["*- seamtest -*", f"kept database {failed_db}", "    psql 'postgresql://*'"]
    )
    [url] = re.findall(r"psql '(postgresql://[^']+)'", result.stdout.str())
    assert url.rsplit("/", 1)[-1] == failed_db

    # Exactly the failed test's database is left, holding what the test committed.
    assert databases_like(pg_server, r"seamtest\_t\_%") - test_databases == {failed_db}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT label FROM items ORDER BY id").fetchall()
    assert rows == [("seed",), ("evidence",)]


def test_keep_failed_false_from_the_environment(
    project: pytest.Pytester, pg_server: Endpoint, test_databases: set[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project.makepyfile(test_mixed=TESTS + FAILING)
    monkeypatch.setenv("SEAMTEST_KEEP_FAILED", "0")
    result = run_inner(project)
    result.assert_outcomes(passed=2, failed=1)
    assert "kept database" not in result.stdout.str()
    assert databases_like(pg_server, r"seamtest\_t\_%") - test_databases == set()


def test_a_rerun_replaces_the_kept_database(
    project: pytest.Pytester, pg_server: Endpoint, test_databases: set[str]
) -> None:
    project.makepyfile(test_mixed=TESTS + FAILING)
    run_inner(project).assert_outcomes(passed=2, failed=1)
    first = recorded(project)["fails"]
    result = run_inner(project)
    # The leftover of the first run does not get in the way, and the new database is fresh
    # (the test's INSERT of a unique label would fail if the old rows were still there).
    result.assert_outcomes(passed=2, failed=1)
    assert "AssertionError: on purpose" in result.stdout.str()
    assert databases_like(pg_server, r"seamtest\_t\_%") - test_databases == {first}
