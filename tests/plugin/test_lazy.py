"""A run whose tests never ask for a database starts no server; one whose tests do
readies the server and template while the tests before the first database test run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seamtest._server import Endpoint
from tests.helpers import ITEMS_MIGRATION, like_prefix, run_inner, write_files, write_ini

NO_DATABASE = """
    def test_arithmetic():
        assert 1 + 1 == 2

    def test_strings():
        assert "a".upper() == "A"
"""

WITH_DATABASE = """
    def test_uses_db(db):
        assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)
"""

SECTION = re.compile(r"^=+ seamtest =+$", re.MULTILINE)


@pytest.fixture
def empty_cache(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A cluster cache of its own: the first server start of any run fills it."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("SEAMTEST_CACHE_DIR", str(cache))
    write_ini(inner, seamtest_migrations="migrations")
    write_files(inner, "migrations", ITEMS_MIGRATION)
    return cache


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_no_database_no_server(
    inner: pytest.Pytester, empty_cache: Path, args: tuple[str, ...]
) -> None:
    inner.makepyfile(test_plain=NO_DATABASE)
    result = run_inner(inner, *args)
    result.assert_outcomes(passed=2)
    assert "server: embedded, started once a collected test needs it" in result.stdout.str()
    assert not SECTION.search(result.stdout.str()), "a seamtest summary means a server started"
    assert list(empty_cache.iterdir()) == []  # no cluster was built or copied

    # The control: the same project with one database test does start a server.
    inner.makepyfile(test_db=WITH_DATABASE)
    result = run_inner(inner, *args)
    result.assert_outcomes(passed=3)
    assert SECTION.search(result.stdout.str())
    assert (empty_cache / "clusters").is_dir()


#: A test without a database that runs first, watching the server for the template.
WATCHES_THE_TEMPLATE = """
    import os
    import time

    import psycopg

    def test_a_unit_test_runs_first():
        deadline = time.monotonic() + float(os.environ["WAIT_FOR_TEMPLATE"])
        with psycopg.connect(os.environ["ADMIN_URL"], autocommit=True) as conn:
            while time.monotonic() < deadline:
                built = conn.execute(
                    "SELECT count(*) FROM pg_database WHERE datname LIKE %s AND datistemplate",
                    [os.environ["TEMPLATE_LIKE"]],
                ).fetchone()[0]
                if built:
                    break
                time.sleep(0.02)
        with open(os.environ["RESULT_FILE"], "w") as f:
            f.write(str(bool(built)))

    def test_then_a_database_test(db):
        assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)
"""


#: The same, for the layer of a fixture set that two tests load.
WATCHES_THE_LAYER = WATCHES_THE_TEMPLATE.replace(
    "AND datistemplate",
    "AND datistemplate AND shobj_description(oid, 'pg_database') LIKE '%%fixtures more%%'",
).replace(
    """    def test_then_a_database_test(db):
        assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)
""",
    """    import pytest

    @pytest.mark.seamtest(fixtures=["more"])
    @pytest.mark.parametrize("n", range(2))
    def test_then_two_tests_with_the_same_fixtures(db, n):
        assert db.execute("SELECT count(*) FROM items").fetchone() == (2,)
""",
)


@pytest.mark.parametrize(
    ("switch", "built"), [((), True), (("--seamtest-no-warm-up",), False)], ids=["on", "off"]
)
@pytest.mark.parametrize("args", [(), ("-n", "1")], ids=["serial", "xdist"])
def test_the_template_is_built_while_earlier_tests_run(
    inner: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    pg_server: Endpoint,
    db_prefix: str,
    args: tuple[str, ...],
    switch: tuple[str, ...],
    built: bool,
) -> None:
    write_ini(inner, seamtest_migrations="migrations", seamtest_db_prefix=db_prefix)
    write_files(inner, "migrations", ITEMS_MIGRATION)
    inner.makepyfile(test_order=WATCHES_THE_TEMPLATE)
    monkeypatch.setenv("ADMIN_URL", pg_server.url())
    monkeypatch.setenv("TEMPLATE_LIKE", like_prefix(db_prefix) + "tpl%")
    # Long enough for a loaded machine when it comes; short when it never will.
    monkeypatch.setenv("WAIT_FOR_TEMPLATE", "30" if built else "2")
    monkeypatch.setenv("RESULT_FILE", str(inner.path / "built.txt"))
    result = run_inner(inner, f"--seamtest-url={pg_server.url()}", *switch, *args)
    result.assert_outcomes(passed=2)
    assert (inner.path / "built.txt").read_text() == str(built)


def test_the_layers_of_shared_fixture_sets_are_built_ahead_too(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pg_server: Endpoint, db_prefix: str
) -> None:
    write_ini(inner, seamtest_migrations="migrations", seamtest_db_prefix=db_prefix)
    write_files(inner, "migrations", ITEMS_MIGRATION)
    write_files(inner, "tests/fixtures", {"more.sql": "INSERT INTO items (label) VALUES ('x');\n"})
    write_files(inner, "tests", {"test_order.py": WATCHES_THE_LAYER})
    monkeypatch.setenv("ADMIN_URL", pg_server.url())
    monkeypatch.setenv("TEMPLATE_LIKE", like_prefix(db_prefix) + "tpl%")
    monkeypatch.setenv("WAIT_FOR_TEMPLATE", "30")
    monkeypatch.setenv("RESULT_FILE", str(inner.path / "built.txt"))
    result = run_inner(inner, f"--seamtest-url={pg_server.url()}", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert (inner.path / "built.txt").read_text() == "True"
