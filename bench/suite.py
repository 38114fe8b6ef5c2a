"""A whole suite against every peer: seamtest's strategies, pytest-postgresql, sqlx-style.

One suite of N tests (default 1,000; each inserts a user and an order, commits, reads
them back) runs under each contender, serially and with ``-n 2``, all on the same
PostgreSQL binaries and the same test-tuned server settings (fsync off, data on tmpfs):

* seamtest, isolation ``database`` as shipped (warm pool + recycling), and with
  ``seamtest_pool_size = 0`` and ``seamtest_recycle = false`` (a clone per test on the
  critical path, to show what the pool and recycling buy);
* seamtest ``transaction``, ``reset`` and ``unique``;
* pytest-postgresql (bench-only dependency: ``pip install pytest-postgresql``) with its
  best settings: a template loaded once from the migrations (``load=``), cloned per test.
  Its ``postgresql_proc`` drives ``pg_ctl``, which refuses to run as root, so when the
  benchmark runs as root it uses ``postgresql_noproc`` against a server started here
  (seamtest's embedded server: same binaries, same settings, unix socket);
* sqlx-style: ``CREATE DATABASE`` + run every migration per test, no template, dropped
  after the test (what ``#[sqlx::test]`` does).

    python bench/suite.py                # 1,000 tests per session, serial and -n 2
    python bench/suite.py --tests 200    # smaller
    python bench/suite.py --quick        # smoke run (20 tests, serial only)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    SessionResult,
    heading,
    machine_line,
    make_project,
    ms,
    pct,
    ratio,
    run_pytest,
    server,
    shop_schema,
    table,
    workdir,
)

SEAMTEST_CONFTEST = '''
import pytest


@pytest.fixture
def conn(db):
    """The same test body runs under every contender."""
    return db
'''

#: The server these two reach is started by suite.py and passed in BENCH_PG* variables.
PYTEST_POSTGRESQL_CONFTEST = """
import os
from pathlib import Path

import pytest
from pytest_postgresql import factories

# Path objects: pytest-postgresql reads a str as "module.function" to import.
MIGRATIONS = sorted((Path(__file__).parent.parent / "migrations").glob("*.sql"))

bench_noproc = factories.postgresql_noproc(
    host=os.environ["BENCH_PGHOST"],
    port=int(os.environ["BENCH_PGPORT"]),
    user=os.environ["BENCH_PGUSER"],
    dbname="bench",
    load=MIGRATIONS,  # loaded once into a template, cloned for every test
)
bench_postgresql = factories.postgresql("bench_noproc")


@pytest.fixture
def conn(bench_postgresql):
    return bench_postgresql
