"""Template keys you can trust, and what a template turned out to hold.

Everything that decides what a template holds is in its key: the sources' fingerprints
(every migration file; for Alembic the whole script directory and the ini file), the
server's version and available extensions, seamtest's version, the installed versions of
the distributions named in ``seamtest_template_deps`` and the user's key. The inputs are
also recorded one by one (``template_inputs``, file by file where a source has files), so
a later build can say what changed (``explain_rebuild``). After a build, ``schema_digest``
summarises the schema the migrations produced; migration checks compare the same lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg is imported on first use: loading the plugin stays cheap
    import psycopg

from ._migrations import MigrationSource, setting
from .errors import ConfigError

if TYPE_CHECKING:
    from ._config import Settings


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


#: What the server can CREATE EXTENSION: a different postgis makes a different template.
EXTENSIONS_QUERY = "SELECT name, default_version FROM pg_available_extensions ORDER BY name"


def extensions_fingerprint(rows: Iterable[Sequence[Any]]) -> str:
    """A short digest of ``EXTENSIONS_QUERY``'s rows."""
    return _short("\n".join(f"{name} {version}" for name, version in rows).encode())


def installed_versions(names: Iterable[str], origin: str = "seamtest_template_deps") -> str:
    """``name==version`` of each installed distribution; a missing one is an error."""
    pins = []
    for name in sorted({n.strip() for n in names if n.strip()}):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise ConfigError(
                f"{origin}: {name!r} is not installed; name installed distributions whose "
                "version decides what the template holds (pip show NAME)."
            ) from None
    return ", ".join(pins)


def fingerprint_extras(settings: Settings, extensions: str = "") -> str:
    """The inputs ``template_key`` does not see by itself, as one text for its user key:
    ``seamtest_template_deps``' versions, the server's extensions, the user's key."""
    deps, origin = setting(settings, "seamtest_template_deps", ())
    parts = {
        "deps": installed_versions(deps, origin),
        "extensions": extensions,
        "key": settings["seamtest_template_key"],
    }
    return "\n".join(f"{name} {value}" for name, value in parts.items())


def template_inputs(
    sources: Sequence[MigrationSource], server_version: str, extras: str
) -> dict[str, str]:
    """Every input of a template by name, file by file where a source has files.

    Stored with the template (``"inputs"`` in its comment) so that a later build can
    say what changed (``explain_rebuild``).
    """
    from . import __version__

    inputs = {"seamtest": __version__, "server": server_version}
    for line in extras.splitlines():
        name, _, value = line.partition(" ")
        inputs[name] = _short(value.encode()) if value else ""
    for source in sources:
        label = source.describe()
        manifest = getattr(source, "manifest", None)
        if manifest is None:
            inputs[label] = _short(source.fingerprint().encode())
            continue
        files: Mapping[str, str] = manifest()
        inputs[label] = _short(source.fingerprint().encode())
        inputs.update({f"{label} | {name}": value for name, value in files.items()})
    return inputs


def config_id(sources: Sequence[MigrationSource]) -> str:
    """Which configuration a template belongs to, whatever its content: the sources'
    descriptions. Templates with the same id are versions of one another."""
    return _short("\n".join(s.describe() for s in sources).encode())


def explain_rebuild(previous: Mapping[str, str] | None, current: Mapping[str, str]) -> str:
    """Why a template was built, for ``template X: built in 600 ms, <reason>``:
    ``because alembic/versions/0002_notes.py changed`` (at most five names)."""
    if not previous:
        return "the first for these migrations"
    changed: list[str] = []
    for name in sorted(set(previous) | set(current)):
        if previous.get(name) == current.get(name):
            continue
        label, sep, file = name.partition(" | ")
        if sep:
            verb = (
                "added" if name not in previous else "removed" if name not in current else "changed"
            )
            changed.append(f"{file} {verb}")
        elif not any(other.startswith(label + " | ") for other in current):
            changed.append(f"{name} changed")
    if not changed:
        return "though its inputs match an earlier template (dropped, or forced)"
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return f"because {shown}"


def fixture_fingerprint(paths: Iterable[Path]) -> str:
    """Content hash of fixture files, for templates that include fixtures (layers)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# -- what a template holds ----------------------------------------------------------------
#: One line per object of the user's schemas (not pg_*, not information_schema), free of
#: oids and anything else that differs between two databases holding the same schema.
#: Each query yields (kind, name, definition).
SCHEMA_QUERIES = (
    # Columns, with type, nullability and default (identity and generated included).
    """SELECT 'column', n.nspname || '.' || c.relname || '.' || a.attname,
              format_type(a.atttypid, a.atttypmod)
              || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
              || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
              || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
              || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
         AND n.nspname !~ '^(pg_|information_schema$)'""",
    # Relations and their kind (table, view, sequence, ...).
    """SELECT 'relation', n.nspname || '.' || c.relname, c.relkind::text
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
         AND n.nspname !~ '^(pg_|information_schema$)'""",
    """SELECT 'constraint', n.nspname || '.' || c.relname || '.' || k.conname,
              pg_get_constraintdef(k.oid)
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname !~ '^(pg_|information_schema$)'""",
    """SELECT 'index', schemaname || '.' || indexname, indexdef FROM pg_indexes
       WHERE schemaname !~ '^(pg_|information_schema$)'""",
    """SELECT 'view', schemaname || '.' || viewname, definition FROM pg_views
       WHERE schemaname !~ '^(pg_|information_schema$)'""",
    """SELECT 'type', n.nspname || '.' || t.typname,
              coalesce(string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder), t.typtype::text)
       FROM pg_type t
       JOIN pg_namespace n ON n.oid = t.typnamespace
       LEFT JOIN pg_enum e ON e.enumtypid = t.oid
       WHERE t.typtype IN ('e', 'd', 'r') AND n.nspname !~ '^(pg_|information_schema$)'
       GROUP BY n.nspname, t.typname, t.typtype""",
    """SELECT 'function', n.nspname || '.' || p.proname
              || '(' || pg_get_function_identity_arguments(p.oid) || ')',
              md5(pg_get_functiondef(p.oid))
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE p.prokind IN ('f', 'p') AND n.nspname !~ '^(pg_|information_schema$)'""",
    """SELECT 'trigger', c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE NOT t.tgisinternal AND n.nspname !~ '^(pg_|information_schema$)'""",
    "SELECT 'extension', extname, extversion FROM pg_extension",
    """SELECT 'schema', nspname, '' FROM pg_namespace
       WHERE nspname !~ '^(pg_|information_schema$)'""",
)


def schema_lines(conn: psycopg.Connection[Any]) -> list[str]:
    """The schema of ``conn``'s database, one sorted line per object."""
    lines: list[str] = []
    for query in SCHEMA_QUERIES:
        rows = conn.execute(query.encode()).fetchall()
        lines += [f"{kind} {name}: {definition}" for kind, name, definition in rows]
    if not conn.autocommit:
        conn.rollback()
    return sorted(lines)


def schema_digest(conn: psycopg.Connection[Any]) -> str:
    """A short digest of ``schema_lines``: equal schemas, equal digests."""
    return _short("\n".join(schema_lines(conn)).encode())


def schema_diff(before: Sequence[str], after: Sequence[str], limit: int = 20) -> list[str]:
    """What differs between two ``schema_lines``: ``- line`` gone, ``+ line`` new."""
    old, new = set(before), set(after)
    diff = [f"- {line}" for line in sorted(old - new)] + [f"+ {line}" for line in sorted(new - old)]
    if len(diff) > limit:
        diff = [*diff[:limit], f"... and {len(diff) - limit} more"]
    return diff
