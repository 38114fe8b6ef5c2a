"""Real pytest sessions with a real redis-server: PostgreSQL and Redis together, serial
and under ``-n 2``; isolation; a user's own service; the no-engine path; no leftovers."""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import pytest

from seamtest._server import Endpoint
from seamtest.fixtures import marker_arguments
from tests.helpers import run_inner, write_files, write_ini

TESTS = {
    "test_both.py": """\
        import os

        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_db_and_redis(db, redis, redis_url, n):
            assert db.execute("SELECT 1").fetchone() == (1,)
            # written by the previous test on this worker: flushed since
            assert redis.dbsize() == 0
            redis.set("written", str(n))
            with open(os.environ["PIDS"], "a") as out:
                out.write(f"{redis.info()['process_id']}\\n")
            assert redis_url.startswith("redis://:")
            worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
            assert redis_url.endswith(f"/{worker + 1}")  # the worker's own database

        async def test_async(aredis):
            await aredis.set("a", "1")
            assert await aredis.get("a") == b"1"
        """,
}


def _pids_gone(path: os.PathLike[str]) -> set[int]:
    pids = {int(line) for line in Path(path).read_text().split()}
    assert pids
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = set()
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.add(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"redis-server still running after the run: {alive}")


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_postgres_and_redis_together(
    inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str, workers: list[str]
) -> None:
    write_ini(inner, asyncio_mode="auto")
    write_files(inner, ".", TESTS)
    pids = inner.path / "pids"
    os.environ["PIDS"] = str(pids)
    try:
        result = run_inner(
            inner,
            f"--seamtest-url={pg_server.url()}",
            f"--seamtest-db-prefix={db_prefix}",
            *workers,
        )
    finally:
        del os.environ["PIDS"]
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*redis: Redis * from *, started on first use; isolation flush*"])
    assert len(_pids_gone(pids)) == 1  # one server for the run, shared by the workers


def test_no_redis_without_a_test_that_asks(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_plain="def test_plain(): pass")
    result = run_inner(inner, "-n", "2")
    result.assert_outcomes(passed=1)
    assert "seamtest services" not in result.stdout.str()


def test_prefix_isolation_and_env_export(inner: pytest.Pytester) -> None:
    write_ini(
        inner,
        seamtest_redis_isolation="prefix",
        seamtest_services_env=["APP_REDIS={redis.url}"],
    )
    write_files(
        inner,
        ".",
        {
            "conftest.py": """\
                import os
                URL_AT_IMPORT = os.environ["APP_REDIS"]
                """,
            "test_prefix.py": """\
                from conftest import URL_AT_IMPORT

                def test_one(redis, redis_prefix, redis_url):
                    assert redis_prefix.startswith("seamtest:")
                    assert redis_url.endswith("/0") and URL_AT_IMPORT.endswith("/0")
                    redis.set(redis_prefix + "k", "1")
                    redis.set("shared:" + redis_prefix, "1")

                def test_two(redis, redis_prefix):
                    assert not redis.keys(redis_prefix + "*")
                    assert redis.exists("shared:seamtest:") == 0
                """,
        },
    )
    result = run_inner(inner)
    result.assert_outcomes(passed=2)


@pytest.mark.skipif(
    "redis" not in inspect.signature(marker_arguments).parameters,
    reason="the core's marker_arguments does not accept redis= yet",
)
def test_marker_chooses_the_isolation(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_marker="""\
        import pytest

        @pytest.mark.seamtest(redis="prefix")
        def test_prefix(redis_prefix):
            assert redis_prefix

        def test_flush(redis_prefix):
            assert redis_prefix == ""
        """
    )
    run_inner(inner).assert_outcomes(passed=2)


def test_a_users_own_service(inner: pytest.Pytester) -> None:
    write_files(
        inner,
        ".",
        {
            "conftest.py": """\
                import sys
                import urllib.request

                from seamtest._services import NotReady, Service
                from seamtest._services_plugin import service_fixture

                class Web(Service):
                    name = "web"

                    def command(self, launch):
                        return [sys.executable, "-m", "http.server", str(launch.port),
                                "--bind", launch.host, "--directory", str(launch.runtime_dir)]

                    def probe(self, launch):
                        try:
                            url = f"http://{launch.host}:{launch.port}/"
                            urllib.request.urlopen(url, timeout=1).close()
                        except OSError as exc:
                            raise NotReady(str(exc)) from exc

                    def values(self, launch):
                        return {"url": f"http://{launch.host}:{launch.port}/",
                                "dir": str(launch.runtime_dir)}

                web = service_fixture(Web())
                """,
            "test_web.py": """\
                import os
                import urllib.request

                def test_serves(web):
                    with open(os.path.join(web.dir, "hello.txt"), "w") as f:
                        f.write("hi")
                    with urllib.request.urlopen(web.url + "hello.txt") as response:
                        assert response.read() == b"hi"

                def test_same_server(web):
                    assert os.path.exists(os.path.join(web.dir, "hello.txt"))
                """,
        },
    )
    result = run_inner(inner, "-n", "2", "-p", "xdist", "--dist", "loadfile")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*seamtest services*", "web: web; started in * ms"])


def test_container_backend_without_an_engine(inner: pytest.Pytester) -> None:
    write_ini(inner, seamtest_services=["redis = container"])
    inner.makepyfile(
        test_c="def test_c(redis_url): pass\ndef test_k(kafka_bootstrap_servers): pass"
    )
    os.environ["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    try:
        started = time.monotonic()
        result = run_inner(inner, "-rs")
        result.assert_outcomes(skipped=2)
        result.stdout.fnmatch_lines(
            [
                "*service 'redis' (container backend) needs a container engine, and none "
                "answers at unix:///nonexistent/docker.sock (from DOCKER_HOST)*"
            ]
        )
        assert time.monotonic() - started < 30
        result = run_inner(inner, "-o", "seamtest_no_engine=fail")
        result.assert_outcomes(errors=2)
        result.stdout.fnmatch_lines(["*NoContainerEngine*Start Docker or Podman*"])
    finally:
        del os.environ["DOCKER_HOST"]


def test_bad_settings_fail_early(inner: pytest.Pytester) -> None:
    write_ini(inner, seamtest_redis_isolation="truncate")
    inner.makepyfile(test_x="def test_x(): pass")
    result = run_inner(inner)
    result.stderr.fnmatch_lines(
        ["*seamtest_redis_isolation (from ini) = 'truncate': choose one of 'flush', 'prefix'*"]
    )
