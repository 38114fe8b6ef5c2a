"""Migration checks as test items: ``--seamtest-check-migrations`` or ini
``seamtest_migration_checks = true`` adds them to the run.

For each Alembic source of ``seamtest_migrations`` the run gains the items
``seamtest-migrations::<ini>::<check>`` (single_head, upgrade, roundtrip, models), selected
and deselected like any test (``-k roundtrip``; ``-k seamtest_migrations`` for all).
Each runs on a throwaway database on seamtest's server. Alembic and SQLAlchemy are
imported only when the checks run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ._config import Option, Settings, resolve
from .errors import SeamtestError

CHECK_OPTIONS = (
    Option(
        "seamtest_migration_checks",
        "Add migration checks to the run: single head, upgrade from empty, "
        "downgrade/upgrade round trips, models against migrations (Alembic).",
        "bool",
        False,
    ),
    Option(
        "seamtest_models",
        "SQLAlchemy models the migration checks compare with the migrations: "
        "'package.models:Base' or 'package.models:metadata' (default: env.py's "
        "target_metadata).",
        "string",
        "",
    ),
)
CHECK_SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seamtest")
    parser.addini(CHECK_OPTIONS[0].name, CHECK_OPTIONS[0].help, type="bool", default=False)
    parser.addini(CHECK_OPTIONS[1].name, CHECK_OPTIONS[1].help, default="")
    group.addoption(
        "--seamtest-check-migrations",
        dest="seamtest_migration_checks",
        action="store_const",
        const=True,
        default=None,
        help=CHECK_OPTIONS[0].help,
    )
    group.addoption("--seamtest-models", dest="seamtest_models", default=None)


def check_settings(config: pytest.Config) -> Settings:
    if CHECK_SETTINGS not in config.stash:
        cli = {o.name: getattr(config.option, o.name, None) for o in CHECK_OPTIONS}
        ini = {o.name: config.getini(o.name) for o in CHECK_OPTIONS}
        try:
            settings = resolve(cli, ini, os.environ, config.rootpath, CHECK_OPTIONS)
        except SeamtestError as exc:
            raise pytest.UsageError(f"seamtest: {exc}") from None
        config.stash[CHECK_SETTINGS] = settings
    return config.stash[CHECK_SETTINGS]


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    settings = check_settings(config)
    if not settings["seamtest_migration_checks"]:
        return
    from ._alembic import AlembicMigration
    from ._migrations import parse_sources
    from .fixtures import SESSION

    seamtest = config.stash[SESSION].settings
    try:
        sources = parse_sources(
            seamtest["seamtest_migrations"],
            seamtest.rootdir,
            seamtest.origin("seamtest_migrations"),
        )
    except SeamtestError as exc:
        raise pytest.UsageError(f"seamtest: {exc}") from None
    alembic = [s for s in sources if isinstance(s, AlembicMigration)]
    if not alembic:
        raise pytest.UsageError(
            f"seamtest: {settings.origin('seamtest_migration_checks')} asks for migration "
            "checks, which need an Alembic source in seamtest_migrations ('alembic' or "
            "'alembic:path/to/alembic.ini'); it has none."
        )
    for source in alembic:
        label = (
            source.ini.relative_to(config.rootpath)
            if source.ini.is_relative_to(config.rootpath)
            else source.ini
        )
        for check in ("single_head", "upgrade", "roundtrip", "models"):
            items.append(
                MigrationCheck.from_parent(
                    session,
                    name=check,
                    nodeid=f"seamtest-migrations::{label}::{check}",
                    path=source.ini,
                    source=source,
                    models=settings["seamtest_models"],
                )
            )


class MigrationCheck(pytest.Item):
    """One migration check of one Alembic project."""

    def __init__(self, *, source: Any, models: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.models = models
        # -k selects them all by this name (-k seamtest_migrations), or one by its own.
        self.extra_keyword_matches.add("seamtest_migrations")

    def runtest(self) -> None:
        from . import _checks
        from .fixtures import SESSION

        if self.name == "single_head":
            _checks.check_single_head(self.source)
            return
        seamtest = self.config.stash[SESSION]
        unique = f"{seamtest.run.run_id}:{seamtest.worker}:{self.nodeid}"
        try:
            with _checks.throwaway(seamtest.provisioner, self.name, unique) as database:
                if self.name == "upgrade":
                    _checks.check_upgrade(self.source, database.url)
                elif self.name == "roundtrip":
                    skipped = _checks.check_roundtrip(self.source, database.url)
                    if skipped:
                        self.add_report_section(
                            "call",
                            "seamtest",
                            "no downgrade to check in: " + ", ".join(skipped),
                        )
                else:
                    _checks.check_models(self.source, database.url, self.models)
        except _checks.CheckSkipped as exc:
            pytest.skip(str(exc))

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, SeamtestError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"seamtest migration check {self.name} ({self.source.ini})"
