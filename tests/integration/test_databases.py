"""Test databases: a clone per test, fixtures in order, and only seamtest's own dropped."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from seamtest import DatabaseError, FixtureError
from seamtest._isolation import DatabasePerTest, DatabaseRequest
from seamtest._migrations import FixtureFiles, SqlDirectory
from seamtest._provision import Provisioner, Template, read_comment
from seamtest._server import Endpoint
from tests.helpers import databases_like, drop_database, like_prefix, query

#: Run ids are hex: the run's lease lock is derived from them.
RUN_A, RUN_B, RUN_EARLIER = (secrets.token_hex(4) for _ in range(3))


@pytest.fixture
def provisioner(pg_server: Endpoint, db_prefix: str) -> Iterator[Provisioner]:
    provisioner = Provisioner(pg_server, prefix=db_prefix, run_id=RUN_A)
    yield provisioner
    provisioner.close()


@pytest.fixture
def template(provisioner: Provisioner, tmp_path: Path) -> Template:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_log.sql").write_text(
        "CREATE TABLE log (id serial PRIMARY KEY, entry text NOT NULL);\n"
    )
    return provisioner.ensure_template([SqlDirectory(directory)])


@pytest.fixture
def per_test(provisioner: Provisioner, template: Template) -> DatabasePerTest:
    return DatabasePerTest(provisioner, lambda: template, keep_failed=True)


@pytest.fixture
def fixture_files(tmp_path: Path) -> FixtureFiles:
    directory = tmp_path / "fixtures"
    directory.mkdir()
    (directory / "first.sql").write_text("INSERT INTO log (entry) VALUES ('first');\n")
    (directory / "second.sql").write_text(
        "-- needs first.sql\nINSERT INTO log (entry) SELECT 'second after ' || entry FROM log;\n"
    )
    return FixtureFiles(directory)


def entries(endpoint: Endpoint, dbname: str) -> list[str]:
    with endpoint.connect(dbname) as conn:
        return [row[0] for row in conn.execute("SELECT entry FROM log ORDER BY id")]


def test_each_test_gets_its_own_clone(pg_server: Endpoint, per_test: DatabasePerTest) -> None:
    one = per_test.acquire(DatabaseRequest("tests/test_a.py::test_one"))
    two = per_test.acquire(DatabaseRequest("tests/test_a.py::test_two"))
    assert one.name != two.name
    with psycopg.connect(one.url) as conn:  # the TCP URL applications get works
        conn.execute("INSERT INTO log (entry) VALUES ('one')")
    assert entries(pg_server, one.name) == ["one"]
    assert entries(pg_server, two.name) == []
    info = read_comment(
        query(
            pg_server,
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [one.name],
        )[0][0]
    )
    assert info is not None
    assert (info["kind"], info["test"], info["run"]) == ("test", "tests/test_a.py::test_one", RUN_A)


def test_passed_tests_databases_are_dropped_failed_ones_kept(
    pg_server: Endpoint, provisioner: Provisioner, per_test: DatabasePerTest, db_prefix: str
) -> None:
    passed_request = DatabaseRequest("tests/test_a.py::test_passes")
    failed_request = DatabaseRequest("tests/test_a.py::test_fails")
    passed = per_test.acquire(passed_request)
    failed = per_test.acquire(failed_request)
    assert not per_test.release(passed, passed_request, failed=False).kept_url
    outcome = per_test.release(failed, failed_request, failed=True)
    assert outcome.kept_url == failed.url
    provisioner.close()  # waits for the background drops
    assert databases_like(pg_server, like_prefix(db_prefix + "t_")) == {failed.name}
    [(comment,)] = query(
        pg_server,
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        [failed.name],
    )
    info = read_comment(comment)
    assert info is not None
    assert "kept" in info


def test_a_leftover_of_an_earlier_run_is_replaced(
    pg_server: Endpoint, provisioner: Provisioner, template: Template, db_prefix: str
) -> None:
    earlier = Provisioner(pg_server, prefix=db_prefix, run_id=RUN_EARLIER)
    try:
        name = f"{db_prefix}t_test_leftover"
        stale = earlier.create(name, template.name)
        with pg_server.connect(stale.name) as conn:
            conn.execute("INSERT INTO log (entry) VALUES ('stale')")
    finally:
        earlier.close()
    fresh = provisioner.create(name, template.name)
    assert entries(pg_server, fresh.name) == []


def test_a_live_runs_database_is_never_touched(
    pg_server: Endpoint, provisioner: Provisioner, template: Template, db_prefix: str
) -> None:
    # A CI shard on the same server, still running, with a database of the same name.
    other = Provisioner(pg_server, prefix=db_prefix, run_id=RUN_B)
    try:
        name = f"{db_prefix}t_test_shared_name"
        theirs = other.create(name, template.name)
        with pg_server.connect(theirs.name) as conn:
            conn.execute("INSERT INTO log (entry) VALUES ('theirs')")
        ours = provisioner.create(name, template.name)
        assert ours.name != theirs.name
        assert entries(pg_server, theirs.name) == ["theirs"]
        assert entries(pg_server, ours.name) == []
    finally:
        other.close()


def test_fixtures_are_applied_in_the_order_given(
    pg_server: Endpoint, per_test: DatabasePerTest, fixture_files: FixtureFiles
) -> None:
    in_order = per_test.acquire(
        DatabaseRequest("t.py::test_in_order", fixture_files.resolve(["first", "second"]))
    )
    assert entries(pg_server, in_order.name) == ["first", "second after first"]
    reversed_ = per_test.acquire(
        DatabaseRequest("t.py::test_reversed", fixture_files.resolve(["second", "first"]))
    )
    assert entries(pg_server, reversed_.name) == ["first"]


def test_a_failing_fixture_names_the_file_and_line(
    pg_server: Endpoint,
    provisioner: Provisioner,
    per_test: DatabasePerTest,
    fixture_files: FixtureFiles,
    db_prefix: str,
) -> None:
    (fixture_files.directory / "broken.sql").write_text(
        "INSERT INTO log (entry) VALUES ('fine');\nINSERT INTO nope VALUES (1);\n"
    )
    with pytest.raises(FixtureError) as excinfo:
        per_test.acquire(DatabaseRequest("t.py::test_broken", fixture_files.resolve(["broken"])))
    assert f"{fixture_files.directory / 'broken.sql'}:2:" in str(excinfo.value)
    assert 'relation "nope" does not exist' in str(excinfo.value)
    provisioner.close()  # the half-loaded database is dropped in the background
    assert databases_like(pg_server, like_prefix(db_prefix + "t_")) == set()


@pytest.fixture
def foreign(pg_server: Endpoint, db_prefix: str) -> Iterator[str]:
    """A database that carries seamtest's prefix but was not created by seamtest."""
    name = f"{db_prefix}t_not_ours"
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    drop_database(pg_server, name)


