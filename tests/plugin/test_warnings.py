"""Suites that turn warnings into errors (as ours does) can use seamtest."""

from __future__ import annotations

import pytest

from tests.helpers import ITEMS_MIGRATION, run_inner, write_files, write_ini


def test_embedded_server_under_filterwarnings_error(inner: pytest.Pytester) -> None:
    write_ini(inner, seamtest_migrations="migrations", filterwarnings="error")
    write_files(inner, "migrations", ITEMS_MIGRATION)
    inner.makepyfile(
        """
        def test_one(db):
            assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)

        def test_two(db):
            assert db.execute("SELECT count(*) FROM items").fetchone() == (1,)
        """
    )
    result = run_inner(inner)
    result.assert_outcomes(passed=2)
    assert "ResourceWarning" not in result.stdout.str()
