"""The physical limit: bare loops of clone, drop and connect, with no pytest (issue 8).

Against seamtest's embedded server (same binaries and settings as a run), on the shop
schema and a 100-table schema:

* ``CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY`` and ``WAL_LOG``, each followed
  by ``DROP DATABASE``; PostgreSQL 18's ``file_copy_method = clone`` is probed and
  reported (it needs a filesystem with reflinks);
* a clone that a client connected to, dropped at once after the client closed: the
  ~100 ms wait for the exiting backend, and the same drop after waiting for it to leave;
* connecting: unix socket (trust) vs TCP with SCRAM (seamtest's 16 iterations, and the
  default 4096).

    python bench/limits.py            # 100 loops each
    python bench/limits.py --quick    # 15 loops each
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Callable
from typing import Any

import psycopg
from _common import (
    Schema,
    create_template,
    drop_database,
    heading,
    machine_line,
    ms,
    pct,
    ratio,
    schemas,
    server,
    table,
)
from psycopg import sql
from psycopg.conninfo import make_conninfo

from seamtest._server import Endpoint


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def wait_unused(admin: psycopg.Connection[Any], name: str) -> None:
    while admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]
    ).fetchone() != (0,):
        time.sleep(0.001)


def clone_loops(endpoint: Endpoint, template: str, loops: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    tpl = sql.Identifier(template)
    with endpoint.connect() as admin:

        def create(name: str, strategy: str) -> float:
            return timed(
                lambda: admin.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
                        sql.Identifier(name), tpl, sql.SQL(strategy)
                    )
                )
            )

        def drop(name: str) -> float:
            return timed(
                lambda: admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
            )

        variants = [("FILE_COPY", "FILE_COPY"), ("WAL_LOG", "WAL_LOG")]
        if _has_setting(admin):  # PostgreSQL 18+; it runs last, so nothing else sees it
            variants.append(("FILE_COPY, file_copy_method=clone", "FILE_COPY"))
        for label, strategy in variants:
            if "clone" in label:
                try:
                    admin.execute("SET file_copy_method = clone")
                except psycopg.Error as exc:
                    results[f"file_copy_method=clone: n/a ({exc.diag.message_primary})"] = []
                    continue
            creates, drops = [], []
            try:
                for i in range(loops):
                    name = f"seamtest_bench_limit_{i}"
                    creates.append(create(name, strategy))
                    drops.append(drop(name))
            except psycopg.Error as exc:
                results[f"CREATE {label}: failed ({exc.diag.message_primary})"] = []
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                continue
            results[f"CREATE ... STRATEGY {label}"] = creates
            results[f"DROP (after {label}, never connected)"] = drops
            results[f"CREATE {label} + DROP"] = [a + b for a, b in zip(creates, drops, strict=True)]
        if _has_setting(admin):
            admin.execute("RESET file_copy_method")

        # The trap: DROP right after the test's connection closed waits for the backend.
        eager, patient = [], []
        for i in range(loops):
            name = f"seamtest_bench_limit_{i}"
            create(name, "FILE_COPY")
            psycopg.connect(endpoint.conninfo(name)).close()
            eager.append(drop(name))
            create(name, "FILE_COPY")
            psycopg.connect(endpoint.conninfo(name)).close()
            patient.append(timed(lambda name=name: (wait_unused(admin, name), drop(name))))
        results["DROP right after a client closed"] = eager
        results["wait for its backend to exit, then DROP"] = patient
    return results


def _has_setting(admin: psycopg.Connection[Any]) -> bool:
    row = admin.execute("SELECT 1 FROM pg_settings WHERE name = 'file_copy_method'").fetchone()
    return row is not None


def connect_loops(endpoint: Endpoint, loops: int) -> dict[str, list[float]]:
    password = secrets.token_urlsafe(16)
    with endpoint.connect() as admin:
        admin.execute("SET scram_iterations = 4096")  # PostgreSQL's default
        admin.execute(
            sql.SQL("CREATE ROLE bench_scram LOGIN PASSWORD {}").format(sql.Literal(password))
        )
    tcp = {"host": "127.0.0.1", "port": endpoint.port, "dbname": "postgres"}
    variants = {
        "unix socket, trust": endpoint.conninfo(),
        "TCP, SCRAM (16 iterations, as seamtest sets)": make_conninfo(
            **tcp, user=endpoint.user, password=endpoint.password
        ),
        "TCP, SCRAM (4096 iterations, PostgreSQL's default)": make_conninfo(
            **tcp, user="bench_scram", password=password
        ),
    }
    results = {}
    try:
        for label, conninfo in variants.items():
            results[label] = [
                timed(lambda c=conninfo: psycopg.connect(c).close()) for _ in range(loops)
            ]
    finally:
        with endpoint.connect() as admin:
            admin.execute("DROP ROLE bench_scram")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=100)
    parser.add_argument("--schemas", default="shop,wide")
    parser.add_argument("--quick", action="store_true", help="smoke run: 15 loops")
    args = parser.parse_args()
    if args.quick:
        args.loops = 15
    chosen: list[Schema] = schemas(args.schemas.split(","))
    started = time.perf_counter()
    print(f"limits: {args.loops} loops")
    print(machine_line(), flush=True)
    clones: dict[str, dict[str, list[float]]] = {}
    with server() as endpoint:
        for index, schema in enumerate(chosen):
            template = f"seamtest_bench_tpl_{index}"
            create_template(endpoint, template, schema)
            try:
                clones[schema.name] = clone_loops(endpoint, template, args.loops)
            finally:
                with endpoint.connect() as admin:
                    drop_database(admin, template)
            print(f"  {schema.name}: clone loops done", flush=True)
        connects = connect_loops(endpoint, args.loops * 2)

    heading(f"Clone and drop, no pytest ({args.loops} loops)")
    names = list(clones)
    headers = ["operation"]
    for name in names:
        headers += [f"{name} p50 / p95 ms", "vs CREATE FILE_COPY"]
    rows = []
    for label in clones[names[0]]:
        row = [label]
        for name in names:
            values = clones[name].get(label, [])
            base = pct(clones[name]["CREATE ... STRATEGY FILE_COPY"], 50)
            row += [f"{ms(pct(values, 50))} / {ms(pct(values, 95))}", ratio(pct(values, 50), base)]
        rows.append(row)
    print(table(headers, rows))
    for name in names:
        c = clones[name]
        ceiling = pct(c["CREATE FILE_COPY + DROP"], 50) + pct(connects["unix socket, trust"], 50)
        print(
            f"\n{name}: clone + drop + connect = {ms(ceiling)} ms, a serial ceiling of "
            f"{1 / ceiling:.0f} databases/s with everything on the critical path"
        )

    heading(f"Connect and close, no pytest ({args.loops * 2} loops)")
    base = pct(connects["unix socket, trust"], 50)
    print(
        table(
            ["connection", "p50 / p95 ms", "vs unix socket"],
            [
                [label, f"{ms(pct(v, 50))} / {ms(pct(v, 95))}", ratio(pct(v, 50), base)]
                for label, v in connects.items()
            ],
        )
    )
    print(f"\nlimits.py finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
