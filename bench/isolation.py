"""Per-test cost of seamtest's isolation strategies, side by side (issue 3).

Part 1 runs real pytest sessions, one per strategy and schema, each with N copies of one
test (insert a user and an order, commit, read them back), and reports seamtest's own
setup and teardown per test (the numbers behind the terminal summary's ``setup p50 ...
teardown p50``) next to what a user sees: pytest's setup + call + teardown per test.

Part 2 is a bare loop (no pytest) of the ways to clean a shared database after a test
dirtied two tables: ROLLBACK (the transaction strategy), TRUNCATE of every table,
DELETE from every table plus sequence resets, and seamtest's reset (only the tables the
test dirtied, tracked by triggers, in one server-side call).

    python bench/isolation.py            # N=200 tests per session, 50 cleanup loops
    python bench/isolation.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from _common import (
    Schema,
    SessionResult,
    create_template,
    drop_database,
    heading,
    machine_line,
    make_project,
    ms,
    pct,
    ratio,
    run_pytest,
    schemas,
    server,
    table,
    workdir,
)
from psycopg import sql

from seamtest import _reset

#: (label, ini settings). The leak detector is on by default under reset and unique
#: ("auto"), so those run twice: as shipped, and with it off, to show what it costs.
STRATEGIES: tuple[tuple[str, dict[str, str]], ...] = (
    ("transaction", {"seamtest_isolation": "transaction"}),
    ("database", {"seamtest_isolation": "database"}),
    ("reset", {"seamtest_isolation": "reset"}),
    ("reset, leaks off", {"seamtest_isolation": "reset", "seamtest_leaks": "off"}),
    ("unique", {"seamtest_isolation": "unique"}),
    ("unique, leaks off", {"seamtest_isolation": "unique", "seamtest_leaks": "off"}),
)
SEAMTEST_CONFTEST = '''
import pytest


@pytest.fixture
def conn(db):
    """The same test body runs under every strategy."""
    return db
'''


def run_strategies(schema: Schema, tests: int, root: Path) -> list[SessionResult]:
    schema.write(root / "migrations")
    results = []
    for index, (label, ini) in enumerate(STRATEGIES):
        project = root / f"p{index}"
        make_project(
            project,
            conftest=SEAMTEST_CONFTEST,
            test_body=schema.test_body,
            tests=tests,
            ini={"seamtest_migrations": "../migrations", **ini},
        )
        results.append(run_pytest(label, project, tests, args=["-p", "no:pytest_postgresql"]))
        print(f"  {schema.name}: {label} done ({results[-1].wall:.1f} s)", flush=True)
    return results


def strategy_table(results: list[SessionResult]) -> str:
    base = next(r for r in results if r.label == "transaction")
    base_st, base_test = pct(base.setup_teardown(), 50), pct(base.durations, 50)
    rows = []
    for r in results:
        both = r.setup_teardown()
        rows.append(
            [
                r.label,
                f"{ms(pct(r.setup(), 50))} / {ms(pct(r.setup(), 95))}",
                f"{ms(pct(r.teardown(), 50))} / {ms(pct(r.teardown(), 95))}",
                f"{ms(pct(both, 50))} / {ms(pct(both, 95))}",
                ratio(pct(both, 50), base_st),
                f"{ms(pct(r.durations, 50))} / {ms(pct(r.durations, 95))}",
                ratio(pct(r.durations, 50), base_test),
                f"{r.rate:.0f}",
            ]
        )
    headers = [
        "strategy",
        "seamtest setup p50 / p95 ms",
        "teardown p50 / p95 ms",
        "setup+teardown p50 / p95 ms",
        "vs transaction",
        "pytest per test p50 / p95 ms",
        "vs transaction",
        "tests/s (whole session)",
    ]
    return table(headers, rows)


# -- part 2: cleaning a shared database ----------------------------------------------------
def _dirty(conn: psycopg.Connection[Any], schema: Schema, i: int) -> None:
    body = schema.test_body
    exec(compile(body, "<test>", "exec"), {"conn": conn, "i": i})


def _sequences(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> list[str]:
    rows = conn.execute(
        "SELECT pg_get_serial_sequence(t, 'id') FROM unnest(%s::text[]) AS t", [list(tables)]
    ).fetchall()
    return [r[0] for r in rows if r[0]]


def cleanup_methods(
    endpoint: Any, schema: Schema, template: str, loops: int
) -> dict[str, list[float]]:
    """Seconds per cleanup, for each method, each on its own clone of ``template``."""
    results: dict[str, list[float]] = {}
    reverse = tuple(reversed(schema.tables))  # children before parents for DELETE

    def truncate(conn: psycopg.Connection[Any]) -> Callable[[], None]:
        query = sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in schema.tables)
        )
        return lambda: conn.execute(query)

    def delete(conn: psycopg.Connection[Any]) -> Callable[[], None]:
        statements = [sql.SQL("DELETE FROM {}").format(sql.Identifier(t)) for t in reverse]
        statements += [
            sql.SQL("SELECT setval({}, 1, false)").format(sql.Literal(s))
            for s in _sequences(conn, schema.tables)
        ]
        query = sql.SQL("; ").join(statements)  # one round trip
        return lambda: conn.execute(query)

    def reset(conn: psycopg.Connection[Any]) -> Callable[[], None]:
        conn.autocommit = False
        _reset.instrument(conn)
        conn.autocommit = True
        return lambda: _reset.reset(conn)

    methods: dict[str, Callable[[psycopg.Connection[Any]], Callable[[], None]] | None] = {
        "ROLLBACK (transaction)": None,
        "TRUNCATE all tables": truncate,
        "DELETE all tables + setval": delete,
        "seamtest reset (dirty tables)": reset,
    }
    with endpoint.connect() as admin:
        for label, prepare in methods.items():
            name = f"seamtest_bench_clean_{len(results)}"
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
            try:
                times = []
                with (
                    psycopg.connect(endpoint.conninfo(name)) as test,
                    psycopg.connect(endpoint.conninfo(name), autocommit=True) as cleaner,
                ):
                    # A lock left by the test connection must fail the run, not hang it.
                    cleaner.execute("SET lock_timeout = '10s'")
                    clean = prepare(cleaner) if prepare else None
                    for i in range(loops):
                        if clean is None:  # the transaction strategy: commits are savepoints
                            test.execute("SAVEPOINT s")
                            _dirty_no_commit(test, schema, i)
                            started = time.perf_counter()
                            test.rollback()
                        else:
                            _dirty(test, schema, i)
                            test.commit()  # end the read's transaction: it holds locks
                            started = time.perf_counter()
                            clean()
                        times.append(time.perf_counter() - started)
                results[label] = times
            finally:
                drop_database(admin, name)
    return results


def _dirty_no_commit(conn: psycopg.Connection[Any], schema: Schema, i: int) -> None:
    body = schema.test_body.replace("conn.commit()", "conn.execute('RELEASE SAVEPOINT s')")
    exec(compile(body, "<test>", "exec"), {"conn": conn, "i": i})


def cleanup_table(per_schema: dict[str, dict[str, list[float]]]) -> str:
    names = list(per_schema)
    headers = ["cleanup after a test that wrote 2 tables"]
    for name in names:
        headers += [f"{name} p50 / p95 ms", "vs ROLLBACK"]
    rows = []
    for method in next(iter(per_schema.values())):
        row = [method]
        for name in names:
            times = per_schema[name][method]
            base = pct(per_schema[name]["ROLLBACK (transaction)"], 50)
            row += [f"{ms(pct(times, 50))} / {ms(pct(times, 95))}", ratio(pct(times, 50), base)]
        rows.append(row)
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per pytest session")
    parser.add_argument("--loops", type=int, default=50, help="iterations per cleanup method")
    parser.add_argument("--schemas", default="shop,wide", help="comma-separated: shop, wide")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 tests, 10 loops")
    args = parser.parse_args()
    if args.quick:
        args.tests, args.loops = 20, 10
    chosen = schemas(args.schemas.split(","))
    started = time.perf_counter()
    print(f"isolation: {args.tests} tests per session, {args.loops} cleanup loops")
    print(machine_line(), flush=True)

    sessions = {}
    with workdir("isolation") as root:
        for index, schema in enumerate(chosen):
            sessions[schema.name] = run_strategies(schema, args.tests, root / f"s{index}")
    cleanups = {}
    with server() as endpoint:
        for index, schema in enumerate(chosen):
            template = f"seamtest_bench_tpl_{index}"
            create_template(endpoint, template, schema)
            try:
                cleanups[schema.name] = cleanup_methods(endpoint, schema, template, args.loops)
            finally:
                with endpoint.connect() as admin:
                    drop_database(admin, template)
            print(f"  {schema.name}: cleanup loops done", flush=True)

    for name, results in sessions.items():
        heading(f"Isolation strategies, {name}: {args.tests} tests per session (pytest)")
        print(strategy_table(results))
    heading(f"Cleaning a shared database ({args.loops} loops, no pytest)")
    print(cleanup_table(cleanups))
    print(f"\nisolation.py finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
