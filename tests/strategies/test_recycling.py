"""A recycled database is indistinguishable from a fresh clone, or it is not reused.

Each inner test first asserts everything a fresh clone promises (rows, sequences,
large objects, database settings, session state, fixture layers), then dirties all of it.
The pool has one database, so tests run on recycled databases one after another.
"""

from __future__ import annotations

import re

import pytest

from seamtest._server import Endpoint
from tests.helpers import run_inner, write_files, write_ini

SCHEMA = {
    "0001_items.sql": """\
        CREATE TABLE kinds (code text PRIMARY KEY);
        INSERT INTO kinds VALUES ('a'), ('b');
        CREATE TABLE items (id serial PRIMARY KEY, kind text REFERENCES kinds (code));
        """,
}

TESTS = """
    import pytest

    def one(db, query):
        return db.execute(query).fetchone()[0]

    def assert_fresh(db, items=0):
        assert one(db, "SELECT count(*) FROM items") == items
        assert one(db, "SELECT string_agg(code, ',' ORDER BY code) FROM kinds") == "a,b"
        assert one(db, "SELECT count(*) FROM pg_largeobject_metadata") == 0
        assert one(db, "SELECT setting FROM pg_settings WHERE name = 'work_mem'") == "4096"
        assert one(db, "SHOW search_path") == '"$user", public'
        assert one(
            db,
            "SELECT count(*) FROM pg_locks"
            " WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        ) == 0
        assert one(db, "SELECT to_regclass('scratch') IS NULL")
        db.rollback()

    def dirty(db):
        db.execute("INSERT INTO items (kind) VALUES ('a'), ('b')")
        db.execute("INSERT INTO kinds VALUES ('c')")
        db.execute("DELETE FROM items WHERE kind = 'b'")
        db.execute("DELETE FROM kinds WHERE code = 'b'")
        db.execute("SELECT lo_create(0)")
        db.execute("SET search_path = pg_catalog")
        db.execute("SELECT pg_advisory_lock(42)")
        db.execute("CREATE TEMP TABLE scratch (id int)")
        db.commit()

    @pytest.mark.parametrize("n", range(6))
    def test_rows_sequences_objects_session(db, n):
        assert_fresh(db)
        assert db.execute("SELECT nextval('items_id_seq')").fetchone()[0] == 1
        db.rollback()
        dirty(db)

    def test_database_setting(db):
        assert_fresh(db)
        name = db.execute("SELECT current_database()").fetchone()[0]
        db.commit()
        db.autocommit = True
        db.execute(f'ALTER DATABASE "{name}" SET work_mem = 12345')

    @pytest.mark.parametrize("n", range(3))
    def test_after_a_database_setting(db, n):
        assert_fresh(db)

    @pytest.mark.parametrize("n", range(3))
    @pytest.mark.seamtest(fixtures=["one_item"])
    def test_fixture_layer(db, n):
        assert_fresh(db, items=1)
        dirty(db)
"""


def test_recycled_databases_are_indistinguishable_from_fresh_clones(
    inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    write_files(inner, "migrations", SCHEMA)
    write_files(
        inner, "tests/fixtures", {"one_item.sql": "INSERT INTO items (kind) VALUES ('a');\n"}
    )
    write_ini(
        inner,
        seamtest_migrations="migrations",
        seamtest_db_prefix=db_prefix,
        seamtest_pool_size="1",
    )
    write_files(inner, "tests", {"test_recycled.py": TESTS})
    result = run_inner(inner, f"--seamtest-url={pg_server.url()}", "-p", "no:randomly")
    result.assert_outcomes(passed=13)
    out = result.stdout.str()
    pool = re.search(
        r"pool: \d+ hits, \d+ misses; (\d+) cloned, (\d+) recycled, (\d+) discarded", out
    )
    assert pool, out
    _cloned, recycled, discarded = map(int, pool.groups())
    assert recycled >= 8  # most tests ran on a recycled database...
    assert discarded >= 1  # ...but not after ALTER DATABASE: that one was replaced
    assert "layer built" in out
    assert "fixtures one_item" in out
