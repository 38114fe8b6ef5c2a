"""Migration sources, seeds and fingerprints, against this process's server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from seamtest import MigrationError
from seamtest._alembic import AlembicMigration, parse_spec, sqlalchemy_url
from seamtest._config import Settings, Value
from seamtest._fingerprint import (
    explain_rebuild,
    fingerprint_extras,
    installed_versions,
    schema_digest,
    schema_lines,
    template_inputs,
)
from seamtest._migrations import (
    CallableMigration,
    SqlDirectory,
    SqlFiles,
    YoyoMigration,
    parse_sources,
    seed_sources,
    template_sources,
)
from seamtest._provision import Provisioner
from seamtest._server import Endpoint
from seamtest.errors import ConfigError

PROJECT = Path(__file__).parent / "fastapi_project"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the FastAPI project, its ``app`` package importable (env.py needs it)."""
    shutil.copytree(PROJECT, tmp_path / "project")
    monkeypatch.syspath_prepend(tmp_path / "project")
    return tmp_path / "project"


@pytest.fixture
def provisioner(pg_server: Endpoint, db_prefix: str) -> Iterator[Provisioner]:
    provisioner = Provisioner(pg_server, prefix=db_prefix, run_id="0e0e0e0e")
    yield provisioner
    provisioner.close()


def settings(rootdir: Path, **values: object) -> Settings:
    defaults: dict[str, object] = {
        "seamtest_migrations": (),
        "seamtest_seed": (),
        "seamtest_template_deps": (),
        "seamtest_template_key": "",
        "seamtest_env": (),
    }
    defaults.update(values)
    return Settings({k: Value(v, "ini") for k, v in defaults.items()}, rootdir)


def test_the_spellings_of_an_alembic_source(tmp_path: Path) -> None:
    assert parse_spec("alembic", tmp_path, "o") == (tmp_path / "alembic.ini", "heads")
    assert parse_spec("alembic@0002", tmp_path, "o") == (tmp_path / "alembic.ini", "0002")
    assert parse_spec("alembic:db/a.ini@head", tmp_path, "o") == (tmp_path / "db/a.ini", "head")
    with pytest.raises(ConfigError, match=r"alembic:path/to/alembic\.ini@<revision>"):
        parse_spec("alembicx", tmp_path, "o")
    sources = parse_sources(["alembic:db/a.ini", "yoyo:yoyo", "pkg.mod:func", "sql"], tmp_path, "o")
    assert [type(s) for s in sources] == [
        AlembicMigration,
        YoyoMigration,
        CallableMigration,
        SqlDirectory,
    ]


def test_the_url_keeps_the_driver_the_project_names() -> None:
    url = "postgresql://u:p%40ss@127.0.0.1:5432/db"
    assert sqlalchemy_url(url, "postgresql+asyncpg://x@y/z").startswith("postgresql+asyncpg://")
    assert sqlalchemy_url(url, None) == "postgresql+psycopg://u:p%40ss@127.0.0.1:5432/db"
    assert sqlalchemy_url(url, "driver://user:pass@localhost/dbname").startswith(
        "postgresql+psycopg://"
    )


