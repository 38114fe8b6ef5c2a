"""Real pytest sessions calling a FastAPI and a Flask app through ``client`` and ``aclient``."""

from __future__ import annotations

import pytest

from tests.helpers import run_inner

SYNC_TESTS = """
    import os
    import pathlib

    LOG = pathlib.Path(__file__).parent / f"lifespan.{os.getpid()}.log"

    def labels(db):
        return [r[0] for r in db.execute("SELECT label FROM items ORDER BY id")]

    def test_the_app_and_the_test_agree_on_data(client, db):
        db.execute("INSERT INTO items (label) VALUES ('from-test')")
        db.commit()
        assert client.get("/items").json() == ["seed", "from-test"]
        response = client.post("/items", json={"label": "from-app"})
        assert response.status_code == 201, response.text
        assert labels(db) == ["seed", "from-test", "from-app"]

    def test_startup_ran_before_the_test_and_its_state_reaches_requests(client):
        assert LOG.read_text().splitlines()[-1] == "startup 1"
        assert client.get("/state").json() == {"rows_at_startup": 1}

    def test_each_test_has_a_fresh_database(client):
        assert client.get("/items").json() == ["seed"]
"""

ASYNC_TESTS = """
    import os
    import pathlib

    import pytest

    LOG = pathlib.Path(__file__).parent / f"lifespan.{{os.getpid()}}.log"

    {mark}
    async def test_aclient_and_db_agree(aclient, db):
        db.execute("INSERT INTO items (label) VALUES ('from-test')")
        db.commit()
        assert (await aclient.get("/items")).json() == ["seed", "from-test"]
        assert (await aclient.get("/state")).json() == {{"rows_at_startup": 2}}
        assert (await aclient.post("/items", json={{"label": "x"}})).status_code == 201

    {mark}
    async def test_async_with_runs_the_whole_lifespan_in_the_test(aclient):
        async with aclient:
            assert LOG.read_text().splitlines()[-1] == "startup 1"
            assert (await aclient.get("/items")).json() == ["seed"]
        assert LOG.read_text().splitlines()[-1] == "shutdown"
"""

FLASK_TESTS = """
    import pytest

    def test_flask_with_client(client, db):
        db.execute("INSERT INTO items (label) VALUES ('from-test')")
        db.commit()
        assert client.get("/items").json() == ["seed", "from-test"]
        assert client.post("/items", json={"label": "from-app"}).status_code == 201
        assert [r[0] for r in db.execute("SELECT label FROM items ORDER BY id")] == [
            "seed", "from-test", "from-app"
        ]

    async def test_flask_with_aclient(aclient):
        assert (await aclient.post("/items", json={"label": "a"})).status_code == 201
        assert (await aclient.get("/items")).json() == ["seed", "a"]
"""

BROKEN_TESTS = """
    def test_sync(client):
        pass

    async def test_async(aclient):
        await aclient.get("/")
"""


def lifespan_log(project: pytest.Pytester) -> list[str]:
    """What the inner sessions' apps logged at startup and shutdown, in order per process."""
    logs = sorted(project.path.glob("lifespan.*.log"))
    return [line for log in logs for line in log.read_text().splitlines()]


def test_sync_client_runs_the_lifespan_around_each_test(project: pytest.Pytester) -> None:
    project.makepyfile(test_sync=SYNC_TESTS)
    result = run_inner(project)
    result.assert_outcomes(passed=3)
    assert lifespan_log(project) == ["startup 1", "shutdown"] * 3
    assert any("app: fastapp:create_app (from ini)" in line for line in result.outlines)


@pytest.mark.parametrize(
    ("mode", "mark"), [("auto", ""), ("strict", "@pytest.mark.asyncio")], ids=["auto", "strict"]
)
def test_aclient_runs_the_lifespan_in_the_tests_loop(
    project: pytest.Pytester, mode: str, mark: str
) -> None:
    project.makepyfile(test_async=ASYNC_TESTS.format(mark=mark))
    result = run_inner(project, "-p", "asyncio", f"--asyncio-mode={mode}", "-W", "error")
    result.assert_outcomes(passed=2)
    # The first test never closed its client: seamtest shut the app down after the test.
    assert lifespan_log(project) == ["startup 2", "shutdown", "startup 1", "shutdown"]


def test_a_broken_startup_fails_the_test_with_the_apps_error(project: pytest.Pytester) -> None:
    project.makepyfile(test_broken=BROKEN_TESTS)
    result = run_inner(
        project, "--seamtest-app=fastapp:create_broken_app", "-p", "asyncio", "--asyncio-mode=auto"
    )
    result.assert_outcomes(errors=1, failed=1)  # sync: at setup; async: at the first request
    # Each report (not only the short summary, whose width varies) names both errors.
    output = result.stdout.str()
    sync_report = output.split("ERROR at setup of test_sync")[1].split("_ test_async _")[0]
    async_report = output.split("_ test_async _")[1].split("short test summary")[0]
    for report in (sync_report, async_report):
        assert "AppStartupError: the application's lifespan startup failed" in report
        assert "RuntimeError: cannot reach the payment service" in report


def test_an_app_without_lifespan_support_works(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_raw="""
        def test_sync(client):
            assert client.get("/").text == "raw"

        async def test_async(aclient):
            assert (await aclient.get("/")).text == "raw"
        """
    )
    result = run_inner(
        project, "--seamtest-app=fastapp:create_raw_app", "-p", "asyncio", "--asyncio-mode=auto"
    )
    result.assert_outcomes(passed=2)


def test_flask_app_with_sync_and_async_clients(project: pytest.Pytester) -> None:
    project.makepyfile(test_flask=FLASK_TESTS)
    result = run_inner(
        project, "--seamtest-app=flaskapp:create_app", "-p", "asyncio", "--asyncio-mode=auto"
    )
    result.assert_outcomes(passed=2)


def test_a_factory_without_arguments_reads_database_url(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_env="""
        import os

        def test_it(client, db_url):
            assert os.environ["DATABASE_URL"] == db_url
            assert client.get("/items").json() == ["seed"]

        def test_restored_after(db):
            assert "DATABASE_URL" not in os.environ
        """
    )
    result = run_inner(project, "--seamtest-app=fastapp:create_app_from_environment")
    result.assert_outcomes(passed=2)


def test_a_user_fixture_replaces_the_factory(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        import pytest
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        @pytest.fixture
        def seamtest_app(db_url):
            return Starlette(routes=[Route("/", lambda request: PlainTextResponse(db_url))])
        """
    )
    project.makepyfile(
        test_own="""
        def test_it(client, db_url):
            assert client.get("/").text == db_url
        """
    )
    result = run_inner(project)
    result.assert_outcomes(passed=1)


def test_under_xdist(project: pytest.Pytester) -> None:
    project.makepyfile(test_sync=SYNC_TESTS, test_async=ASYNC_TESTS.format(mark=""))
    result = run_inner(project, "-n", "2", "-p", "asyncio", "--asyncio-mode=auto")
    result.assert_outcomes(passed=5)
    log = lifespan_log(project)
    assert log.count("shutdown") == 5
    assert len(log) == 10
