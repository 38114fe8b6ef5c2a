"""Alembic as a migration source: ``seamtest_migrations = "alembic"``.

Spelled ``alembic`` (``alembic.ini`` in the rootdir, to ``heads``), ``alembic@<revision>``,
``alembic:path/to/alembic.ini`` or ``alembic:path/to/alembic.ini@<revision>``.

The upgrade runs in-process, the Alembic cookbook's way: seamtest sets the config's
``sqlalchemy.url`` to the database being built, opens a connection to it and hands it over
in ``config.attributes["connection"]``, and, while ``env.py`` runs, points ``DATABASE_URL``
(and the variables of ``seamtest_env``) at that database too. Whatever ``env.py`` reads,
it reaches the template, never the URL in ``alembic.ini`` or the developer's shell.

Alembic and SQLAlchemy are imported only when such a source is used: seamtest works
without them.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import io
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import psycopg

from .errors import ConfigError, MigrationError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory

T = TypeVar("T")

INSTALL_HINT = (
    "{origin} = {spec!r} needs Alembic and SQLAlchemy: pip install 'seamtest[alembic]' "
    "(or pip install alembic)."
)
#: Files of a script directory that are not inputs: bytecode and editor droppings.
IGNORED_PARTS = ("__pycache__", ".mypy_cache", ".pytest_cache")
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
#: The driver seamtest uses when ``sqlalchemy.url`` names none: psycopg 3 is always
#: installed with seamtest, and SQLAlchemy's psycopg dialect works in sync and async
#: engines alike (the bare ``postgresql://`` means psycopg2, which may be missing).
DEFAULT_DRIVER = "postgresql+psycopg"


def url_of(conn: psycopg.Connection[Any]) -> str:
    """A libpq URL for the database ``conn`` is connected to (unix socket or TCP)."""
    from urllib.parse import quote, urlencode

    info = conn.info
    auth = quote(info.user, safe="")
    if info.password:
        auth += ":" + quote(info.password, safe="")
    dbname = quote(info.dbname, safe="")
    if info.host.startswith("/"):
        query = urlencode({"host": info.host, "port": str(info.port)})
        return f"postgresql://{auth}@/{dbname}?{query}"
    host = f"[{info.host}]" if ":" in info.host else info.host
    return f"postgresql://{auth}@{host}:{info.port}/{dbname}"


def require_alembic(spec: str, origin: str) -> None:
    """Raise a ConfigError with the install hint when Alembic is missing."""
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT.format(origin=origin, spec=spec)) from exc


def parse_spec(spec: str, rootdir: Path, origin: str) -> tuple[Path, str]:
    """``alembic[:ini][@revision]`` -> (ini path, revision)."""
    rest = spec[len("alembic") :]
    ini, revision = "alembic.ini", "heads"
    if rest.startswith(":"):
        rest = rest[1:]
        ini, _, rev = rest.partition("@")
        revision = rev or revision
    elif rest.startswith("@"):
        revision = rest[1:]
    elif rest:
        raise ConfigError(
            f"{origin} = {spec!r}: write 'alembic', 'alembic@<revision>', "
            "'alembic:path/to/alembic.ini' or 'alembic:path/to/alembic.ini@<revision>'."
        )
    if not ini or not revision:
        raise ConfigError(f"{origin} = {spec!r}: the ini path and the revision are non-empty.")
    return (rootdir / ini).resolve(), revision


def sqlalchemy_url(url: str, configured: str | None) -> str:
    """``url`` as a SQLAlchemy URL, keeping the driver ``alembic.ini`` names (asyncpg...)."""
    from sqlalchemy.engine import make_url

    driver = DEFAULT_DRIVER
    if configured:
        try:
            named = make_url(configured).drivername
        except Exception:  # an unparsable placeholder such as "driver://user:pass@..."
            named = ""
        if named.startswith("postgresql+"):
            driver = named
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration, then restore them exactly."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def env_for(url: str, templates: Mapping[str, str]) -> dict[str, str]:
    """``DATABASE_URL`` and ``seamtest_env``'s variables, for the database at ``url``."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    values = {
        "url": url,
        "host": query.get("host", [parts.hostname or ""])[0],
        "port": query.get("port", [str(parts.port or 5432)])[0],
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "dbname": unquote(parts.path.lstrip("/")),
    }
    env = {"DATABASE_URL": url}
    env.update({name: template.format(**values) for name, template in templates.items()})
    return env


