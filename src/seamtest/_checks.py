"""Migration checks: what pytest-alembic offers, without its false alarms.

Each check runs on a throwaway database of its own and raises ``CheckFailed`` with a
message that names the revision, its file and the difference:

- ``single_head``: the history has one head (two heads mean an unmerged branch);
- ``upgrade``: an empty database upgrades to the heads, and ends up at the heads;
- ``roundtrip``: one revision at a time, upgrade, downgrade and upgrade again, comparing
  the schema after each step (``_fingerprint.schema_lines``) with the one before it.
  Revisions whose ``downgrade()`` is empty or raises are skipped, not failed: a project
  that does not write down migrations has not broken anything;
- ``models``: the migrated schema against the SQLAlchemy models, difference by
  difference, table by table (Alembic's autogenerate comparison). With
  ``seamtest_models`` the models are compared directly; without it the comparison runs
  through ``env.py`` (``alembic check``), with the project's own ``include_object`` and
  comparison settings, which is what spares the false alarms.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from ._alembic import AlembicMigration, has_downgrade
from ._fingerprint import schema_diff, schema_lines
from ._names import database_name
from .errors import ConfigError, SeamtestError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script

    from ._provision import Provisioner, TestDatabase

CHECKS = ("single_head", "upgrade", "roundtrip", "models")
VERSION_TABLE = re.compile(r"^\S+ \S*alembic_version")


class CheckFailed(SeamtestError, AssertionError):
    """A migration check found a problem; the message says which and where."""


class CheckSkipped(SeamtestError):
    """A migration check does not apply to this project; the message says why."""


@contextmanager
def throwaway(provisioner: Provisioner, label: str, unique: str) -> Iterator[TestDatabase]:
    """An empty database of seamtest's own for one check, dropped afterwards."""
    name = database_name(provisioner.prefix, "chk", label, unique=unique)
    database = provisioner.create(name, "template0", check=label)
    try:
        yield database
    finally:
        provisioner.drop_now(name)


def _ordered(source: AlembicMigration) -> list[Script]:
    """Revisions from the first to the heads."""
    return list(reversed(list(source.script().walk_revisions("base", "heads"))))


def _where(script: Script) -> str:
    return f"{script.revision} ({script.path})"


def check_single_head(source: AlembicMigration) -> None:
    heads = source.script().get_revisions("heads")
    if len(heads) > 1:
        listed = "\n  ".join(_where(h) for h in heads if h is not None)
        raise CheckFailed(
            f"{source.ini}: {len(heads)} heads:\n  {listed}\nMerge them: alembic merge heads "
            "-m 'merge'."
        )


def _upgrade(target: str) -> Callable[[Config], None]:
    def run(cfg: Config) -> None:
        from alembic import command

        command.upgrade(cfg, target)

    return run


def _downgrade(target: str) -> Callable[[Config], None]:
    def run(cfg: Config) -> None:
        from alembic import command

        command.downgrade(cfg, target)

    return run


def _current(cfg: Config) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    connection = cfg.attributes["connection"]
    return set(MigrationContext.configure(connection).get_current_heads())


def check_upgrade(source: AlembicMigration, url: str) -> None:
    source.run(url, _upgrade("heads"))
    heads = set(source.script().get_heads())
    current = source.run(url, _current)
    if current != heads:
        raise CheckFailed(
            f"after 'alembic upgrade heads' the database is at {sorted(current)}, not at the "
            f"heads {sorted(heads)}: does env.py run the migrations in a transaction it "
            "commits?"
        )


def _lines(url: str) -> list[str]:
    """The schema, less Alembic's version table (a downgrade to base leaves it, empty)."""
    with psycopg.connect(url, autocommit=True) as conn:
        lines = schema_lines(conn)
    return [line for line in lines if not VERSION_TABLE.search(line)]


def check_roundtrip(source: AlembicMigration, url: str) -> list[str]:
    """Upgrade, downgrade, upgrade each revision in turn; returns the revisions skipped."""
    revisions = _ordered(source)
    if any(len(r.nextrev) > 1 for r in revisions) or len(source.script().get_heads()) > 1:
        raise CheckSkipped(
            "the history branches; seamtest checks round trips on linear histories (merge "
            "the branches, or rely on the upgrade check)"
        )
    skipped = []
    before = _lines(url)
    for script in revisions:
        source.run(url, _upgrade(script.revision))
        after = _lines(url)
        if not has_downgrade(script):
            skipped.append(script.revision)
            before = after
            continue
        source.run(url, _downgrade("-1"))
        down = _lines(url)
        if down != before:
            raise CheckFailed(
                f"downgrade of {_where(script)} does not restore the schema before it:\n  "
                + "\n  ".join(schema_diff(before, down))
            )
        source.run(url, _upgrade(script.revision))
        again = _lines(url)
        if again != after:
            raise CheckFailed(
                f"upgrade of {_where(script)} after its downgrade gives another schema than "
                "the first upgrade:\n  " + "\n  ".join(schema_diff(after, again))
            )
        before = after
    return skipped


