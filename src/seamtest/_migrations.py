"""Migration sources and SQL fixture files: what builds a template, and its fingerprint.

A source is anything with ``describe()``, ``fingerprint()`` and ``apply(conn)``. Two kinds
come built in: a directory of SQL files (sqlx-style names, ``0001_create_users.sql``)
and a Python callable (``package.module:function``) called with a psycopg connection.
Alembic plugs in as a third kind. Errors name the file, the line and the server's
message, because "syntax error at or near" without a file is a puzzle.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg

from .errors import ConfigError, FixtureError, FixtureNotFoundError, MigrationError

#: ``0001_create_users.sql``, ``20240101120000_add_index.up.sql``; ``*.down.sql`` is skipped.
SQL_FILE = re.compile(r"^(?P<version>\d+)[_-](?P<name>.+?)(?P<up>\.up)?\.sql$")
#: A first line that asks for a file to run outside a transaction (CREATE INDEX
#: CONCURRENTLY and friends), like sqlx's ``-- no-transaction``.
NO_TRANSACTION = re.compile(r"^\s*--\s*(seamtest:\s*)?no-transaction\s*$", re.IGNORECASE)


class MigrationSource(Protocol):
    """Something that puts a schema into an empty database."""

    def describe(self) -> str: ...

    def fingerprint(self) -> str: ...

    def apply(self, conn: psycopg.Connection[Any]) -> None: ...


def _line_of(text: str, position: int | None) -> int | None:
    if not position:
        return None
    return text.count("\n", 0, position - 1) + 1


def run_sql_file(
    conn: psycopg.Connection[Any], path: Path, error: type[MigrationError] | type[FixtureError]
) -> None:
    """Execute a SQL file in one transaction (or none, if it says ``-- no-transaction``)."""
    text = path.read_text(encoding="utf-8")
    first_line = text.split("\n", 1)[0]
    outside = bool(NO_TRANSACTION.match(first_line))
    try:
        if outside:
            conn.autocommit = True
            conn.execute(text.encode())
        else:
            with conn.transaction():
                conn.execute(text.encode())
    except psycopg.Error as exc:
        line = _line_of(text, int(exc.diag.statement_position or 0))
        where = f"{path}:{line}" if line else str(path)
        detail = exc.diag.message_primary or str(exc).strip()
        extra = "".join(
            f"\n  {label}: {value}"
            for label, value in (
                ("DETAIL", exc.diag.message_detail),
                ("HINT", exc.diag.message_hint),
                ("CONTEXT", exc.diag.context),
            )
            if value
        )
        raise error(f"{where}: {exc.diag.severity or 'ERROR'}: {detail}{extra}") from exc
    finally:
        if outside:
            conn.autocommit = False


@dataclass(frozen=True)
class SqlDirectory:
    """A directory of SQL migration files applied in order of their numeric prefix."""

    path: Path
    origin: str = "seamtest_migrations"

    def files(self) -> list[Path]:
        if not self.path.is_dir():
            raise ConfigError(
                f"{self.origin}: {self.path} is not a directory. Name a directory of SQL "
                "files (0001_create_users.sql, ...) or a Python callable 'module:function'."
            )
        ordered: dict[int, Path] = {}
        for path in sorted(self.path.glob("*.sql")):
            if path.name.endswith(".down.sql"):
                continue
            match = SQL_FILE.match(path.name)
            if match is None:
                raise ConfigError(
                    f"{path}: migration files are named <version>_<description>.sql, such as "
                    "0001_create_users.sql; rename it or move it out of the migrations "
                    "directory."
                )
            version = int(match["version"])
            if version in ordered:
                raise ConfigError(
                    f"{path} and {ordered[version]} share version {version}; give each "
                    "migration its own number."
                )
            ordered[version] = path
        return [ordered[v] for v in sorted(ordered)]

    def describe(self) -> str:
        return f"SQL directory {self.path}"

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        for path in self.files():
            run_sql_file(conn, path, MigrationError)


@dataclass(frozen=True)
class CallableMigration:
    """``package.module:function``, called once with a psycopg connection (autocommit off).

    The fingerprint covers the module's source file; name other inputs (the models
    package, say) in ``seamtest_template_key`` or ``seamtest_template_deps``.
    """

    spec: str
    origin: str = "seamtest_migrations"

    def load(self) -> Callable[[psycopg.Connection[Any]], object]:
        module_name, _, attr = self.spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"{self.origin} = {self.spec!r}: cannot import {module_name!r} ({exc}). Make "
                f"it importable (install the package, or add its directory to pytest's "
                f"'pythonpath' ini option). sys.path starts with {sys.path[:3]}"
            ) from exc
        func = getattr(module, attr, None)
        if not callable(func):
            raise ConfigError(
                f"{self.origin} = {self.spec!r}: {module_name} has no callable {attr!r}."
            )
        return func  # type: ignore[no-any-return]

    def describe(self) -> str:
        return f"callable {self.spec}"

    def fingerprint(self) -> str:
        func = self.load()
        try:
            source = Path(inspect.getfile(func)).read_bytes()
        except (TypeError, OSError):
            source = b""
        return hashlib.sha256(self.spec.encode() + b"\0" + source).hexdigest()

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        func = self.load()
        try:
            func(conn)
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise MigrationError(
                f"{self.describe()} failed: {exc.diag.message_primary or str(exc).strip()}"
            ) from exc


def parse_sources(values: Sequence[str], rootdir: Path, origin: str) -> list[MigrationSource]:
    """Turn ``seamtest_migrations`` lines into sources, in order."""
    sources: list[MigrationSource] = []
    for value in (v.strip() for v in values):
        if not value:
            continue
        if re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", value) and not (rootdir / value).exists():
            sources.append(CallableMigration(value, origin))
        else:
            sources.append(SqlDirectory((rootdir / value).resolve(), origin))
    return sources


@dataclass(frozen=True)
class FixtureFiles:
    """SQL fixture files looked up by name in a directory (``users`` -> ``users.sql``)."""

    directory: Path

    def resolve(self, names: Sequence[str]) -> list[Path]:
        paths = []
        root = self.directory.resolve()
        for name in names:
            if not isinstance(name, str) or not name:
                raise FixtureError(f"fixture names are non-empty strings, not {name!r}")
            filename = name if name.endswith(".sql") else f"{name}.sql"
            path = (root / filename).resolve()
            if not path.is_relative_to(root):
                raise FixtureError(
                    f"fixture {name!r} points outside the fixtures directory {root}; name a "
                    "file inside it."
                )
            if not path.is_file():
                raise FixtureNotFoundError(
                    f"fixture {name!r} not found: looked for {path} (fixtures directory from "
                    f"seamtest_fixtures: {root})"
                )
            paths.append(path)
        return paths

    @staticmethod
    def apply(conn: psycopg.Connection[Any], paths: Sequence[Path]) -> None:
        for path in paths:
            run_sql_file(conn, path, FixtureError)