def test_a_database_without_the_comment_is_never_dropped(
    pg_server: Endpoint, provisioner: Provisioner, foreign: str
) -> None:
    with pytest.raises(DatabaseError, match="lacks seamtest's prefix or bookkeeping comment"):
        provisioner.drop_now(foreign)
    assert databases_like(pg_server, foreign) == {foreign}


def test_a_database_with_a_foreign_comment_is_never_dropped(
    pg_server: Endpoint, provisioner: Provisioner, foreign: str
) -> None:
    with pg_server.connect() as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS 'payroll, do not touch'").format(
                sql.Identifier(foreign)
            )
        )
    with pytest.raises(DatabaseError, match="refusing to drop"):
        provisioner.drop_now(foreign)
    assert databases_like(pg_server, foreign) == {foreign}


def test_a_database_without_the_prefix_is_never_dropped(
    pg_server: Endpoint, provisioner: Provisioner, template: Template
) -> None:
    # Our own bookkeeping comment, but not our prefix: still not ours to drop.
    other = Provisioner(pg_server, prefix="zz_other_", run_id=RUN_A)
    try:
        database = other.create("zz_other_t_mine", template.name)
    finally:
        other.close()
    try:
        with pytest.raises(DatabaseError, match="refusing to drop"):
            provisioner.drop_now(database.name)
        assert databases_like(pg_server, database.name) == {database.name}
    finally:
        drop_database(pg_server, database.name)


def test_creating_over_a_foreign_database_is_refused_and_leaves_it_alone(
    pg_server: Endpoint, provisioner: Provisioner, template: Template, foreign: str
) -> None:
    with pg_server.connect(foreign) as conn:
        conn.execute("CREATE TABLE precious (id int)")
    with pytest.raises(DatabaseError, match="exists and was not created by seamtest"):
        provisioner.create(foreign, template.name)
    with pg_server.connect(foreign) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone() == (0,)


def test_dropping_a_database_that_is_gone_is_not_an_error(
    provisioner: Provisioner, db_prefix: str
) -> None:
    provisioner.drop_now(f"{db_prefix}t_never_created")
