"""SQL fixture files are looked up by name inside the fixtures directory, and only there."""

from __future__ import annotations

from pathlib import Path

import pytest

from seamtest import FixtureError, FixtureNotFoundError
from seamtest._migrations import FixtureFiles


@pytest.fixture
def fixtures_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "project" / "tests" / "fixtures"
    directory.mkdir(parents=True)
    (directory / "users.sql").write_text("INSERT INTO users VALUES (1);\n")
    (directory / "orders.sql").write_text("INSERT INTO orders VALUES (1);\n")
    (directory / "nested").mkdir()
    (directory / "nested" / "more.sql").write_text("SELECT 1;\n")
    (tmp_path / "secret.sql").write_text("-- outside the fixtures directory\n")
    return directory


def test_names_resolve_in_the_order_given(fixtures_dir: Path) -> None:
    files = FixtureFiles(fixtures_dir)
    assert files.resolve(["orders", "users.sql", "nested/more"]) == [
        fixtures_dir / "orders.sql",
        fixtures_dir / "users.sql",
        fixtures_dir / "nested" / "more.sql",
    ]


@pytest.mark.parametrize(
    "name", ["../../../secret", "../../../secret.sql", "nested/../../../../secret", "/etc/passwd"]
)
def test_paths_outside_the_directory_are_refused(fixtures_dir: Path, name: str) -> None:
    with pytest.raises(FixtureError, match="points outside the fixtures directory"):
        FixtureFiles(fixtures_dir).resolve([name])


def test_a_symlink_out_of_the_directory_is_refused(fixtures_dir: Path) -> None:
    (fixtures_dir / "sneaky.sql").symlink_to(fixtures_dir.parents[2] / "secret.sql")
    with pytest.raises(FixtureError, match="points outside the fixtures directory"):
        FixtureFiles(fixtures_dir).resolve(["sneaky"])


def test_a_missing_fixture_names_the_path_searched(fixtures_dir: Path) -> None:
    with pytest.raises(FixtureNotFoundError) as excinfo:
        FixtureFiles(fixtures_dir).resolve(["users", "userz"])
    assert str(fixtures_dir / "userz.sql") in str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)


@pytest.mark.parametrize("name", ["", None])
def test_empty_names_are_refused(fixtures_dir: Path, name: object) -> None:
    with pytest.raises(FixtureError, match="non-empty strings"):
        FixtureFiles(fixtures_dir).resolve([name])  # type: ignore[list-item]
