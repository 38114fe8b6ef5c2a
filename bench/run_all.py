"""Run every benchmark in turn, one after the other (never two at once: they would skew
each other), passing ``--quick`` through.

    python bench/run_all.py                     # the set, ~6 minutes on 2 cores
    python bench/run_all.py --suite-tests 1000  # suite.py at issue 8's 1,000 tests (~12 min)
    python bench/run_all.py --quick             # smoke run, ~75 s (each script < 40 s)
    python bench/run_all.py --output results.md   # also write the tables to a file

The tables are Markdown; docs/benchmarks.md holds the last measured ones.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
#: In this order: the cheap, physical limits first, the long suite last.
SCRIPTS = ("limits.py", "startup.py", "isolation.py", "suite.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    parser.add_argument("--output", type=Path, help="also write everything printed here")
    parser.add_argument("--only", default="", help="comma-separated script names to run")
    parser.add_argument(
        "--suite-tests",
        type=int,
        default=300,
        help="tests per suite.py session (its own default is 1,000; 300 keeps this set to "
        "a few minutes, as pytest-postgresql and sqlx-style take ~75 ms a test)",
    )
    args = parser.parse_args()
    chosen = [s for s in SCRIPTS if not args.only or s.removesuffix(".py") in args.only]
    started = time.perf_counter()
    chunks = []
    failed = []
    for script in chosen:
        command = [sys.executable, str(BENCH / script)]
        if args.quick:
            command.append("--quick")
        elif script == "suite.py":
            command += ["--tests", str(args.suite_tests)]
        print(f"\n## {script}\n", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        chunks.append(f"## {script}\n\n{result.stdout}")
        if result.returncode != 0:
            failed.append(script)
    total = f"\nrun_all.py finished in {time.perf_counter() - started:.0f} s"
    print(total + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.output:
        args.output.write_text("\n".join(chunks) + total + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
