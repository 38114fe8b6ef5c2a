"""Cold and warm start to the first test (issue 8).

Three pytest sessions of one test each, repeated, medians reported:

* plain: a test that asks for no database (pytest and seamtest's import, no server);
* warm: one database test with the cached initdb'd cluster in place (the usual case);
* warm with ``seamtest up``: the same test against a server kept running between runs
  (started in a private cache directory, stopped afterwards);
* cold: one database test with an empty cache (``SEAMTEST_CACHE_DIR`` pointed at a new
  directory), so initdb runs.

"to first test" is the session's wall time minus the plain session's, and the table also
gives seamtest's own timings from its statistics (cluster, copy, server start, template
build, the first database).

    python bench/startup.py            # 5 repetitions
    python bench/startup.py --quick    # 1 repetition
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    SessionResult,
    heading,
    machine_line,
    make_project,
    ms,
    ratio,
    run_pytest,
    schemas,
    table,
    workdir,
)

DB_CONFTEST = """
import pytest


@pytest.fixture
def conn(db):
    return db
"""
PLAIN_CONFTEST = """
import pytest


@pytest.fixture
def conn():
    return None
"""
ARGS = ("-p", "no:pytest_postgresql")


def seamtest_timings(result: SessionResult) -> dict[str, float]:
    """Seconds per start step, as seamtest recorded them."""
    stats = result.seamtest or {}
    timings = dict((stats.get("server") or {}).get("timings") or {})
    templates = stats.get("templates") or []
    if templates:
        timings["template"] = sum(t["seconds"] for t in templates)
    setup = stats.get("setup_seconds") or []
    if setup:
        timings["first database"] = setup[0]
    return timings


UP = "warm, 'seamtest up' server"


def with_seamtest_up(project: Path, cache: Path, repeat: int) -> list[SessionResult]:
    """Sessions that reuse a ``seamtest up`` server (and its templates).

    The server lives in a private ``SEAMTEST_CACHE_DIR``, so this never touches (or
    stops) a ``seamtest up`` server someone else runs on this machine.
    """
    env = {"SEAMTEST_CACHE_DIR": str(cache), "SEAMTEST_REUSE": "true"}
    seamtest = [sys.executable, "-m", "seamtest._cli"]
    subprocess.run([*seamtest, "up"], env={**os.environ, **env}, check=True, capture_output=True)
    try:
        run_pytest("up warm-up", project, 1, ARGS, env)  # builds the template once
        return [run_pytest("up", project, 1, ARGS, env) for _ in range(repeat)]
    finally:
        subprocess.run(
            [*seamtest, "down"], env={**os.environ, **env}, check=True, capture_output=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--schemas", default="shop,wide")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    started = time.perf_counter()
    print(f"startup: {args.repeat} repetitions")
    print(machine_line(), flush=True)

    walls: dict[tuple[str, str], list[float]] = {}
    steps: dict[tuple[str, str], list[dict[str, float]]] = {}
    with workdir("startup") as root:
        for index, schema in enumerate(schemas(args.schemas.split(","))):
            base = root / f"s{index}"
            schema.write(base / "migrations")
            ini = {"seamtest_migrations": "../migrations"}
            make_project(
                base / "plain",
                conftest=PLAIN_CONFTEST,
                test_body="assert conn is None\n",
                tests=1,
                ini=ini,
            )
            make_project(
                base / "db", conftest=DB_CONFTEST, test_body=schema.test_body, tests=1, ini=ini
            )
            run_pytest("warm-up", base / "db", 1, ARGS)  # fills the cluster cache if empty
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="cache-", dir=root) as cache:
                    runs = {
                        "plain (no database)": run_pytest("plain", base / "plain", 1, ARGS),
                        "warm (cached cluster)": run_pytest("warm", base / "db", 1, ARGS),
                        "cold (empty cache: initdb)": run_pytest(
                            "cold", base / "db", 1, ARGS, {"SEAMTEST_CACHE_DIR": str(Path(cache))}
                        ),
                    }
                for kind, result in runs.items():
                    walls.setdefault((schema.name, kind), []).append(result.wall)
                    steps.setdefault((schema.name, kind), []).append(seamtest_timings(result))
            up_runs = with_seamtest_up(base / "db", root / f"up-cache-{index}", args.repeat)
            for result in up_runs:
                walls.setdefault((schema.name, UP), []).append(result.wall)
                steps.setdefault((schema.name, UP), []).append(seamtest_timings(result))
            print(f"  {schema.name}: done", flush=True)

    heading(f"Start to the first test (median of {args.repeat})")
    rows = []
    for (name, kind), values in walls.items():
        wall = statistics.median(values)
        plain = statistics.median(walls[name, "plain (no database)"])
        warm = statistics.median(walls[name, "warm (cached cluster)"]) - plain
        extra = wall - plain
        step_names = sorted({k for s in steps[name, kind] for k in s})
        detail = ", ".join(
            f"{k} {ms(statistics.median([s.get(k, 0.0) for s in steps[name, kind]]))}"
            for k in step_names
        )
        rows.append(
            [
                name,
                kind,
                f"{wall:.2f}",
                "-" if kind.startswith("plain") else f"{extra:.2f}",
                "-" if kind.startswith("plain") else ratio(extra, warm),
                detail or "-",
            ]
        )
    print(
        table(
            [
                "schema",
                "session",
                "wall s",
                "seamtest's share s (wall - plain)",
                "vs warm",
                "seamtest timings, ms (median)",
            ],
            rows,
        )
    )
    print(f"\nstartup.py finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
