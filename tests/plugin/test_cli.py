"""The ``seamtest`` console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import seamtest

SCRIPT = Path(sys.executable).with_name("seamtest")


def seamtest_command(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [shutil.which("seamtest") or "seamtest"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_version() -> None:
    result = seamtest_command("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"seamtest {seamtest.__version__}"


def test_doctor_finds_binaries_and_starts_a_server() -> None:
    result = seamtest_command("doctor")
    if "invalid choice" in result.stderr:
        pytest.skip("this seamtest has no 'doctor' command yet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "binaries: PostgreSQL " in result.stdout
    assert "start: OK" in result.stdout
    assert "server says: PostgreSQL " in result.stdout


def test_doctor_with_a_bad_bin_dir_says_so(tmp_path: Path) -> None:
    result = seamtest_command("doctor", "--bin-dir", str(tmp_path))
    if "invalid choice" in result.stderr:
        pytest.skip("this seamtest has no 'doctor' command yet")
    assert result.returncode == 1
    assert "binaries: NOT FOUND" in result.stdout
    assert f"names {tmp_path}, which has no executable 'postgres' and 'initdb'" in result.stdout
