"""Migration directories: numeric order, sqlx-style names, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from seamtest import ConfigError
from seamtest._migrations import CallableMigration, SqlDirectory, parse_sources


def make(directory: Path, *names: str) -> SqlDirectory:
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / name).write_text(f"-- {name}\n")
    return SqlDirectory(directory)


def test_files_are_ordered_by_version_number_not_by_text(tmp_path: Path) -> None:
    source = make(tmp_path, "10_ten.sql", "2_two.sql", "0001_one.sql", "20240101120000_late.up.sql")
    assert [p.name for p in source.files()] == [
        "0001_one.sql",
        "2_two.sql",
        "10_ten.sql",
        "20240101120000_late.up.sql",
    ]


def test_down_migrations_and_other_files_are_skipped(tmp_path: Path) -> None:
    source = make(tmp_path, "0001_one.sql", "0001_one.down.sql", "0002_two-dash.sql")
    (tmp_path / "README.md").write_text("not SQL")
    assert [p.name for p in source.files()] == ["0001_one.sql", "0002_two-dash.sql"]


@pytest.mark.parametrize("bad", ["create_users.sql", "v1_users.sql", "0003.sql"])
def test_a_badly_named_file_is_an_error_naming_it(tmp_path: Path, bad: str) -> None:
    source = make(tmp_path, "0001_one.sql", bad)
    with pytest.raises(ConfigError) as excinfo:
        source.files()
    message = str(excinfo.value)
    assert str(tmp_path / bad) in message
    assert "0001_create_users.sql" in message  # the expected shape, as an example


def test_two_files_with_one_version_are_an_error_naming_both(tmp_path: Path) -> None:
    source = make(tmp_path, "1_a.sql", "0001_b.sql")
    with pytest.raises(ConfigError, match="share version 1") as excinfo:
        source.files()
    assert str(tmp_path / "1_a.sql") in str(excinfo.value)
    assert str(tmp_path / "0001_b.sql") in str(excinfo.value)


def test_a_missing_directory_says_what_was_expected(tmp_path: Path) -> None:
    source = SqlDirectory(tmp_path / "nope", "seamtest_migrations (from ini)")
    with pytest.raises(
        ConfigError, match=r"seamtest_migrations \(from ini\): .*nope is not a directory"
    ):
        source.files()


def test_the_fingerprint_follows_names_and_contents(tmp_path: Path) -> None:
    source = make(tmp_path, "0001_one.sql")
    first = source.fingerprint()
    assert source.fingerprint() == first
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE t (id int);\n")
    second = source.fingerprint()
    assert second != first
    (tmp_path / "0001_one.sql").rename(tmp_path / "0001_renamed.sql")
    assert source.fingerprint() not in (first, second)


def test_sources_are_directories_or_callables_in_order(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    sources = parse_sources(
        ["migrations", "", "  myapp.schema:create_all  "], tmp_path, "seamtest_migrations"
    )
    assert sources == [
        SqlDirectory((tmp_path / "migrations").resolve(), "seamtest_migrations"),
        CallableMigration("myapp.schema:create_all", "seamtest_migrations"),
    ]


def test_an_unimportable_callable_says_how_to_fix_it() -> None:
    source = CallableMigration("no_such_module_here:create", "seamtest_migrations (from ini)")
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_module_here'.*pythonpath"):
        source.fingerprint()


def test_a_callable_that_is_missing_is_named() -> None:
    source = CallableMigration("json:no_such_function")
    with pytest.raises(ConfigError, match="json has no callable 'no_such_function'"):
        source.load()
