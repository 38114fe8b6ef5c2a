"""Users cached in a real Redis, read through to a real PostgreSQL (shop/cache.py).

Isolation: ``unique``. Every test here commits (the cache must only ever hold committed
rows) and looks up nothing but its own rows, by id. So the whole run, every xdist worker
included, shares one database and nobody cleans it: the tests stay apart by creating
users with values from seamtest's ``unique`` fixture, and never count or list all rows.
That is the cheapest strategy there is, and the one a suite against a long-lived staging
database has to follow anyway.

Redis: each test gets its own flushed logical database (``redis="flush"``, the default);
``TestUnderAKeyPrefix`` shows ``redis="prefix"``, where tests share database 0 and the
cache's own key prefix keeps them apart.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from shop import User
from shop.cache import DEFAULT_TTL_SECONDS, UserCache

from seamtest import Unique
from tests.common.builders import make_user

pytestmark = [pytest.mark.integration, pytest.mark.seamtest(isolation="unique")]


def committed_user(db: psycopg.Connection, unique: Unique) -> User:
    user = make_user(db, name=unique.name("Ada"), email=unique.email())
    db.commit()
    return user


def test_a_miss_reads_postgresql_and_fills_the_cache(
    db: psycopg.Connection, redis: Any, unique: Unique
) -> None:
    user = committed_user(db, unique)
    cache = UserCache(redis, db)
    assert redis.exists(cache.key(user.id)) == 0

    assert cache.get(user.id) == user

    assert redis.exists(cache.key(user.id)) == 1
    assert 0 < redis.ttl(cache.key(user.id)) <= DEFAULT_TTL_SECONDS


def test_a_hit_is_served_by_redis_alone(db: psycopg.Connection, redis: Any, unique: Unique) -> None:
    user = committed_user(db, unique)
    cache = UserCache(redis, db)
    cache.get(user.id)

    # Change the row behind the cache's back: a cached read must not see it.
    db.execute("UPDATE users SET name = 'Changed Behind' WHERE id = %s", (user.id,))
    db.commit()

    assert cache.get(user.id) == user
    cache.invalidate(user.id)
    refreshed = cache.get(user.id)
    assert refreshed is not None
    assert refreshed.name == "Changed Behind"


def test_rename_commits_then_invalidates(
    db: psycopg.Connection, redis: Any, unique: Unique, db_url: str
) -> None:
    user = committed_user(db, unique)
    cache = UserCache(redis, db)
    cache.get(user.id)
    new_name = unique.name("Countess")

    cache.rename(user.id, new_name)

    assert redis.exists(cache.key(user.id)) == 0
    with psycopg.connect(db_url) as other:  # committed: another connection sees it
        assert other.execute("SELECT name FROM users WHERE id = %s", (user.id,)).fetchone() == (
            new_name,
        )
    cached = cache.get(user.id)
    assert cached is not None
    assert cached.name == new_name


def test_a_missing_user_is_not_cached(db: psycopg.Connection, redis: Any, unique: Unique) -> None:
    cache = UserCache(redis, db)

    assert cache.get(unique.integer()) is None
    assert redis.dbsize() == 0


def test_cached_user_round_trips_exactly(
    db: psycopg.Connection, redis: Any, unique: Unique
) -> None:
    user = committed_user(db, unique)
    cache = UserCache(redis, db)
    cache.get(user.id)

    cached = cache.get(user.id)  # from JSON in Redis this time

    assert cached == user
    assert cached is not None
    assert cached.created_at.tzinfo is not None  # timestamptz keeps its zone through JSON


@pytest.mark.seamtest(redis="prefix")
class TestUnderAKeyPrefix:
    """redis="prefix": tests share Redis database 0; seamtest deletes each test's prefix."""

    def test_keys_live_under_the_prefix(
        self, db: psycopg.Connection, redis: Any, redis_prefix: str, unique: Unique
    ) -> None:
        user = committed_user(db, unique)
        cache = UserCache(redis, db, prefix=redis_prefix)

        cache.get(user.id)

        assert redis_prefix
        assert [key.decode() for key in redis.keys(f"{redis_prefix}*")] == [
            f"{redis_prefix}shop:user:{user.id}"
        ]

    def test_a_prefixed_cache_does_not_see_an_unprefixed_one(
        self, db: psycopg.Connection, redis: Any, redis_prefix: str, unique: Unique
    ) -> None:
        user = committed_user(db, unique)
        UserCache(redis, db, prefix=redis_prefix).get(user.id)

        assert redis.exists(UserCache(redis, db).key(user.id)) == 0
