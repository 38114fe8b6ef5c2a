"""``seamtest_app_connection``, and the errors for apps seamtest cannot load or wire."""

from __future__ import annotations

import pytest

from tests.helpers import run_inner, write_ini

SHARED_CONNECTION_TESTS = """
    import psycopg

    def labels(db):
        return [r[0] for r in db.execute("SELECT label FROM items ORDER BY id")]

    def test_the_app_sees_the_tests_uncommitted_rows(client, db):
        db.execute("INSERT INTO items (label) VALUES ('uncommitted')")
        assert client.get("/items").json() == ["seed", "uncommitted"]
        assert client.post("/conflict").status_code == 409  # its insert is undone alone
        assert labels(db) == ["seed", "uncommitted"]
        assert client.post("/items", json={"label": "posted"}).status_code == 201
        assert labels(db) == ["seed", "uncommitted", "posted"]

    def test_a_request_outside_a_transaction_commits(client, db, db_url):
        assert client.post("/items", json={"label": "posted"}).status_code == 201
        with psycopg.connect(db_url) as other:
            assert [r[0] for r in other.execute("SELECT label FROM items ORDER BY id")] == [
                "seed", "posted"
            ]

    async def test_aclient_shares_it_too(aclient, db):
        db.execute("INSERT INTO items (label) VALUES ('mine')")
        assert (await aclient.get("/items")).json() == ["seed", "mine"]
"""

USES_CLIENT = """
    def test_it(client):
        pass
"""


def test_the_app_uses_the_tests_connection(project: pytest.Pytester) -> None:
    project.makepyfile(test_shared=SHARED_CONNECTION_TESTS)
    result = run_inner(
        project,
        "--seamtest-app-connection=fastapp:get_connection",
        "-p",
        "asyncio",
        "--asyncio-mode=auto",
    )
    result.assert_outcomes(passed=3)
    assert any("its fastapp:get_connection yields db" in line for line in result.outlines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--seamtest-app=fastapp:app_object"],
            "ConfigError: seamtest_app (from --seamtest-app) = 'fastapp:app_object' is an ASGI "
            "application object, not a factory",
        ),
        (
            ["--seamtest-app=no_such_module:create_app"],
            "cannot import 'no_such_module'",
        ),
        (
            ["--seamtest-app-connection=fastapp:unused_dependency"],
            "none of the app's routes depends on it",
        ),
        (
            [
                "--seamtest-app=flaskapp:create_app",
                "--seamtest-app-connection=fastapp:get_connection",
            ],
            "the app (Flask) has no FastAPI dependency_overrides",
        ),
    ],
    ids=["app-object", "not-importable", "unused-dependency", "not-fastapi"],
)
def test_an_app_that_cannot_be_loaded_or_wired_says_why(
    project: pytest.Pytester, args: list[str], message: str
) -> None:
    project.makepyfile(test_it=USES_CLIENT)
    result = run_inner(project, *args)
    result.assert_outcomes(errors=1)
    assert message in result.stdout.str()


def test_a_malformed_app_name_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile(test_it=USES_CLIENT)
    result = run_inner(project, "--seamtest-app=fastapp.create_app")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "seamtest_app (from --seamtest-app) = 'fastapp.create_app': write "
        "'package.module:name'" in result.stderr.str()
    )


def test_no_app_configured_says_what_to_set(project: pytest.Pytester) -> None:
    write_ini(project, seamtest_migrations="migrations", pythonpath=".")
    project.makepyfile(test_it=USES_CLIENT)
    result = run_inner(project)
    result.assert_outcomes(errors=1)
    assert "no application to test: set the ini option seamtest_app" in result.stdout.str()


TRANSACTION_TESTS = """
    import pytest

    pytestmark = pytest.mark.seamtest(isolation="transaction")

    def labels(db):
        return [r[0] for r in db.execute("SELECT label FROM items ORDER BY id")]

    @pytest.mark.parametrize("n", range(3))
    def test_the_app_joins_the_tests_transaction(client, db, n):
        db.execute("INSERT INTO items (label) VALUES (%s)", [f"test-{n}"])
        db.commit()  # a savepoint under this strategy
        assert client.get("/items").json() == ["seed", f"test-{n}"]  # nothing of the others
        assert client.post("/items", json={"label": f"app-{n}"}).status_code == 201
        assert client.post("/conflict").status_code == 409
        assert labels(db) == ["seed", f"test-{n}", f"app-{n}"]

    async def test_aclient_joins_it_too(aclient, db):
        db.execute("INSERT INTO items (label) VALUES ('mine')")
        assert (await aclient.get("/items")).json() == ["seed", "mine"]
"""


def test_under_transaction_isolation_the_app_joins_the_test_transaction(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_tx=TRANSACTION_TESTS)
    result = run_inner(
        project,
        "--seamtest-app-connection=fastapp:get_connection",
        "-p",
        "asyncio",
        "--asyncio-mode=auto",
    )
    result.assert_outcomes(passed=4)


def test_under_transaction_isolation_an_unwired_app_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(test_tx=TRANSACTION_TESTS)
    result = run_inner(project, "-p", "asyncio", "--asyncio-mode=auto")
    result.assert_outcomes(errors=4)
    assert (
        "TransactionIsolationError: this test runs under isolation='transaction'"
        in result.stdout.str()
    )
