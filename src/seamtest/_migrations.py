"""Migration sources and SQL fixture files: what builds a template, and its fingerprint.

A source is anything with ``describe()``, ``fingerprint()`` and ``apply(conn)``. Kinds:
a directory of SQL files (sqlx-style names, ``0001_create_users.sql``), a Python callable
(``package.module:function``) called with a psycopg connection, SQL files (the seed step),
Alembic (``_alembic.py``) and yoyo-migrations. A source that runs its own connections
(Alembic, yoyo) sets ``needs_url = True`` and is given the database's URL through
``apply_url(url)`` instead. Errors name the file, the line and the server's message,
because "syntax error at or near" without a file is a puzzle.

What else goes into a template's key lives in ``_fingerprint.py``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # psycopg is imported on first use: loading the plugin stays cheap
    import psycopg

from .errors import ConfigError, FixtureError, FixtureNotFoundError, MigrationError

if TYPE_CHECKING:
    from ._config import Settings

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


class UrlMigrationSource(MigrationSource, Protocol):
    """A source that opens its own connections: the provisioner calls ``apply_url``."""

    needs_url: ClassVar[bool]

    def apply_url(self, url: str) -> None: ...


def apply_source(source: MigrationSource, conn: psycopg.Connection[Any], url: str) -> None:
    """Apply ``source`` to the database ``conn`` is connected to (and ``url`` names)."""
    if getattr(source, "needs_url", False):
        conn.commit()
        source.apply_url(url)  # type: ignore[attr-defined]
    else:
        source.apply(conn)


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _line_of(text: str, position: int | None) -> int | None:
    if not position:
        return None
    return text.count("\n", 0, position - 1) + 1


def run_sql_file(
    conn: psycopg.Connection[Any], path: Path, error: type[MigrationError] | type[FixtureError]
) -> None:
    """Execute a SQL file in one transaction (or none, if it says ``-- no-transaction``)."""
    import psycopg

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

    def manifest(self) -> dict[str, str]:
        """File -> short content hash, for saying which file made a template stale."""
        return {path.name: _short(path.read_bytes()) for path in self.files()}

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        for path in self.files():
            run_sql_file(conn, path, MigrationError)


@dataclass(frozen=True)
class SqlFiles:
    """SQL files applied in the order given (``seamtest_seed``); a directory gives its
    ``*.sql`` files in name order."""

    paths: tuple[Path, ...]
    origin: str = "seamtest_seed"

    def files(self) -> list[Path]:
        found: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                found += sorted(path.glob("*.sql"))
            elif path.is_file():
                found.append(path)
            else:
                raise ConfigError(
                    f"{self.origin}: {path} does not exist. Name SQL files or directories "
                    "(relative to the rootdir), or a Python callable 'module:function'."
                )
        return found

    def describe(self) -> str:
        return "SQL " + ", ".join(str(p) for p in self.paths)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.files():
            digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def manifest(self) -> dict[str, str]:
        return {str(path): _short(path.read_bytes()) for path in self.files()}

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        for path in self.files():
            run_sql_file(conn, path, MigrationError)


@dataclass(frozen=True)
class YoyoMigration:
    """A directory of yoyo-migrations (``yoyo:path/to/migrations``), all applied."""

    path: Path
    origin: str = "seamtest_migrations"
    needs_url: ClassVar[bool] = True

    def _yoyo(self) -> Any:
        try:
            return importlib.import_module("yoyo")
        except ImportError as exc:
            raise ConfigError(
                f"{self.origin}: 'yoyo:{self.path}' needs yoyo-migrations: pip install "
                "yoyo-migrations"
            ) from exc

    def files(self) -> list[Path]:
        if not self.path.is_dir():
            raise ConfigError(f"{self.origin}: {self.path} is not a directory of yoyo migrations.")
        return sorted(
            p for p in self.path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )

    def describe(self) -> str:
        return f"yoyo {self.path}"

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"yoyo {metadata.version('yoyo-migrations')}\0".encode())
        for label, value in sorted(self.manifest().items()):
            digest.update(f"{label} {value}\n".encode())
        return digest.hexdigest()

    def manifest(self) -> dict[str, str]:
        return {str(p.relative_to(self.path)): _short(p.read_bytes()) for p in self.files()}

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        from ._alembic import url_of

        conn.commit()
        self.apply_url(url_of(conn))

    def apply_url(self, url: str) -> None:
        import psycopg

        yoyo = self._yoyo()
        # yoyo's psycopg 3 backend; its plain "postgresql" scheme means psycopg2.
        backend = yoyo.get_backend(url.replace("postgresql://", "postgresql+psycopg://", 1))
        migrations = yoyo.read_migrations(str(self.path))
        try:
            with backend.lock():
                backend.apply_migrations(backend.to_apply(migrations))
        except psycopg.Error as exc:
            raise MigrationError(
                f"{self.describe()}: {exc.diag.severity or 'ERROR'}: "
                f"{exc.diag.message_primary or str(exc).strip()}"
            ) from exc
        except Exception as exc:
            raise MigrationError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        finally:
            backend.connection.close()


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
        import psycopg

        func = self.load()
        try:
            func(conn)
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise MigrationError(
                f"{self.describe()} failed: {exc.diag.message_primary or str(exc).strip()}"
            ) from exc


CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def parse_sources(
    values: Sequence[str],
    rootdir: Path,
    origin: str,
    env_templates: Mapping[str, str] | None = None,
) -> list[MigrationSource]:
    """Turn ``seamtest_migrations`` lines into sources, in order.

    ``alembic[:path/to/alembic.ini][@revision]`` is Alembic, ``yoyo:dir`` yoyo,
    ``module:function`` a callable, anything else a directory of SQL files (write
    ``./alembic`` for a SQL directory that happens to be called alembic).
    """
    sources: list[MigrationSource] = []
    for value in (v.strip() for v in values):
        if not value:
            continue
        if value == "alembic" or value.startswith(("alembic:", "alembic@")):
            from ._alembic import AlembicMigration, parse_spec

            ini, revision = parse_spec(value, rootdir, origin)
            sources.append(
                AlembicMigration(ini, revision, origin, value, dict(env_templates or {}))
            )
        elif value.startswith("yoyo:"):
            sources.append(YoyoMigration((rootdir / value[5:]).resolve(), origin))
        elif CALLABLE.match(value) and not (rootdir / value).exists():
            sources.append(CallableMigration(value, origin))
        else:
            sources.append(SqlDirectory((rootdir / value).resolve(), origin))
    return sources


def setting(settings: Settings, name: str, default: Any) -> tuple[Any, str]:
    """A setting and its origin; the default while an option is not in the table yet."""
    if name in settings.values:
        return settings[name], settings.origin(name)
    return default, f"{name} (from default)"


def seed_sources(settings: Settings) -> list[MigrationSource]:
    """``seamtest_seed`` lines: SQL files or directories, or ``module:function``."""
    values, origin = setting(settings, "seamtest_seed", ())
    sources: list[MigrationSource] = []
    files: list[Path] = []
    for value in (v.strip() for v in values):
        if CALLABLE.match(value) and not (settings.rootdir / value).exists():
            if files:
                sources.append(SqlFiles(tuple(files), origin))
                files = []
            sources.append(CallableMigration(value, origin))
        elif value:
            files.append((settings.rootdir / value).resolve())
    if files:
        sources.append(SqlFiles(tuple(files), origin))
    return sources


def template_sources(settings: Settings) -> list[MigrationSource]:
    """What builds the template, in order: ``seamtest_migrations``, then ``seamtest_seed``."""
    from ._config import env_templates

    migrations = parse_sources(
        settings["seamtest_migrations"],
        settings.rootdir,
        settings.origin("seamtest_migrations"),
        env_templates(settings),
    )
    return migrations + seed_sources(settings)


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
