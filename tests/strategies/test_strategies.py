"""The four isolation strategies, mixed in one file, run by real pytest sessions.

Every inner test asserts the state it starts from, so a strategy that leaked anything
(rows, sequence values, tables, large objects, settings) fails a later test. Inner
sessions use the suite's shared server (``--seamtest-url``).
"""

from __future__ import annotations

import pytest

from seamtest._server import Endpoint
from tests.helpers import databases_like, like_prefix, run_inner, write_files, write_ini

SCHEMA = {
    "0001_shop.sql": """\
        CREATE TABLE users (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            email text NOT NULL UNIQUE
        );
        CREATE TABLE orders (
            id serial PRIMARY KEY,
            user_id bigint NOT NULL REFERENCES users (id),
            total numeric(10, 2) NOT NULL CHECK (total >= 0)
        );
        CREATE TABLE countries (code text PRIMARY KEY);
        INSERT INTO countries VALUES ('DE'), ('FR');
        """,
}
FIXTURES = {"users.sql": "INSERT INTO users (email) VALUES ('ada@example.test');\n"}

MIXED = """
    import psycopg
    import pytest

    pytestmark = pytest.mark.parametrize("n", range(3))

    def assert_fresh(conn, users=0):
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders),"
            " (SELECT string_agg(code, ',' ORDER BY code) FROM countries)"
        ).fetchone()
        assert counts == (users, 0, "DE,FR")

    def place_order(conn, email):
        uid = conn.execute(
            "INSERT INTO users (email) VALUES (%s) RETURNING id", [email]
        ).fetchone()[0]
        conn.execute("INSERT INTO orders (user_id, total) VALUES (%s, 9.99)", [uid])
        return uid

    @pytest.mark.seamtest(isolation="database")
    def test_database(db, db_url, n):
        assert_fresh(db)
        assert place_order(db, "a@example.test") == 1  # identity starts afresh
        db.commit()
        with psycopg.connect(db_url) as other:  # a second connection sees the commit
            assert other.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
        db.execute("DELETE FROM countries WHERE code = 'DE'")
        db.commit()

    @pytest.mark.seamtest(isolation="transaction")
    def test_transaction(db, n):
        assert_fresh(db)
        place_order(db, "t@example.test")
        db.commit()  # a savepoint: kept on this connection, rolled back after the test
        with pytest.raises(psycopg.errors.UniqueViolation):
            place_order(db, "t@example.test")
        db.rollback()  # back to the last commit
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1
        with db.transaction():  # nests as a savepoint
            db.execute("DELETE FROM countries")
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute("INSERT INTO orders (user_id, total) VALUES (1, -1)")
        db.commit()  # committing a failed transaction rolls it back, as PostgreSQL does:
        # the DELETE after the last commit is undone, the user committed before stays
        assert db.execute("SELECT count(*) FROM countries").fetchone()[0] == 2
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1

    @pytest.mark.seamtest(isolation="transaction")
    async def test_transaction_async(adb, db, n):
        assert_fresh(db)
        await adb.execute("INSERT INTO users (email) VALUES ('x@example.test')")
        await adb.commit()
        # db and adb share the test's one transaction
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1

    @pytest.mark.seamtest(isolation="reset", fixtures=["users"])
    def test_reset(db, db_url, n):
        assert_fresh(db, users=1)
        assert place_order(db, "r@example.test") == 2  # identity reset after each test
        db.execute("DELETE FROM countries WHERE code = 'FR'")
        db.execute("SELECT lo_create(0)")
        db.commit()
        with psycopg.connect(db_url) as other:
            assert other.execute("SELECT count(*) FROM countries").fetchone()[0] == 1

    @pytest.mark.seamtest(isolation="reset")
    def test_reset_schema_change(db, n):
        assert db.execute("SELECT to_regclass('scratch')").fetchone()[0] is None
        db.execute("CREATE TABLE scratch (id int)")
        db.commit()

    @pytest.mark.seamtest(isolation="unique")
    def test_unique(db, unique, n):
        email = unique.email()
        db.execute("INSERT INTO users (email) VALUES (%s)", [email])
        db.commit()
        assert db.execute(
            "SELECT count(*) FROM users WHERE email = %s", [email]
        ).fetchone()[0] == 1

    @pytest.mark.seamtest(isolation="unique")
    async def test_unique_async(adb, unique, n):
        await adb.execute("INSERT INTO users (email) VALUES (%s)", [unique.email()])
        await adb.commit()
"""


