"""A FastAPI + SQLAlchemy + Alembic project under seamtest: migrated once, cloned per test,
rebuilt exactly when a migration changes, checked by the migration checks.

Each test copies ``fastapi_project/`` into an inner session's directory and runs pytest
there against this process's server (``--seamtest-url``). The project's ``env.py``
appends a line to ``env_runs.log`` each time it runs, which counts template builds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seamtest._server import Endpoint
from tests.helpers import INNER_TIMEOUT, databases_like, like_prefix, run_inner, write_ini

PROJECT = Path(__file__).parent / "fastapi_project"
CHECKS = "-p", "seamtest._checks_plugin"

ASYNC_ENV = '''
"""Alembic's generated async env.py (alembic init -t async), unchanged but for the log."""

import asyncio
import os
from pathlib import Path

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import async_engine_from_config

from app.models import Base

config = context.config
target_metadata = Base.metadata

with (Path(__file__).parent.parent / "env_runs.log").open("a") as log:
    log.write(f"{os.getpid()}\\n")


def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations():
    connectable = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


asyncio.run(run_async_migrations())
'''


@pytest.fixture
def project(inner: pytest.Pytester, db_prefix: str) -> pytest.Pytester:
    """The FastAPI project, copied into an inner session's directory, using Alembic."""
    shutil.copytree(PROJECT, inner.path, dirs_exist_ok=True)
    write_ini(
        inner,
        seamtest_migrations="alembic",
        seamtest_db_prefix=db_prefix,
        pythonpath=".",
        testpaths="tests",
    )
    return inner


def env_runs(project: pytest.Pytester) -> int:
    log = project.path / "env_runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def templates(pg_server: Endpoint, prefix: str) -> set[str]:
    """Published templates (the migrated one, and layers on top of it)."""
    return databases_like(pg_server, like_prefix(prefix + "tpl_"))


def template_line(result: pytest.RunResult) -> tuple[str, str]:
    """(name, built or reused) of the migrated template, from the seamtest summary."""
    [line] = [
        line for line in result.outlines if line.startswith("template ") and ": layer " not in line
    ]
    match = re.match(r"template (\S+): (built|reused) in", line)
    assert match, line
    return match[1], match[2]


def run(project: pytest.Pytester, pg_server: Endpoint, *args: str) -> pytest.RunResult:
    return run_inner(project, f"--seamtest-url={pg_server.url()}", *args)


def test_migrates_once_clones_per_test_and_rebuilds_when_a_migration_changes(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    first = run(project, pg_server)
    first.assert_outcomes(passed=3)
    assert env_runs(project) == 1
    built, how = template_line(first)
    assert how == "built"
    assert built in templates(pg_server, db_prefix)

    again = run(project, pg_server)
    again.assert_outcomes(passed=3)
    assert env_runs(project) == 1, "an unchanged project reuses its template"
    assert template_line(again) == (built, "reused")

    # Anything but a migration file leaves the template alone...
    (project.path / "tests" / "test_more.py").write_text("def test_nothing():\n    pass\n")
    run(project, pg_server).assert_outcomes(passed=4)
    assert env_runs(project) == 1

    # ...a changed migration builds a new one.
    migration = project.path / "alembic" / "versions" / "0002_notes.py"
    migration.write_text(
        migration.read_text().replace(
            'sa.Column("body", sa.Text, nullable=False),',
            'sa.Column("body", sa.Text, nullable=False),\n'
            '        sa.Column("pinned", sa.Boolean, server_default="false"),',
        )
    )
    changed = run(project, pg_server)
    changed.assert_outcomes(passed=4)
    assert env_runs(project) == 2
    new, how = template_line(changed)
    assert (how, new != built) == ("built", True)


def test_an_async_env_py_with_asyncpg_migrates_the_template(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    (project.path / "alembic" / "env.py").write_text(ASYNC_ENV.lstrip())
    ini = project.path / "alembic.ini"
    # The project names asyncpg; seamtest keeps the driver and replaces the rest.
    ini.write_text(ini.read_text().replace("postgresql+psycopg://", "postgresql+asyncpg://"))
    result = run(project, pg_server)
    result.assert_outcomes(passed=3)
    assert env_runs(project) == 1
    assert template_line(result)[1] == "built"


def test_the_url_seamtest_passes_wins_over_the_environment(
    project: pytest.Pytester, pg_server: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An env.py that builds its own engine from DATABASE_URL, ignoring the config.
    (project.path / "alembic" / "env.py").write_text(
        textwrap.dedent(
            """\
            import os

            from alembic import context
            from sqlalchemy import create_engine, pool

            url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://")
            engine = create_engine(url, poolclass=pool.NullPool)
            with engine.connect() as connection:
                context.configure(connection=connection)
                with context.begin_transaction():
                    context.run_migrations()
            """
        )
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:secret@nowhere.invalid/app")
    run(project, pg_server).assert_outcomes(passed=3)


def test_a_broken_migration_is_named_with_its_file_line_and_message(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    (project.path / "alembic" / "versions" / "0003_broken.py").write_text(
        textwrap.dedent(
            '''\
            """broken"""

            from alembic import op

            revision = "0003"
            down_revision = "0002"


            def upgrade() -> None:
                op.execute("UPDATE no_such_table SET x = 1")


            def downgrade() -> None:
                pass
            '''
        )
    )
    result = run(project, pg_server)
    assert result.ret != 0
    output = result.stdout.str()
    assert "0003_broken.py:10:" in output
    assert 'relation "no_such_table" does not exist' in output
    assert templates(pg_server, db_prefix) == set(), "a failed build publishes nothing"


def test_concurrent_sessions_build_the_template_once(
    project: pytest.Pytester, pg_server: Endpoint, db_prefix: str
) -> None:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--seamtest-url={pg_server.url()}",
    ]
    sessions = [
        subprocess.Popen(
            command, cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(3)
    ]
    outputs = [session.communicate(timeout=INNER_TIMEOUT)[0] for session in sessions]
    for session, output in zip(sessions, outputs, strict=True):
        assert session.returncode == 0, output
    assert env_runs(project) == 1, "three sessions, one build"
    assert sum(": built in" in output for output in outputs) == 1
    assert sum(": reused in" in output for output in outputs) == 2


def test_the_migration_checks_pass_on_a_consistent_project(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    result = run(project, pg_server, *CHECKS, "--seamtest-check-migrations", "-v")
    result.assert_outcomes(passed=7)
    for check in ("single_head", "upgrade", "roundtrip", "models"):
        result.stdout.fnmatch_lines([f"seamtest-migrations::alembic.ini::{check} PASSED*"])


def test_the_models_check_compares_named_models_too(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    result = run(
        project,
        pg_server,
        *CHECKS,
        "--seamtest-check-migrations",
        "--seamtest-models=app.models:Base",
        "-k",
        "models",
    )
    result.assert_outcomes(passed=1, deselected=6)


def test_the_migration_checks_name_what_disagrees(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    models = project.path / "app" / "models.py"
    models.write_text(
        models.read_text().replace(
            "    email: Mapped[str] = mapped_column(String(200), unique=True)\n",
            "    email: Mapped[str] = mapped_column(String(200), unique=True)\n"
            "    age: Mapped[int] = mapped_column(Integer)\n",
        )
    )
    migration = project.path / "alembic" / "versions" / "0002_notes.py"
    migration.write_text(migration.read_text().replace('    op.drop_table("notes")\n', ""))
    result = run(
        project, pg_server, *CHECKS, "--seamtest-check-migrations", "-k", "seamtest_migrations"
    )
    result.assert_outcomes(passed=2, failed=2, deselected=3)
    output = result.stdout.str()
    assert "table users:\n  column age (INTEGER) in the models, not in the migrated schema" in (
        output
    )
    assert "downgrade of 0002 (" in output
    assert "0002_notes.py) does not restore the schema before it:" in output
    assert "+ relation public.notes: r" in output


def test_the_single_head_check_names_both_heads(
    project: pytest.Pytester, pg_server: Endpoint
) -> None:
    versions = project.path / "alembic" / "versions"
    for name in ("0003a", "0003b"):
        (versions / f"{name}_branch.py").write_text(
            f'revision = "{name}"\ndown_revision = "0002"\n\n\n'
            "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
        )
    result = run(project, pg_server, *CHECKS, "--seamtest-check-migrations", "-k", "single_head")
    result.assert_outcomes(failed=1, deselected=6)
    result.stdout.fnmatch_lines(["*2 heads:*", "*0003a (*0003a_branch.py)*", "*alembic merge*"])


def test_checks_without_alembic_fail_the_run_early(inner: pytest.Pytester) -> None:
    write_ini(inner, seamtest_migrations="migrations")
    (inner.path / "migrations").mkdir()
    result = run_inner(inner, *CHECKS, "--seamtest-check-migrations")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*need an Alembic source in seamtest_migrations*"])