def test_the_alembic_fingerprint_covers_env_py_the_ini_and_every_version(
    project: Path,
) -> None:
    source = AlembicMigration(project / "alembic.ini")
    first = source.fingerprint()
    (project / "alembic" / "versions" / "__pycache__").mkdir()
    (project / "alembic" / "versions" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert source.fingerprint() == first, "bytecode is not an input"
    for path in ("alembic/env.py", "alembic.ini", "alembic/versions/0001_users.py"):
        before = source.fingerprint()
        with (project / path).open("a") as f:
            f.write("\n# changed\n")
        assert source.fingerprint() != before, path
    assert AlembicMigration(project / "alembic.ini", "0001").fingerprint() != source.fingerprint()


def test_a_rebuild_says_which_file_changed(project: Path) -> None:
    source = AlembicMigration(project / "alembic.ini")
    before = template_inputs([source], "18.1", "deps \nkey ")
    migration = project / "alembic" / "versions" / "0002_notes.py"
    migration.write_text(migration.read_text() + "\n# changed\n")
    (project / "alembic" / "versions" / "0003_new.py").write_text("revision = '3'\n")
    after = template_inputs([source], "18.1", "deps \nkey ")
    assert explain_rebuild(before, after) == (
        "because alembic/versions/0002_notes.py changed, alembic/versions/0003_new.py added"
    )
    assert explain_rebuild(after, {**after, "server": "18.2"}) == "because server changed"
    assert explain_rebuild(None, after) == "the first for these migrations"


def test_the_template_deps_and_the_user_key_are_in_the_extras(tmp_path: Path) -> None:
    extras = fingerprint_extras(
        settings(tmp_path, seamtest_template_deps=("alembic",), seamtest_template_key="k1"),
        "ext",
    )
    assert "alembic==" in extras
    assert "key k1" in extras
    assert "extensions ext" in extras
    with pytest.raises(ConfigError, match="'no-such-dist' is not installed"):
        installed_versions(["no-such-dist"])


def test_alembic_upgrades_through_the_url_it_is_given(
    project: Path, provisioner: Provisioner, pg_server: Endpoint
) -> None:
    template = provisioner.ensure_template([AlembicMigration(project / "alembic.ini")])
    with pg_server.connect(template.name) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0002",)


def test_a_broken_alembic_migration_names_its_file_and_line(
    project: Path, provisioner: Provisioner
) -> None:
    (project / "alembic" / "versions" / "0003_broken.py").write_text(
        'revision = "0003"\ndown_revision = "0002"\n\n\ndef upgrade():\n'
        "    from alembic import op\n\n    op.add_column('nope', __import__('sqlalchemy')"
        ".Column('x', __import__('sqlalchemy').Integer))\n"
    )
    with pytest.raises(MigrationError) as caught:
        provisioner.ensure_template([AlembicMigration(project / "alembic.ini")])
    message = str(caught.value)
    assert "0003_broken.py:8: alembic upgrade to 'heads'" in message
    assert 'relation "nope" does not exist' in message


def test_yoyo_migrations_build_a_template(
    tmp_path: Path, provisioner: Provisioner, pg_server: Endpoint
) -> None:
    pytest.importorskip("yoyo")
    (tmp_path / "yoyo").mkdir()
    (tmp_path / "yoyo" / "0001.items.sql").write_text("CREATE TABLE items (id int);\n")
    template = provisioner.ensure_template(parse_sources(["yoyo:yoyo"], tmp_path, "o"))
    with pg_server.connect(template.name) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)


def test_seeds_run_after_the_migrations(
    tmp_path: Path, provisioner: Provisioner, pg_server: Endpoint
) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_t.sql").write_text("CREATE TABLE t (v text);\n")
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "a.sql").write_text("INSERT INTO t VALUES ('a');\n")
    (tmp_path / "more.sql").write_text("INSERT INTO t VALUES ('b');\n")
    config = settings(
        tmp_path, seamtest_migrations=("migrations",), seamtest_seed=("seed", "more.sql")
    )
    [seed] = seed_sources(config)
    assert isinstance(seed, SqlFiles)
    template = provisioner.ensure_template(template_sources(config))
    with pg_server.connect(template.name) as conn:
        assert conn.execute("SELECT v FROM t ORDER BY v").fetchall() == [("a",), ("b",)]
    with pytest.raises(ConfigError, match=r"missing\.sql does not exist"):
        seed_sources(settings(tmp_path, seamtest_seed=("missing.sql",)))[0].fingerprint()


def test_the_schema_digest_sees_schema_not_data(
    pg_server: Endpoint, provisioner: Provisioner, db_prefix: str
) -> None:
    one = provisioner.create(f"{db_prefix}one", "template0")
    two = provisioner.create(f"{db_prefix}two", "template0")
    ddl = "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL DEFAULT 'x')"
    with (
        psycopg.connect(one.conninfo, autocommit=True) as a,
        psycopg.connect(two.conninfo, autocommit=True) as b,
    ):
        a.execute(ddl)
        b.execute(ddl)
        b.execute("INSERT INTO t VALUES (1)")
        assert schema_digest(a) == schema_digest(b)
        b.execute("CREATE INDEX ON t (v)")
        assert schema_digest(a) != schema_digest(b)
        assert "column public.t.v: text NOT NULL DEFAULT 'x'::text" in schema_lines(a)
