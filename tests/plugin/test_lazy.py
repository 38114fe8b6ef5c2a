"""A run whose tests never ask for a database starts no server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ITEMS_MIGRATION, run_inner, write_files, write_ini

NO_DATABASE = """
    def test_arithmetic():
        assert 1 + 1 == 2

    def test_strings():
        assert "a".upper() == "A"
"""

WITH_DATABASE = """
    def test_uses_db(db):
        assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)
"""

SECTION = re.compile(r"^=+ seamtest =+$", re.MULTILINE)


@pytest.fixture
def empty_cache(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A cluster cache of its own: the first server start of any run fills it."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("SEAMTEST_CACHE_DIR", str(cache))
    write_ini(inner, seamtest_migrations="migrations")
    write_files(inner, "migrations", ITEMS_MIGRATION)
    return cache


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_no_database_no_server(
    inner: pytest.Pytester, empty_cache: Path, args: tuple[str, ...]
) -> None:
    inner.makepyfile(test_plain=NO_DATABASE)
    result = run_inner(inner, *args)
    result.assert_outcomes(passed=2)
    assert not SECTION.search(result.stdout.str()), "a seamtest summary means a server started"
    assert list(empty_cache.iterdir()) == []  # no cluster was built or copied

    # The control: the same project with one database test does start a server.
    inner.makepyfile(test_db=WITH_DATABASE)
    result = run_inner(inner, *args)
    result.assert_outcomes(passed=3)
    assert SECTION.search(result.stdout.str())
    assert (empty_cache / "clusters").is_dir()