def load_metadata(spec: str, origin: str = "seamtest_models") -> Any:
    """``pkg.models:Base`` or ``pkg.models:metadata`` -> a SQLAlchemy MetaData."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{origin} = {spec!r}: write 'package.module:Base' or ':metadata'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{origin} = {spec!r}: cannot import {module_name!r} ({exc}).") from exc
    value = getattr(module, attr, None)
    metadata = getattr(value, "metadata", value)
    from sqlalchemy import MetaData

    if not isinstance(metadata, MetaData):
        raise ConfigError(
            f"{origin} = {spec!r}: {module_name}.{attr} is neither a MetaData nor a declarative "
            "base with .metadata."
        )
    return metadata


def _compare(metadata: Any) -> Callable[[Config], list[Any]]:
    def run(cfg: Config) -> list[Any]:
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        context = MigrationContext.configure(
            cfg.attributes["connection"], opts={"compare_type": True}
        )
        return list(compare_metadata(context, metadata))

    return run


def _check_via_env(cfg: Config) -> list[Any]:
    from alembic import command
    from alembic.util import AutogenerateDiffsDetected, CommandError

    try:
        command.check(cfg)
    except AutogenerateDiffsDetected as exc:
        return list(exc.diffs)
    except CommandError as exc:
        if "MetaData" in str(exc):
            raise CheckSkipped(
                "env.py gives Alembic no target_metadata; set seamtest_models = "
                "'package.models:Base' to compare the models with the migrations"
            ) from exc
        raise
    return []


def check_models(source: AlembicMigration, url: str, models: str = "") -> None:
    source.run(url, _upgrade("heads"))
    if models:
        diffs = source.run(url, _compare(load_metadata(models)))
    else:
        diffs = source.run(url, _check_via_env)
    if diffs:
        raise CheckFailed(
            "the migrated schema and the models disagree (run 'alembic revision "
            "--autogenerate' to write the missing migration, or fix the models):\n"
            + describe_diffs(diffs)
        )


# -- what a difference means, in words -----------------------------------------------------
_IN_MODELS = "in the models, not in the migrated schema"
_IN_SCHEMA = "in the migrated schema, not in the models"


def _table_and_text(diff: tuple[Any, ...]) -> tuple[str, str]:
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        table = diff[1]
        return table.name, f"table {_IN_MODELS if kind == 'add_table' else _IN_SCHEMA}"
    if kind in ("add_column", "remove_column"):
        column = diff[3]
        where = _IN_MODELS if kind == "add_column" else _IN_SCHEMA
        return diff[2], f"column {column.name} ({column.type}) {where}"
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        where = _IN_MODELS if kind == "add_index" else _IN_SCHEMA
        columns = ", ".join(c.name for c in index.columns)
        return index.table.name, f"index {index.name} ({columns}) {where}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        table = constraint.table.name if hasattr(constraint, "table") else "?"
        where = _IN_MODELS if kind.startswith("add") else _IN_SCHEMA
        label = "foreign key" if kind.endswith("fk") else type(constraint).__name__
        columns = ", ".join(c.name for c in getattr(constraint, "columns", ()))
        return table, f"{label} {constraint.name or ''} ({columns}) {where}".replace("  ", " ")
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, schema_value, model_value = diff
        what = kind[len("modify_") :]
        return table, (
            f"column {column}: {what} {schema_value!s} in the migrated schema, "
            f"{model_value!s} in the models"
        )
    return "?", repr(diff)


def describe_diffs(diffs: list[Any]) -> str:
    """Alembic's autogenerate differences, grouped by table, one line each."""
    flat: list[tuple[Any, ...]] = []
    for diff in diffs:
        flat += diff if isinstance(diff, list) else [diff]
    tables: dict[str, list[str]] = {}
    for diff in flat:
        table, text = _table_and_text(diff)
        tables.setdefault(table, []).append(text)
    return "\n".join(
        f"table {table}:\n" + "\n".join(f"  {line}" for line in lines)
        for table, lines in sorted(tables.items())
    )