"""

SQLX_CONFTEST = '''
import hashlib
import itertools
import os
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

MIGRATIONS = sorted((Path(__file__).parent.parent / "migrations").glob("*.sql"))
COUNTER = itertools.count()
LEDGER = """CREATE TABLE _sqlx_migrations (
    version bigint PRIMARY KEY, description text NOT NULL,
    installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL,
    checksum bytea NOT NULL, execution_time bigint NOT NULL)"""


def conninfo(dbname):
    return make_conninfo(
        host=os.environ["BENCH_PGHOST"],
        port=os.environ["BENCH_PGPORT"],
        user=os.environ["BENCH_PGUSER"],
        dbname=dbname,
    )


@pytest.fixture(scope="session")
def admin():
    with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def conn(admin):
    """What #[sqlx::test] does: a new database, every migration, dropped afterwards."""
    name = f"sqlx_test_{os.getpid()}_{next(COUNTER)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connection = psycopg.connect(conninfo(name))
    try:
        connection.execute(LEDGER)
        connection.commit()
        for version, path in enumerate(MIGRATIONS, 1):
            text = path.read_text()
            connection.execute(text)
            connection.execute(
                "INSERT INTO _sqlx_migrations VALUES (%s, %s, now(), true, %s, 0)",
                (version, path.stem, hashlib.sha384(text.encode()).digest()),
            )
            connection.commit()
        yield connection
    finally:
        connection.close()
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
'''


@dataclass(frozen=True)
class Contender:
    label: str
    conftest: str
    ini: dict[str, str]
    args: tuple[str, ...]
    external_server: bool = False  # needs the BENCH_PG* server started by this script


NO_POOL = {"seamtest_pool_size": "0", "seamtest_recycle": "false"}
SEAMTEST = ("-p", "no:pytest_postgresql")
MIGRATIONS_INI = {"seamtest_migrations": "../migrations"}
CONTENDERS = (
    Contender(
        "seamtest database (pool + recycle)",
        SEAMTEST_CONFTEST,
        {**MIGRATIONS_INI, "seamtest_isolation": "database"},
        SEAMTEST,
    ),
    Contender(
        "seamtest database (clone per test)",
        SEAMTEST_CONFTEST,
        {**MIGRATIONS_INI, "seamtest_isolation": "database", **NO_POOL},
        SEAMTEST,
    ),
    Contender(
        "seamtest transaction",
        SEAMTEST_CONFTEST,
        {**MIGRATIONS_INI, "seamtest_isolation": "transaction"},
        SEAMTEST,
    ),
    Contender(
        "seamtest reset",
        SEAMTEST_CONFTEST,
        {**MIGRATIONS_INI, "seamtest_isolation": "reset"},
        SEAMTEST,
    ),
    Contender(
        "seamtest unique",
        SEAMTEST_CONFTEST,
        {**MIGRATIONS_INI, "seamtest_isolation": "unique"},
        SEAMTEST,
    ),
    Contender(
        "pytest-postgresql (template, noproc)",
        PYTEST_POSTGRESQL_CONFTEST,
        {},
        ("-p", "no:seamtest"),
        external_server=True,
    ),
    Contender(
        "sqlx-style (create + migrate per test)",
        SQLX_CONFTEST,
        {},
        ("-p", "no:seamtest", "-p", "no:pytest_postgresql"),
        external_server=True,
    ),
)
BASELINE = CONTENDERS[0].label


def run_all(
    tests: int, modes: list[str], root: Path, env: dict[str, str], chosen: list[Contender]
) -> dict[tuple[str, str], SessionResult]:
    shop_schema().write(root / "migrations")
    results = {}
    for index, contender in enumerate(chosen):
        project = root / f"c{index}"
        make_project(
            project,
            conftest=contender.conftest,
            test_body=shop_schema().test_body,
            tests=tests,
            ini=contender.ini,
        )
        for mode in modes:
            args = [*contender.args, *(["-n", "2"] if mode == "-n 2" else [])]
            result = run_pytest(
                contender.label, project, tests, args, env if contender.external_server else None
            )
            results[contender.label, mode] = result
            print(f"  {contender.label}, {mode}: {result.wall:.1f} s", flush=True)
    return results


def results_table(
    results: dict[tuple[str, str], SessionResult], modes: list[str], chosen: list[Contender]
) -> str:
    headers = ["contender"]
    for mode in modes:
        headers += [f"{mode}: wall s", "tests/s", f"vs {BASELINE.split(' (')[0]}"]
    if len(modes) > 1:
        headers.append("-n 2 vs serial")
    headers.append("seamtest setup p50 / p95 ms (serial)")
    rows = []
    for contender in chosen:
        row = [contender.label]
        for mode in modes:
            r, base = results[contender.label, mode], results[BASELINE, mode]
            row += [f"{r.wall:.1f}", f"{r.rate:.0f}", ratio(r.rate, base.rate)]
        if len(modes) > 1:
            row.append(
                ratio(
                    results[contender.label, "-n 2"].rate, results[contender.label, "serial"].rate
                )
            )
        serial = results[contender.label, modes[0]]
        row.append(
            f"{ms(pct(serial.setup(), 50))} / {ms(pct(serial.setup(), 95))}"
            if serial.seamtest
            else "-"
        )
        rows.append(row)
    return table(headers, rows)


def pool_lines(results: dict[tuple[str, str], SessionResult]) -> list[str]:
    lines = []
    for (label, mode), r in results.items():
        pool = (r.seamtest or {}).get("pool")
        if pool:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(pool.items()))
            lines.append(f"- {label}, {mode}: {counts}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=1000, help="tests per session")
    parser.add_argument("--serial-only", action="store_true", help="skip the -n 2 sessions")
    parser.add_argument(
        "--only", default="", help="comma-separated substrings of contender names to run"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 tests, serial")
    args = parser.parse_args()
    if args.quick:
        args.tests, args.serial_only = 20, True
    modes = ["serial"] if args.serial_only else ["serial", "-n 2"]
    chosen = [
        c for c in CONTENDERS if not args.only or any(s in c.label for s in args.only.split(","))
    ]
    if not any(c.label == BASELINE for c in chosen):
        chosen.insert(0, CONTENDERS[0])

    def skip(c: Contender) -> bool:
        return c.label.startswith("pytest-postgresql") and (
            importlib.util.find_spec("pytest_postgresql") is None
        )

    skipped = [c.label for c in chosen if skip(c)]
    chosen = [c for c in chosen if not skip(c)]
    started = time.perf_counter()
    print(f"suite: {args.tests} tests per session; {', '.join(modes)}")
    print(machine_line(), flush=True)
    for label in skipped:
        print(f"  skipped {label}: pip install pytest-postgresql (bench extra)")

    with workdir("suite") as root, server() as endpoint:
        env = {
            "BENCH_PGHOST": endpoint.socket_dir or endpoint.host,
            "BENCH_PGPORT": str(endpoint.port),
            "BENCH_PGUSER": endpoint.user,
        }
        os.environ.pop("PGPASSWORD", None)
        results = run_all(args.tests, modes, root, env, chosen)

    heading(f"A {args.tests}-test suite (insert a user and an order, read back)")
    print(results_table(results, modes, chosen))
    lines = pool_lines(results)
    if lines:
        print("\nseamtest pool counters:\n" + "\n".join(lines))
    print(f"\nsuite.py finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
