"""Soak: thousands of tests under ``-n 2`` with mixed strategies and random failures.

    python bench/soak.py                 # 10,000 tests (a few minutes on 2 cores)
    python bench/soak.py --tests 1000    # a shorter soak

Afterwards it checks seamtest's promises and prints the figures:

- the server holds only the kept databases of failed tests (database and reset
  strategies keep them; transaction and unique ones cannot) and its templates;
- connection counts and memory are flat: sampled every second during the run;
- the time per test does not grow: median of the first tenth against the last tenth.

The run uses its own embedded server (started here, stopped at the end) passed to
pytest with ``--seamtest-url``, so it can be queried after the run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from seamtest._binaries import find_binaries
from seamtest._embedded import EmbeddedServer
from seamtest._privilege import choose_run_as
from seamtest._server import Endpoint

STRATEGIES = ("database", "transaction", "reset", "unique")
MIGRATION = """\
CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text UNIQUE NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id),
                     total numeric(10, 2) NOT NULL);
"""
TESTS = """
import json, os, pathlib, time
import pytest

PLAN = json.loads(pathlib.Path(__file__).with_name("plan.json").read_text())

@pytest.mark.parametrize("n", range(len(PLAN)))
def test_soak(request, n):
    strategy, fails = PLAN[n]
    request.applymarker(pytest.mark.seamtest(isolation=strategy))
    db = request.getfixturevalue("db")
    email = f"u{n}@example.test"
    uid = db.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", [email]).fetchone()[0]
    db.execute("INSERT INTO orders (user_id, total) VALUES (%s, 9.99)", [uid])
    db.commit()
    assert db.execute("SELECT count(*) FROM orders WHERE user_id = %s", [uid]).fetchone()[0] == 1
    assert not fails, "a planted failure"
"""
TIMING = """
import json, os, time, pathlib
import pytest

OUT = pathlib.Path(__file__).with_name("timings")

@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.perf_counter()
    result = yield
    OUT.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(OUT / f"{worker}.jsonl", "a") as out:
        out.write(json.dumps([time.time(), time.perf_counter() - started]) + "\\n")
    return result
"""


def rss_mb(name_prefix: str) -> float:
    """Resident memory of all processes whose name starts with ``name_prefix``, in MB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if text.startswith(f"Name:\t{name_prefix}"):
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def sample(endpoint: Endpoint, stop: threading.Event, samples: list[dict[str, float]]) -> None:
    """Every second: client connections, and the RSS of postgres and of the pytest workers."""
    with endpoint.connect() as conn:
        while not stop.wait(1.0):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchone()
            samples.append(
                {
                    "connections": row[0] if row else 0,
                    "postgres_mb": rss_mb("postgres"),
                    "python_mb": rss_mb("python"),
                }
            )


def thirds(values: list[float]) -> str:
    if not values:
        return "no samples"
    third = max(1, len(values) // 3)
    return (
        f"first third median {statistics.median(values[:third]):.0f}, last third median "
        f"{statistics.median(values[-third:]):.0f}, max {max(values):.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--failure-rate", type=float, default=0.01)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    plan = [(rng.choice(STRATEGIES), rng.random() < args.failure_rate) for _ in range(args.tests)]
    expected_kept = sum(
        1 for strategy, fails in plan if fails and strategy in ("database", "reset")
    )

    server = EmbeddedServer(find_binaries(), run_as=choose_run_as(None))
    endpoint = server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="seamtest-soak-") as tmp:
            project = Path(tmp)
            (project / "migrations").mkdir()
            (project / "migrations" / "0001_soak.sql").write_text(MIGRATION)
            (project / "tests").mkdir()
            (project / "tests" / "plan.json").write_text(json.dumps(plan))
            (project / "tests" / "test_soak.py").write_text(textwrap.dedent(TESTS))
            (project / "tests" / "conftest.py").write_text(textwrap.dedent(TIMING))
            (project / "pytest.ini").write_text(
                "[pytest]\nseamtest_migrations = migrations\nseamtest_db_prefix = soak_\n"
            )
            stop = threading.Event()
            samples: list[dict[str, float]] = []
            sampler = threading.Thread(target=sample, args=(endpoint, stop, samples), daemon=True)
            sampler.start()
            started = time.perf_counter()
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-n",
                    args.workers,
                    f"--seamtest-url={endpoint.url()}",
                    "-p",
                    "no:randomly",
                ],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            wall = time.perf_counter() - started
            stop.set()
            sampler.join()
            summary = [
                line for line in result.stdout.splitlines() if " passed" in line or "failed" in line
            ]
            timings = []
            for path in (project / "tests" / "timings").glob("*.jsonl"):
                timings += [json.loads(line) for line in path.read_text().splitlines()]
            timings.sort()
            durations = [d for _t, d in timings]
            tenth = max(1, len(durations) // 10)
            first = statistics.median(durations[:tenth]) * 1000
            last = statistics.median(durations[-tenth:]) * 1000

        with endpoint.connect() as conn:
            left = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'soak\\_%' ORDER BY 1"
                ).fetchall()
            ]
        templates = [name for name in left if name.startswith("soak_tpl_")]
        kept = [name for name in left if name.startswith("soak_t_")]
        other = sorted(set(left) - set(templates) - set(kept))
        print(f"soak: {args.tests} tests, -n {args.workers}, strategies {', '.join(STRATEGIES)}")
        print(f"  pytest: {summary[-1] if summary else result.stdout[-500:]} (wall {wall:.0f} s)")
        print(
            f"  planted failures: {sum(f for _s, f in plan)}; of them keepable "
            f"(database/reset): {expected_kept}"
        )
        print(
            f"  left on the server: {len(kept)} kept test databases, {len(templates)} "
            f"template(s), {len(other)} other {other[:5]}"
        )
        print(f"  client connections: {thirds([s['connections'] for s in samples])}")
        print(f"  postgres RSS MB: {thirds([s['postgres_mb'] for s in samples])}")
        print(f"  python (pytest) RSS MB: {thirds([s['python_mb'] for s in samples])}")
        print(
            f"  time per test (setup+call+teardown) median: first tenth {first:.1f} ms, last "
            f"tenth {last:.1f} ms, ratio {last / first:.2f}"
        )
        ok = len(kept) == expected_kept and not other
        print("  verdict:", "OK" if ok else "PROBLEM: leftovers differ from the kept failures")
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