def off_the_loop(func: Callable[[], T]) -> T:
    """Call ``func`` here, or in a thread when an event loop runs in this one.

    An async ``env.py`` calls ``asyncio.run()``, which refuses to run inside a running
    loop (a template built from an async test's fixture).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func()
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(func())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="seamtest-alembic")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def has_downgrade(script: Script) -> bool:
    """Whether a revision's ``downgrade()`` does anything (not ``pass``, not a raise)."""
    path = Path(script.path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return True
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            body = [
                stmt
                for stmt in node.body
                if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
            ]
            return not all(isinstance(stmt, ast.Pass | ast.Raise) for stmt in body)
    return False


@dataclass(frozen=True)
class AlembicMigration:
    """An Alembic project upgraded to ``revision`` (default: every head)."""

    ini: Path
    revision: str = "heads"
    origin: str = "seamtest_migrations"
    spec: str = "alembic"
    #: ``seamtest_env``'s NAME -> template pairs, pointed at the database being built.
    env_templates: Mapping[str, str] = field(default_factory=dict)
    #: Tells the provisioner to call ``apply_url(url)`` instead of ``apply(conn)``.
    needs_url: ClassVar[bool] = True

    # -- configuration -------------------------------------------------------------------
    def config(self, url: str | None = None) -> Config:
        """An Alembic ``Config`` for the ini file, pointed at ``url`` if given."""
        require_alembic(self.spec, self.origin)
        from alembic.config import Config

        if not self.ini.is_file():
            raise ConfigError(
                f"{self.origin} = {self.spec!r}: {self.ini} does not exist. Name the "
                "project's ini file: 'alembic:path/to/alembic.ini'."
            )
        cfg = Config(str(self.ini), stdout=io.StringIO())
        if cfg.get_main_option("script_location") is None:
            raise ConfigError(
                f"{self.ini}: no script_location in its [alembic] section; is it an "
                "Alembic ini file?"
            )
        if url is not None:
            configured = cfg.get_main_option("sqlalchemy.url")
            # configparser interpolates %, so a quoted password must double it.
            value = sqlalchemy_url(url, configured).replace("%", "%%")
            cfg.set_main_option("sqlalchemy.url", value)
        return cfg

    def script(self) -> ScriptDirectory:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.config())

    def files(self) -> list[Path]:
        """Every input of the upgrade: the ini file, env.py, templates, every version."""
        script = self.script()
        roots = {Path(script.dir).resolve()}
        roots.update(Path(location).resolve() for location in script.version_locations)
        found = {self.ini}
        for root in roots:
            for path in root.rglob("*"):
                if (
                    path.is_file()
                    and not any(part in IGNORED_PARTS for part in path.parts)
                    and not path.name.endswith(IGNORED_SUFFIXES)
                ):
                    found.add(path)
        return sorted(found)

    def manifest(self) -> dict[str, str]:
        """File -> short content hash, for saying which file made a template stale."""
        base = self.ini.parent
        manifest = {}
        for path in self.files():
            label = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
            manifest[label] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return manifest

    # -- the MigrationSource protocol ------------------------------------------------------
    def describe(self) -> str:
        return f"alembic {self.ini} to {self.revision}"

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for package in ("alembic", "sqlalchemy"):
            digest.update(f"{package} {metadata.version(package)}\n".encode())
        digest.update(f"revision {self.revision}\n".encode())
        for label, value in sorted(self.manifest().items()):
            digest.update(f"{label} {value}\n".encode())
        return digest.hexdigest()

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        """Upgrade the database ``conn`` is connected to (through its own connection)."""
        conn.commit()
        self.apply_url(url_of(conn))

    def apply_url(self, url: str) -> None:
        """Upgrade the database at ``url`` (a libpq URL) to ``self.revision``."""
        self.run(url, lambda cfg: _upgrade(cfg, self.revision))

    # -- running commands -------------------------------------------------------------------
    def run(self, url: str, command: Callable[[Config], T]) -> T:
        """Run an Alembic command against ``url``, with the connection handed to env.py."""
        cfg = self.config(url)
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(sqlalchemy_url(url, None), poolclass=NullPool)

        def call() -> T:
            with environment(env_for(url, self.env_templates)), engine.begin() as connection:
                cfg.attributes["connection"] = connection
                cfg.attributes["seamtest_url"] = url
                return command(cfg)

        try:
            return off_the_loop(call)
        except (ConfigError, MigrationError):
            raise
        except Exception as exc:
            raise self.error(exc) from exc
        finally:
            engine.dispose()

    def error(self, exc: BaseException) -> MigrationError:
        """A MigrationError naming the migration file and line that failed, and why."""
        script_dir = self.ini.parent
        with suppress(Exception):  # the ini itself is what is broken: keep its folder
            script_dir = Path(self.script().dir).resolve()
        where = ""
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            path = Path(frame.filename)
            if path.is_relative_to(script_dir) or path.is_relative_to(self.ini.parent):
                where = f"{path}:{frame.lineno}: "
                break
        return MigrationError(
            f"{where}alembic upgrade to {self.revision!r} ({self.ini}) failed: "
            f"{describe_exception(exc)}"
        )


def _upgrade(cfg: Config, revision: str) -> None:
    from alembic import command

    command.upgrade(cfg, revision)


def describe_exception(exc: BaseException) -> str:
    """The server's message for a database error, else the exception itself."""
    cause: BaseException | None = exc
    while cause is not None:
        orig = getattr(cause, "orig", None)
        if isinstance(orig, psycopg.Error) and orig.diag.message_primary:
            lines = [f"{orig.diag.severity or 'ERROR'}: {orig.diag.message_primary}"]
            lines += [
                f"  {label}: {value}"
                for label, value in (
                    ("DETAIL", orig.diag.message_detail),
                    ("HINT", orig.diag.message_hint),
                )
                if value
            ]
            return "\n".join(lines)
        if isinstance(cause, psycopg.Error) and cause.diag.message_primary:
            return f"{cause.diag.severity or 'ERROR'}: {cause.diag.message_primary}"
        cause = cause.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
