"""Templates: built once per content hash under a lock, published whole or not at all."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from seamtest import MigrationError
from seamtest._migrations import SqlDirectory
from seamtest._provision import Provisioner, read_comment, template_key
from seamtest._server import Endpoint
from tests.helpers import databases_like, like_prefix, query

#: Run ids are hex: the run's lease lock is derived from them.
RUN_A, RUN_B, RUN_EARLIER = (secrets.token_hex(4) for _ in range(3))


@pytest.fixture
def provisioner(pg_server: Endpoint, db_prefix: str) -> Iterator[Provisioner]:
    provisioner = Provisioner(pg_server, prefix=db_prefix, run_id=RUN_A)
    yield provisioner
    provisioner.close()


@pytest.fixture
def migrations(tmp_path: Path) -> SqlDirectory:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_users.sql").write_text(
        "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n"
    )
    (directory / "0002_seed.sql").write_text("INSERT INTO users (name) VALUES ('root');\n")
    return SqlDirectory(directory)


def test_a_template_is_built_once_then_reused(
    pg_server: Endpoint, db_prefix: str, provisioner: Provisioner, migrations: SqlDirectory
) -> None:
    first = provisioner.ensure_template([migrations])
    assert first.built
    assert first.name.startswith(db_prefix + "tpl_")
    assert first.sources == (migrations.describe(),)

    again = provisioner.ensure_template([migrations])
    assert (again.name, again.built) == (first.name, False)

    # Another process (another run, even) finds it too.
    other = Provisioner(pg_server, prefix=db_prefix, run_id=RUN_B)
    try:
        assert (
            other.ensure_template([migrations]).name,
            other.ensure_template([migrations]).built,
        ) == (first.name, False)
    finally:
        other.close()

    [(is_template, comment)] = query(
        pg_server,
        "SELECT datistemplate, shobj_description(oid, 'pg_database') FROM pg_database "
        "WHERE datname = %s",
        [first.name],
    )
    assert is_template
    info = read_comment(comment)
    assert info is not None
    assert (info["kind"], info["run"]) == ("template", RUN_A)
    # Only the published template is left: no build database.
    assert databases_like(pg_server, like_prefix(db_prefix)) == {first.name}


def test_the_template_holds_the_migrated_schema(
    pg_server: Endpoint, provisioner: Provisioner, migrations: SqlDirectory
) -> None:
    template = provisioner.ensure_template([migrations])
    clone = provisioner.create(template.name.replace("tpl_", "t_"), template.name)
    with pg_server.connect(clone.name) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("root",)]


def test_the_key_changes_when_a_migration_changes(
    provisioner: Provisioner, migrations: SqlDirectory
) -> None:
    key = template_key([migrations], "18.6", "")
    assert template_key([migrations], "18.6", "") == key
    assert template_key([migrations], "17.2", "") != key
    assert template_key([migrations], "18.6", "models v2") != key

    before = provisioner.ensure_template([migrations])
    (migrations.path / "0002_seed.sql").write_text("INSERT INTO users (name) VALUES ('admin');\n")
    assert template_key([migrations], "18.6", "") != key
    after = provisioner.ensure_template([migrations])
    assert after.built
    assert after.name != before.name

    (migrations.path / "0003_more.sql").write_text("ALTER TABLE users ADD email text;\n")
    assert provisioner.ensure_template([migrations]).name not in (before.name, after.name)


def test_a_user_key_forces_a_new_template(
    provisioner: Provisioner, migrations: SqlDirectory
) -> None:
    plain = provisioner.ensure_template([migrations])
    keyed = provisioner.ensure_template([migrations], "bump 1")
    assert keyed.built
    assert keyed.name != plain.name


def test_a_failing_migration_names_file_and_line_and_publishes_nothing(
    pg_server: Endpoint, db_prefix: str, provisioner: Provisioner, tmp_path: Path
) -> None:
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "0001_ok.sql").write_text("CREATE TABLE a (id int);\n")
    (directory / "0002_x.sql").write_text(
        "-- the third line is wrong\nCREATE TABLE b (id int);\nCREATE TABLEX c (id int);\n"
    )
    source = SqlDirectory(directory)
    with pytest.raises(MigrationError) as excinfo:
        provisioner.ensure_template([source])
    message = str(excinfo.value)
    assert f"{directory / '0002_x.sql'}:3:" in message
    assert 'syntax error at or near "TABLEX"' in message

    # Neither a published template nor the scratch build database is left behind.
    assert databases_like(pg_server, like_prefix(db_prefix)) == set()

    # And once the file is fixed, the template builds (nothing half-built is in the way).
    (directory / "0002_x.sql").write_text("CREATE TABLE b (id int);\n")
    assert provisioner.ensure_template([source]).built


def test_an_error_in_a_later_statement_names_its_line(
    provisioner: Provisioner, tmp_path: Path
) -> None:
    directory = tmp_path / "semantic"
    directory.mkdir()
    (directory / "0001_tables.sql").write_text(
        "CREATE TABLE a (id int);\n\nINSERT INTO a VALUES (1);\nINSERT INTO missing VALUES (1);\n"
    )
    with pytest.raises(
        MigrationError, match=r'0001_tables.sql:4: ERROR: relation "missing" does not exist'
    ):
        provisioner.ensure_template([SqlDirectory(directory)])


def test_a_no_transaction_migration_runs_outside_a_transaction(
    pg_server: Endpoint, provisioner: Provisioner, tmp_path: Path
) -> None:
    directory = tmp_path / "concurrently"
    directory.mkdir()
    (directory / "0001_table.sql").write_text("CREATE TABLE t (id int);\n")
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction block.
    (directory / "0002_index.sql").write_text(
        "-- no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
    )
    template = provisioner.ensure_template([SqlDirectory(directory)])
    clone = provisioner.create(template.name.replace("tpl_", "t_"), template.name)
    with pg_server.connect(clone.name) as conn:
        assert conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 't'"
        ).fetchall() == [("t_id",)]
