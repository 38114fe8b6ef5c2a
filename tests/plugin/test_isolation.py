"""Real pytest sessions: every test sees its own fresh, migrated database and nothing else."""

from __future__ import annotations

import json

import pytest

from seamtest._server import Endpoint
from tests.helpers import ITEMS_MIGRATION, on_shared_server, run_inner, write_files

#: Every test inserts a row of its own and must then see the seed row and that row only;
#: each records which database it had. Were any state shared, the later tests would see
#: the earlier ones' rows (they commit).
SYNC_TESTS = """
    import json, os, pathlib

    import psycopg
    import pytest

    OUT = pathlib.Path(__file__).parent / "out"
    FRESH_SEQUENCES = True  # sequences are not transactional: rollback isolation keeps counting

    def record(test, dbname):
        OUT.mkdir(exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (OUT / f"{test}.json").write_text(json.dumps({"db": dbname, "worker": worker}))

    @pytest.mark.parametrize("n", range(4))
    def test_db(db, n):
        db.execute("INSERT INTO items (label) VALUES (%s)", [f"db-{n}"])
        db.commit()
        rows = db.execute("SELECT id, label FROM items ORDER BY id").fetchall()
        assert [label for _, label in rows] == ["seed", f"db-{n}"]
        if FRESH_SEQUENCES:
            assert [id_ for id_, _ in rows] == [1, 2]
        record(f"db-{n}", db.execute("SELECT current_database()").fetchone()[0])

    @pytest.mark.parametrize("n", range(4))
    def test_db_url(db_url, n):
        with psycopg.connect(db_url) as writer:
            writer.execute("INSERT INTO items (label) VALUES (%s)", [f"url-{n}"])
        with psycopg.connect(db_url) as reader:  # a second connection sees the commit
            rows = reader.execute("SELECT id, label FROM items ORDER BY id").fetchall()
            assert rows == [(1, "seed"), (2, f"url-{n}")]  # sequences start afresh too
            record(f"url-{n}", reader.execute("SELECT current_database()").fetchone()[0])
"""

ASYNCIO_TESTS = """
    import json, pathlib

    import pytest

    OUT = pathlib.Path(__file__).parent / "out"
    FRESH_SEQUENCES = True

    @pytest.mark.parametrize("n", range(3))
    async def test_adb(adb, n):
        await adb.execute("INSERT INTO items (label) VALUES (%s)", [f"adb-{n}"])
        await adb.commit()
        cur = await adb.execute("SELECT id, label FROM items ORDER BY id")
        rows = await cur.fetchall()
        assert [label for _, label in rows] == ["seed", f"adb-{n}"]
        if FRESH_SEQUENCES:
            assert [id_ for id_, _ in rows] == [1, 2]
        cur = await adb.execute("SELECT current_database()")
        OUT.mkdir(exist_ok=True)
        (OUT / f"adb-{n}.json").write_text(json.dumps({"db": (await cur.fetchone())[0]}))
"""

ANYIO_TESTS = """
    import json, pathlib

    import pytest

    OUT = pathlib.Path(__file__).parent / "out"

    @pytest.fixture
    def anyio_backend():
        return "asyncio"

    @pytest.mark.anyio
    @pytest.mark.parametrize("n", range(3))
    async def test_adb_anyio(adb, n):
        await adb.execute("INSERT INTO items (label) VALUES (%s)", [f"anyio-{n}"])
        await adb.commit()
        cur = await adb.execute("SELECT id, label FROM items ORDER BY id")
        assert await cur.fetchall() == [(1, "seed"), (2, f"anyio-{n}")]
        cur = await adb.execute("SELECT current_database()")
        OUT.mkdir(exist_ok=True)
        (OUT / f"anyio-{n}.json").write_text(json.dumps({"db": (await cur.fetchone())[0]}))
"""


def records(pytester: pytest.Pytester) -> dict[str, dict[str, str]]:
    out = pytester.path / "out"
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


@pytest.fixture
def project(inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str) -> pytest.Pytester:
    """A project on the shared server, under a prefix whose databases are dropped after."""
    on_shared_server(inner, pg_server, db_prefix, seamtest_migrations="migrations")
    write_files(inner, "migrations", ITEMS_MIGRATION)
    return inner


def test_serial_session_gives_each_test_its_own_database(project: pytest.Pytester) -> None:
    project.makepyfile(test_sync=SYNC_TESTS, test_async=ASYNCIO_TESTS)
    result = run_inner(project, "-p", "asyncio", "--asyncio-mode=auto")
    result.assert_outcomes(passed=11)
    assert len(records(project)) == 11  # every test got as far as recording


def test_xdist_session_gives_each_test_its_own_database(project: pytest.Pytester) -> None:
    project.makepyfile(test_sync=SYNC_TESTS, test_async=ASYNCIO_TESTS)
    result = run_inner(project, "-n", "2", "-p", "asyncio", "--asyncio-mode=auto")
    result.assert_outcomes(passed=11)
    seen = records(project)
    assert len(seen) == 11
    # xdist's load scheduling hands each worker a share of the eight sync tests.
    assert {r["worker"] for k, r in seen.items() if "worker" in r} == {"gw0", "gw1"}


def test_anyio_tests_get_adb(project: pytest.Pytester) -> None:
    project.makepyfile(test_anyio=ANYIO_TESTS)
    result = run_inner(project, "-p", "anyio", "-p", "no:asyncio")
    result.assert_outcomes(passed=3)
    assert len(records(project)) == 3


def test_the_template_is_built_once_and_shared_by_workers_and_runs(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_sync=SYNC_TESTS)
    first = run_inner(project, "-n", "2")
    first.assert_outcomes(passed=8)
    # The user's template (layers, such as the recycling one, are reported as "layer ...").
    lines = [
        line for line in first.outlines if line.startswith("template ") and ": layer " not in line
    ]
    assert len(lines) == 2, first.outlines  # one line per worker
    assert len([line for line in lines if ": built in" in line]) == 1
    assert len([line for line in lines if ": reused in" in line]) == 1

    second = run_inner(project)
    second.assert_outcomes(passed=8)
    [line] = [
        line for line in second.outlines if line.startswith("template ") and ": layer " not in line
    ]
    assert ": reused in" in line
    assert line.split(":")[0] == lines[0].split(":")[0]  # the same template


@pytest.mark.parametrize("isolation", ["transaction", "reset"])
def test_other_isolation_strategies_share_no_state_either(
    project: pytest.Pytester, isolation: str
) -> None:
    # The same committing tests; db_url is for the database strategy (transaction refuses it).
    fresh = f"FRESH_SEQUENCES = {isolation != 'transaction'}"
    project.makepyfile(
        test_sync=SYNC_TESTS.replace("FRESH_SEQUENCES = True", fresh),
        test_async=ASYNCIO_TESTS.replace("FRESH_SEQUENCES = True", fresh),
    )
    result = run_inner(
        project,
        f"--seamtest-isolation={isolation}",
        "-p",
        "asyncio",
        "--asyncio-mode=auto",
        "-k",
        "not test_db_url",
    )
    result.assert_outcomes(passed=7, deselected=4)
    result.stdout.fnmatch_lines([f"*isolation: {isolation} (from --seamtest-isolation)*"])
