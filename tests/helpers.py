"""Helpers for seamtest's own suite: admin queries and inner pytest sessions."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from seamtest._server import Endpoint

#: How long an inner pytest session may take before pytester kills it: a guard against a
#: hang, not a measure of speed.
INNER_TIMEOUT = 180

#: A table with one seed row: every test database starts with exactly this.
ITEMS_MIGRATION = {
    "0001_items.sql": """\
        CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL UNIQUE);
        INSERT INTO items (label) VALUES ('seed');
        """,
}


def query(endpoint: Endpoint, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one query on the maintenance database of ``endpoint``."""
    with endpoint.connect() as conn:
        return list(conn.execute(text, params).fetchall())  # type: ignore[call-overload]


def databases_like(endpoint: Endpoint, pattern: str) -> set[str]:
    rows = query(endpoint, "SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern])
    return {row[0] for row in rows}


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with ``prefix`` (underscores escaped)."""
    return prefix.replace("_", r"\_") + "%"


def drop_database(endpoint: Endpoint, name: str) -> None:
    """Drop a database, template or not (test clean-up)."""
    ident = sql.Identifier(name)
    with endpoint.connect() as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident))
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))


def write_ini(pytester: pytest.Pytester, **settings: str | Sequence[str]) -> None:
    """An inner session's own pytest.ini; sequence values become ini line lists."""
    lines = ["[pytest]", "asyncio_default_fixture_loop_scope = function"]
    for name, value in settings.items():
        if isinstance(value, str):
            lines.append(f"{name} = {value}")
        else:
            lines.append(f"{name} =")
            lines += [f"    {item}" for item in value]
    pytester.makeini("\n".join(lines) + "\n")


def on_shared_server(
    pytester: pytest.Pytester, server: Endpoint, prefix: str, **settings: str | Sequence[str]
) -> pytest.Pytester:
    """An inner project on the suite's shared server, under a prefix of its own (the
    ``db_prefix`` fixture drops its databases afterwards)."""
    write_ini(pytester, seamtest_url=server.url(), seamtest_db_prefix=prefix, **settings)
    return pytester


def write_files(pytester: pytest.Pytester, where: str, files: dict[str, str]) -> Path:
    """Write dedented ``files`` into ``where`` under the inner session's directory."""
    directory = pytester.path / where
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner pytest session in a subprocess, isolated from this one."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=INNER_TIMEOUT)
