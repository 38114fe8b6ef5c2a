"""UserRepository against a real PostgreSQL.

Isolation: ``transaction`` for the module. These are the bulk repository tests: they
write and read on one connection and never need a commit to be real, so a ROLLBACK
(~0.2 ms) cleans up after each instead of a database of their own (~20 ms a clone). The
two tests that depend on what only a fresh database gives (exact sequence values, a real
COMMIT) say ``isolation="database"`` themselves.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from shop import DuplicateEmail, UserRepository

from tests.common.builders import make_user

pytestmark = [pytest.mark.integration, pytest.mark.seamtest(isolation="transaction")]


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


# database: the id of the next user depends on the identity sequence, which ROLLBACK does
# not rewind. Only a fresh clone of the template starts it where the fixture left it.
@pytest.mark.seamtest(fixtures=["users"], isolation="database")
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


# database: the point is a real COMMIT. Under isolation="transaction" commit() is a
# savepoint, so this test would prove nothing about committed rows.
@pytest.mark.seamtest(isolation="database")
@pytest.mark.parametrize("attempt", [1, 2])
def test_committed_rows_stay_in_their_own_database(db: psycopg.Connection, attempt: int) -> None:
    # Both runs COMMIT the same email, in any order or on any xdist worker: with a shared
    # database left dirty, the second run would hit the unique constraint.
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


def test_rename_changes_only_that_user(db: psycopg.Connection) -> None:
    ada = make_user(db, name="Ada")
    grace = make_user(db, name="Grace")

    renamed = UserRepository(db).rename(ada.id, "Ada Lovelace")

    assert renamed is not None
    assert renamed.name == "Ada Lovelace"
    assert renamed.email == ada.email
    assert UserRepository(db).find_by_id(grace.id) == grace
    assert UserRepository(db).rename(424242, "Nobody") is None


def test_password_is_stored_hashed_and_checked(db: psycopg.Connection) -> None:
    ada = make_user(db, email="ada@example.com")
    users = UserRepository(db)

    users.set_password(ada.id, "correct horse")

    stored = db.execute("SELECT password_hash FROM users WHERE id = %s", (ada.id,)).fetchone()
    assert stored is not None
    assert stored[0].startswith("scrypt$")
    assert "correct horse" not in stored[0]
    assert users.authenticate("ada@example.com", "correct horse") == ada
    assert users.authenticate("ada@example.com", "wrong horse") is None
    assert users.authenticate("nobody@example.com", "correct horse") is None


def test_a_user_without_a_password_cannot_log_in(db: psycopg.Connection) -> None:
    make_user(db, email="ada@example.com")

    assert UserRepository(db).authenticate("ada@example.com", "") is None
