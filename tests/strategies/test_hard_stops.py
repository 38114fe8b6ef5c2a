"""Hard stops: a full disk, Ctrl-C during a template build, two runs started at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seamtest._server import Endpoint
from tests.helpers import databases_like, like_prefix, run_inner, write_files, write_ini


@pytest.fixture
def tiny_tmpfs() -> Iterator[Path]:
    """A 64 MiB tmpfs: room for a cluster, not for much data. Under the system temp
    directory, which the server's unprivileged user (we may be root) can traverse."""
    mount = Path(tempfile.mkdtemp(prefix="seamtest-tiny-"))
    mount.chmod(0o755)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def test_disk_full_during_a_migration_is_named_and_nothing_is_published(
    inner: pytest.Pytester, tiny_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEAMTEST_RUNTIME_DIR", str(tiny_tmpfs))
    write_files(
        inner,
        "migrations",
        {
            "0001_big.sql": """\
                CREATE TABLE big (id int, pad text);
                INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 200000) g;
                """
        },
    )
    write_ini(inner, seamtest_migrations="migrations")
    write_files(inner, "tests", {"test_x.py": "def test_x(db):\n    pass\n"})
    result = run_inner(inner)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*0001_big.sql*No space left on device*"])
    assert list(tiny_tmpfs.iterdir()) == []  # the run's server and data are gone


def test_ctrl_c_during_a_template_build_leaves_no_half_built_template(
    inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    write_files(inner, "migrations", {"0001_slow.sql": "SELECT pg_sleep(30);\n"})
    write_ini(inner, seamtest_migrations="migrations", seamtest_db_prefix=db_prefix)
    write_files(inner, "tests", {"test_x.py": "def test_x(db):\n    pass\n"})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--seamtest-url={pg_server.url()}",
        ],
        cwd=inner.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not databases_like(pg_server, like_prefix(db_prefix + "build_")):
        assert time.monotonic() < deadline, "the template build never started"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()
    assert "KeyboardInterrupt" in output
    assert databases_like(pg_server, like_prefix(db_prefix)) == set(), output  # no build


def test_two_runs_started_at_once_with_a_cold_cache(inner: pytest.Pytester, tmp_path: Path) -> None:
    write_files(inner, "migrations", {"0001_t.sql": "CREATE TABLE t (id int);\n"})
    write_ini(inner, seamtest_migrations="migrations")
    write_files(
        inner,
        "tests",
        {"test_x.py": "def test_x(db):\n    db.execute('INSERT INTO t VALUES (1)')\n"},
    )
    env = {**os.environ, "SEAMTEST_CACHE_DIR": str(tmp_path / "cold-cache")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    runs = [
        subprocess.Popen(command, cwd=inner.path, env=env, stdout=subprocess.PIPE) for _ in range(2)
    ]
    outputs = [run.communicate(timeout=180)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all("1 passed" in output for output in outputs)
    clusters = list((tmp_path / "cold-cache" / "clusters").iterdir())
    assert len(clusters) == 1  # both built or one waited: one cached cluster either way


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_a_runtime_dir_the_server_user_cannot_enter_is_named(
    inner: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    monkeypatch.setenv("SEAMTEST_RUNTIME_DIR", str(closed))
    write_ini(inner)
    write_files(inner, "tests", {"test_x.py": "def test_x(db):\n    pass\n"})
    result = run_inner(inner)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot enter*point SEAMTEST_RUNTIME_DIR at a directory*"])
