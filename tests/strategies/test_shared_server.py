"""A server shared with others: refused without a prefix of seamtest's own; ls, psql, gc."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
from psycopg import sql

from seamtest._server import Endpoint
from tests.helpers import databases_like, like_prefix, run_inner, write_files, write_ini


@pytest.fixture
def foreign_database(pg_server: Endpoint) -> str:
    name = f"app_{secrets.token_hex(4)}"
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name  # type: ignore[misc]
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def test_a_server_with_others_databases_needs_a_prefix_of_seamtests_own(
    inner: pytest.Pytester, pg_server: Endpoint, foreign_database: str, db_prefix: str
) -> None:
    write_ini(inner)
    write_files(inner, "tests", {"test_x.py": "def test_x(db):\n    pass\n"})
    refused = run_inner(inner, f"--seamtest-url={pg_server.url()}")
    refused.assert_outcomes(errors=1)
    refused.stdout.fnmatch_lines(
        [f"*holds databases seamtest did not create (*{foreign_database}*"]
    )
    refused.stdout.fnmatch_lines(["*seamtest_db_prefix*"])
    allowed = run_inner(
        inner, f"--seamtest-url={pg_server.url()}", "-o", f"seamtest_db_prefix={db_prefix}"
    )
    allowed.assert_outcomes(passed=1)
    assert databases_like(pg_server, foreign_database) == {foreign_database}  # untouched


def test_ls_and_gc_find_and_drop_kept_databases(
    inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    write_ini(inner, seamtest_db_prefix=db_prefix)
    write_files(inner, "tests", {"test_x.py": "def test_fails(db):\n    assert False\n"})
    run_inner(inner, f"--seamtest-url={pg_server.url()}").assert_outcomes(failed=1)
    cli = [sys.executable, "-m", "seamtest._cli"]
    where = ["--url", pg_server.url(), "--prefix", db_prefix]
    listed = subprocess.run([*cli, "ls", *where], capture_output=True, text=True, check=True)
    assert "tests/test_x.py::test_fails" in listed.stdout
    assert f"/{db_prefix}t_test_fails_" in listed.stdout
    kept = databases_like(pg_server, like_prefix(db_prefix + "t_"))
    assert len(kept) == 1
    gc = [*cli, "gc", "--older-than", "0", *where]
    collected = subprocess.run(gc, capture_output=True, text=True, check=True)
    assert "dropped 1 database(s)" in collected.stdout
    assert databases_like(pg_server, like_prefix(db_prefix + "t_")) == set()
