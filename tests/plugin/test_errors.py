"""Mistakes fail loudly and early, naming the file, the line, the path or the keyword."""

from __future__ import annotations

import socket
import threading

import pytest

from seamtest._server import Endpoint
from tests.helpers import ITEMS_MIGRATION, on_shared_server, run_inner, write_files

BAD_MIGRATION = {
    "0001_ok.sql": "CREATE TABLE a (id int);\n",
    "0002_x.sql": "-- line 1\nCREATE TABLE b (id int);\nCREATE TABLEX c (id int);\n",
}

THREE_TESTS = """
    def test_first(db):
        pass

    def test_second(db):
        pass

    def test_no_database():
        pass
"""


@pytest.fixture
def project(inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str) -> pytest.Pytester:
    on_shared_server(inner, pg_server, db_prefix, seamtest_migrations="migrations")
    return inner


def test_a_bad_migration_names_file_line_and_server_message(project: pytest.Pytester) -> None:
    write_files(project, "migrations", BAD_MIGRATION)
    project.makepyfile(THREE_TESTS)
    result = run_inner(project)
    assert result.ret != pytest.ExitCode.OK
    where = project.path / "migrations" / "0002_x.sql"
    result.stdout.fnmatch_lines([f'*{where}:3: ERROR: syntax error at or near "TABLEX"*'])
    assert "test_first" in result.stdout.str()


def test_a_bad_migration_stops_the_session(project: pytest.Pytester) -> None:
    # A broken migration breaks every test that needs a database: the session stops at
    # the first failure instead of rebuilding the template, and failing, once per test.
    write_files(project, "migrations", BAD_MIGRATION)
    project.makepyfile(THREE_TESTS)
    result = run_inner(project)
    assert result.ret != pytest.ExitCode.OK
    assert result.stdout.str().count('syntax error at or near "TABLEX"') >= 1
    assert "test_second" not in "\n".join(
        line for line in result.outlines if line.startswith(("ERROR", "FAILED", "PASSED"))
    )
    assert result.parseoutcomes().get("errors", 0) + result.parseoutcomes().get("error", 0) <= 1


def test_a_missing_fixture_file_names_the_path_searched(project: pytest.Pytester) -> None:
    write_files(project, "migrations", ITEMS_MIGRATION)
    write_files(
        project, "tests/fixtures", {"users.sql": "INSERT INTO items (label) VALUES ('u');\n"}
    )
    project.makepyfile(
        """
        import pytest

        @pytest.mark.seamtest(fixtures=["users"])
        def test_has_users(db):
            assert db.execute("SELECT count(*) FROM items").fetchone() == (2,)

        @pytest.mark.seamtest(fixtures=["users", "orderz"])
        def test_typo(db):
            pass
        """
    )
    result = run_inner(project)
    result.assert_outcomes(passed=1, errors=1)
    searched = project.path / "tests" / "fixtures" / "orderz.sql"
    result.stdout.fnmatch_lines([f"*fixture 'orderz' not found: looked for {searched}*"])


def test_fixtures_load_in_the_order_the_marker_names_them(project: pytest.Pytester) -> None:
    write_files(project, "migrations", ITEMS_MIGRATION)
    write_files(
        project,
        "tests/fixtures",
        {
            "first.sql": "INSERT INTO items (label) VALUES ('first');\n",
            "second.sql": "INSERT INTO items (label) SELECT 'after ' || max(label) FROM items;\n",
        },
    )
    project.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.seamtest(fixtures=["second"])

        @pytest.mark.seamtest(fixtures=["first", "second"])
        def test_closest_marker_wins(db):
            rows = [r[0] for r in db.execute("SELECT label FROM items ORDER BY id")]
            assert rows == ["seed", "first", "after seed"]

        def test_module_marker(db):
            rows = [r[0] for r in db.execute("SELECT label FROM items ORDER BY id")]
            assert rows == ["seed", "after seed"]
        """
    )
    run_inner(project).assert_outcomes(passed=2)


def test_a_marker_typo_fails_at_collection_naming_the_keyword(project: pytest.Pytester) -> None:
    write_files(project, "migrations", ITEMS_MIGRATION)
    project.makepyfile(
        test_typo="""
        import pytest

        def test_fine(db):
            pass

        @pytest.mark.seamtest(fixture=["users"])
        def test_typo(db):
            pass
        """
    )
    result = run_inner(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*bad marker arguments*",
            "*test_typo.py::test_typo*unexpected keyword argument 'fixture'*",
        ]
    )
    assert "test_fine" not in result.stdout.str()  # nothing ran
    assert " passed" not in result.stdout.str()


def test_a_bad_marker_value_lists_the_choices(project: pytest.Pytester) -> None:
    write_files(project, "migrations", ITEMS_MIGRATION)
    project.makepyfile(
        """
        import pytest

        @pytest.mark.seamtest(isolation="rollback")
        def test_it(db):
            pass
        """
    )
    result = run_inner(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*isolation='rollback': choose one of 'database'*"])


def test_a_bad_setting_is_a_usage_error_naming_its_source(project: pytest.Pytester) -> None:
    project.makepyfile(THREE_TESTS)
    result = run_inner(project, "--seamtest-isolation=transactoin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*seamtest_isolation (from --seamtest-isolation) = 'transactoin': choose one of database*"]
    )


def test_a_remote_url_is_refused_before_anything_runs(project: pytest.Pytester) -> None:
    project.makepyfile(THREE_TESTS)
    result = run_inner(project, "--seamtest-url=postgresql://app@db.example.com/app")
    assert result.ret != pytest.ExitCode.OK
    assert (
        "db.example.com, which is not a loopback address"
        in result.stdout.str() + result.stderr.str()
    )
    assert "seamtest_allow_remote" in result.stdout.str() + result.stderr.str()


def test_a_server_that_cannot_be_reached_is_tried_once_and_named_by_every_test(
    inner: pytest.Pytester,
) -> None:
    """The warm-up's failed start is remembered: no later test waits for it again."""
    accepted = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hang_up() -> None:  # a "server" that closes every connection at once
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                accepted.append(conn)
                conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        inner.makepyfile(THREE_TESTS)
        url = f"postgresql://seamtest:x@127.0.0.1:{port}/postgres?sslmode=disable"
        result = run_inner(inner, f"--seamtest-url={url}")
    result.assert_outcomes(passed=1, errors=2)
    named = f"cannot connect to postgresql://seamtest:***@127.0.0.1:{port}"
    assert result.stdout.str().count(named) >= 2
    assert len(accepted) == 1
