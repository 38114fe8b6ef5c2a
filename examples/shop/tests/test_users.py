"""UserRepository against a real PostgreSQL: each test gets its own migrated database."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from shop import DuplicateEmail, UserRepository

pytestmark = pytest.mark.integration


def test_create_then_find_user(db: psycopg.Connection) -> None:
    users = UserRepository(db)

    created = users.create("Ada Lovelace", "ada@example.com")

    assert created.id > 0
    assert created.name == "Ada Lovelace"
    assert users.find_by_id(created.id) == created
    assert users.find_by_email("ada@example.com") == created


def test_find_by_id_returns_none_when_missing(db: psycopg.Connection) -> None:
    assert UserRepository(db).find_by_id(424242) is None
    assert UserRepository(db).find_by_email("nobody@example.com") is None


def test_duplicate_email_raises_domain_error(db: psycopg.Connection) -> None:
    users = UserRepository(db)
    users.create("Ada Lovelace", "ada@example.com")

    with pytest.raises(DuplicateEmail, match=r"ada@example\.com") as excinfo:
        users.create("Impostor", "ada@example.com")

    assert excinfo.value.email == "ada@example.com"
    assert isinstance(excinfo.value.__cause__, errors.UniqueViolation)


def test_email_is_unique_at_database_level(db: psycopg.Connection) -> None:
    # Plain SQL, no repository: the guarantee lives in the schema (0001_create_users.sql).
    insert = "INSERT INTO users (name, email) VALUES (%s, %s)"
    db.execute(insert, ("Ada", "ada@example.com"))

    with pytest.raises(errors.UniqueViolation) as excinfo:
        db.execute(insert, ("Ada again", "ada@example.com"))

    assert excinfo.value.diag.constraint_name == "users_email_key"


@pytest.mark.seamtest(fixtures=["users"])
def test_fixture_users_are_loaded_and_ids_continue_after_them(db: psycopg.Connection) -> None:
    users = UserRepository(db)

    ada = users.find_by_id(1)
    newcomer = users.create("Barbara Liskov", "barbara@example.com")

    assert ada is not None
    assert ada.email == "ada@example.com"
    assert newcomer.id == 3  # users.sql called setval() after inserting ids 1 and 2


def test_a_real_server_answers(db: psycopg.Connection) -> None:
    row = db.execute("SELECT 1 + 1, current_setting('server_version_num')::int").fetchone()

    assert row is not None
    assert row[0] == 2
    assert row[1] >= 100000  # PostgreSQL 10 or later, not a mock


@pytest.mark.parametrize("attempt", [1, 2])
def test_committed_rows_stay_in_their_own_database(db: psycopg.Connection, attempt: int) -> None:
    # Both runs COMMIT the same email, in any order or on any xdist worker: with a shared
    # database (or one cleaned by rolling back) the second run would hit the constraint.
    UserRepository(db).create("Ada Lovelace", "ada@example.com")
    db.commit()

    assert db.execute("SELECT count(*) FROM users").fetchone() == (1,)


async def test_async_connection_round_trip(adb: psycopg.AsyncConnection) -> None:
    async with adb.cursor() as cur:
        await cur.execute(
            "INSERT INTO users (name, email) VALUES (%s, %s) RETURNING id",
            ("Async Ada", "async@example.com"),
        )
        inserted = await cur.fetchone()
        await cur.execute("SELECT name FROM users WHERE email = %s", ("async@example.com",))
        found = await cur.fetchone()

    assert inserted is not None
    assert found == ("Async Ada",)
