"""The embedded server itself: one per run, shared by xdist workers, never run as root,
never orphaned. These sessions start their own server (the cluster cache is shared)."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ITEMS_MIGRATION, run_inner, write_files, write_ini

#: The test records which server process it talked to, through the parent of its backend.
RECORD_SERVER = """
    import json, os, pathlib

    OUT = pathlib.Path(__file__).parent / "out"

    def status(pid):
        lines = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
        return dict(line.split(":", 1) for line in lines)

    def record(name, db):
        backend = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster = int(status(backend)["PPid"])
        data = db.execute("SHOW data_directory").fetchone()[0]
        cmdline = pathlib.Path(f"/proc/{postmaster}/cmdline").read_bytes()
        info = {
            "postmaster": postmaster,
            "postmaster_uid": int(status(postmaster)["Uid"].split()[0]),
            "postmaster_cmd": cmdline.split(b"\\0")[0].decode(),
            "data": data,
            "version": db.execute("SHOW server_version").fetchone()[0],
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "items": db.execute("SELECT count(*) FROM items").fetchone()[0],
        }
        OUT.mkdir(exist_ok=True)
        tmp = OUT / f"{name}.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(OUT / f"{name}.json")
"""


def records(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in (pytester.path / "out").glob("*.json")}


def running(pid: int) -> bool:
    """Whether ``pid`` runs; an exited process its parent has not reaped yet does not."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {timeout:.0f} s)")
        time.sleep(0.05)


@pytest.fixture
def project(inner: pytest.Pytester) -> pytest.Pytester:
    write_ini(inner, seamtest_migrations="migrations")
    write_files(inner, "migrations", ITEMS_MIGRATION)
    return inner


def test_xdist_workers_share_one_server_that_stops_with_the_run(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_shared=RECORD_SERVER
        + """
    def test_one(db):
        record("one", db)

    def test_two(db):
        record("two", db)
    """
    )
    result = run_inner(project, "-n", "2")
    result.assert_outcomes(passed=2)
    seen = records(project)
    assert {r["worker"] for r in seen.values()} == {"gw0", "gw1"}
    assert seen["one"]["postmaster"] == seen["two"]["postmaster"]
    assert seen["one"]["data"] == seen["two"]["data"]
    assert seen["one"]["items"] == 1  # migrated
    # The run is over: its server has stopped and its data is gone.
    assert not running(seen["one"]["postmaster"])
    assert not Path(seen["one"]["data"]).parent.exists()
    result.stdout.fnmatch_lines(["=* seamtest =*", "server: PostgreSQL *"])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can test running as root")
def test_as_root_the_server_runs_as_an_unprivileged_user(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_root=RECORD_SERVER + "\n    def test_it(db):\n        record('it', db)\n"
    )
    result = run_inner(project)
    result.assert_outcomes(passed=1)
    [info] = records(project).values()
    assert info["postmaster_uid"] != 0
    assert info["postmaster_uid"] == pwd.getpwnam("postgres").pw_uid
    result.stdout.fnmatch_lines(["*running as root: the server runs as postgres*"])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can test running as root")
@pytest.mark.skipif(
    not Path("/usr/lib/postgresql/15/bin/postgres").exists(),
    reason="needs Debian's PostgreSQL 15 in /usr/lib/postgresql/15",
)
def test_as_root_binaries_the_server_user_cannot_read_still_work(
    project: pytest.Pytester,
) -> None:
    private = project.path / "private"
    private.mkdir(mode=0o700)
    shutil.copytree("/usr/lib/postgresql/15", private / "pg15", symlinks=True)
    bin_dir = private / "pg15" / "bin"
    project.makepyfile(
        test_root=RECORD_SERVER + "\n    def test_it(db):\n        record('it', db)\n"
    )
    result = run_inner(project, f"--seamtest-bin-dir={bin_dir}")
    copied = re.search(r"copied to (/\S+) because postgres cannot read", result.stdout.str())
    try:
        result.assert_outcomes(passed=1)
        assert copied is not None, "the summary should say where the binaries were copied"
        [info] = records(project).values()
        assert info["version"].startswith("15.")
        assert info["postmaster_uid"] == pwd.getpwnam("postgres").pw_uid
        assert info["postmaster_cmd"].startswith(copied.group(1))
    finally:
        if copied is not None:
            shutil.rmtree(copied.group(1), ignore_errors=True)


def test_sigkill_of_pytest_leaves_no_server_behind(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_hang=RECORD_SERVER
        + """
    import time

    def test_hang(db):
        record("hang", db)
        time.sleep(600)
    """
    )
    info_file = project.path / "out" / "hang.json"
    proc = project.popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: info_file.exists() or proc.poll() is not None,
            120,
            "the inner test never started its database",
        )
        assert proc.poll() is None, "the inner pytest ended before it was killed"
        info = json.loads(info_file.read_text())
        runtime_dir = Path(info["data"]).parent
        assert running(info["postmaster"])
        assert runtime_dir.is_dir()

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        wait_for(
            lambda: not running(info["postmaster"]),
            20,
            f"postmaster {info['postmaster']} outlived the pytest run",
        )
        wait_for(lambda: not runtime_dir.exists(), 20, f"{runtime_dir} was left behind")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