@pytest.fixture
def project(inner: pytest.Pytester, db_prefix: str) -> pytest.Pytester:
    write_files(inner, "migrations", SCHEMA)
    write_files(inner, "tests/fixtures", FIXTURES)
    write_ini(
        inner,
        seamtest_migrations="migrations",
        seamtest_db_prefix=db_prefix,
        asyncio_mode="auto",
    )
    write_files(inner, "tests", {"test_mixed.py": MIXED})
    return inner


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_all_four_strategies_in_one_file(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str, workers: list[str]
) -> None:
    result = run_inner(project, f"--seamtest-url={pg_server.url()}", "-p", "asyncio", *workers)
    result.assert_outcomes(passed=21)
    # The unique strategy's run-wide database, the shared ones and the clones are gone.
    assert databases_like(pg_server, like_prefix(db_prefix + "u_")) == set()
    assert databases_like(pg_server, like_prefix(db_prefix + "r_")) == set()
    assert databases_like(pg_server, like_prefix(db_prefix + "t_")) == set()


LEAKY = """
    import psycopg
    import pytest

    @pytest.mark.seamtest(isolation="reset")
    def test_leaves_a_database_setting(db):
        name = db.execute("SELECT current_database()").fetchone()[0]
        db.commit()
        db.autocommit = True
        db.execute(f'ALTER DATABASE "{name}" SET work_mem = 12345')

    @pytest.mark.seamtest(isolation="reset")
    def test_after_it(db):
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0

    @pytest.mark.seamtest(isolation="transaction", leaks="warn")
    def test_commits_behind_the_transaction(db):
        info = db.info
        with psycopg.connect(
            host=info.host, port=info.port, user=info.user, dbname=info.dbname,
            password=info.password, autocommit=True,
        ) as other:
            other.execute("INSERT INTO users (email) VALUES ('leak@example.test')")
"""


def test_leak_detector_names_the_leaking_tests(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    write_files(project, "tests", {"test_leaky.py": LEAKY})
    result = run_inner(project, f"--seamtest-url={pg_server.url()}", "tests/test_leaky.py")
    result.assert_outcomes(passed=3, warnings=2)
    out = result.stdout.str()
    assert "test_leaves_a_database_setting left state behind under isolation='reset'" in out
    assert "database-level settings changed" in out
    assert "test_commits_behind_the_transaction left state behind" in out
    assert "table public.users has 1 rows (expected 0)" in out


def test_leaks_error_mode_fails_the_leaking_test(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    write_files(project, "tests", {"test_leaky.py": LEAKY})
    result = run_inner(
        project,
        f"--seamtest-url={pg_server.url()}",
        "tests/test_leaky.py",
        "-o",
        "seamtest_leaks=error",
    )
    # The reset test errors; the transaction test's own marker (leaks="warn") wins.
    result.assert_outcomes(passed=3, errors=1, warnings=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaves_a_database_setting*"])


TRANSACTION_LIMITS = """
    import pytest
    from seamtest import TransactionIsolationError

    pytestmark = pytest.mark.seamtest(isolation="transaction")

    def test_db_url_is_refused(db_url):
        pass

    def test_autocommit_is_refused(db):
        with pytest.raises(TransactionIsolationError, match="isolation='database'"):
            db.autocommit = True
"""


def test_transaction_strategy_says_what_cannot_work(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    write_files(project, "tests", {"test_limits.py": TRANSACTION_LIMITS})
    result = run_inner(project, f"--seamtest-url={pg_server.url()}", "tests/test_limits.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*db_url is not available under isolation='transaction'*uncommitted data*"]
    )


def test_unknown_isolation_fails_collection_listing_the_choices(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    write_files(
        project,
        "tests",
        {
            "test_typo.py": """
                import pytest

                @pytest.mark.seamtest(isolation="rollback")
                def test_x(db):
                    pass
            """
        },
    )
    result = run_inner(project, f"--seamtest-url={pg_server.url()}", "tests/test_typo.py")
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        ["*isolation='rollback': choose one of 'database', 'transaction', 'reset', 'unique'*"]
    )


TWO_WRITERS = """
    import psycopg
    import pytest

    @pytest.mark.parametrize("isolation", ["database", "reset"])
    def test_two_sessions_write_one_table_without_waiting(request, isolation):
        request.applymarker(pytest.mark.seamtest(isolation=isolation))
        db = request.getfixturevalue("db")
        db_url = request.getfixturevalue("db_url")
        db.execute("INSERT INTO countries VALUES ('IT')")  # transaction left open
        with psycopg.connect(db_url, options="-c lock_timeout=2s") as other:
            other.execute("INSERT INTO countries VALUES ('ES')")  # must not wait for db
"""


def test_change_tracking_never_makes_writers_wait(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    write_files(project, "tests", {"test_writers.py": TWO_WRITERS})
    result = run_inner(project, f"--seamtest-url={pg_server.url()}", "tests/test_writers.py")
    result.assert_outcomes(passed=2)
