"""The reset machinery on schemas of every shape: what it may clean with triggers on, and
that whatever a test did, one call puts the database back exactly as its template was.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from seamtest import _reset
from seamtest._server import Endpoint

SCHEMA = """
-- Seeded parent, unseeded child: both plain (deleting the child's rows first is enough).
CREATE TABLE kinds (code text PRIMARY KEY);
INSERT INTO kinds VALUES ('a'), ('b');
CREATE TABLE items (id serial PRIMARY KEY, kind text NOT NULL REFERENCES kinds (code));
-- A seeded child that cascades: deleting its parent's rows would take the child's with it.
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers VALUES (1, 'ada'), (2, 'bob');
CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     customer int NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
                     total numeric NOT NULL,
                     doubled numeric GENERATED ALWAYS AS (total * 2) STORED);
INSERT INTO orders (customer, total) VALUES (1, 10), (2, 20);
-- The same without the cascade: deleting the parent's rows would fail.
CREATE TABLE shops (id int PRIMARY KEY);
INSERT INTO shops VALUES (1);
CREATE TABLE staff (name text PRIMARY KEY, shop int REFERENCES shops (id));
INSERT INTO staff VALUES ('eve', 1);
-- A tree: a foreign key onto itself.
CREATE TABLE nodes (id int PRIMARY KEY, parent int REFERENCES nodes (id));
INSERT INTO nodes VALUES (1, NULL), (2, 1);
-- A trigger of the user's own, which must not fire while seamtest restores rows.
CREATE TABLE audit (entry text NOT NULL);
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
INSERT INTO notes (body) VALUES ('seeded');
CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES ('deleted ' || OLD.id); RETURN OLD; END $$;
CREATE TRIGGER notes_audit AFTER DELETE ON notes FOR EACH ROW EXECUTE FUNCTION log_delete();
CREATE SEQUENCE tickets;
-- Inheritance: a DELETE on the parent would reach the child's rows too.
CREATE TABLE animals (name text);
CREATE TABLE dogs () INHERITS (animals);
INSERT INTO dogs VALUES ('rex');
-- Partitions: a statement on the parent fires the parent's triggers, not the partitions'.
CREATE TABLE events (at int NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE events_early PARTITION OF events FOR VALUES FROM (0) TO (100);
CREATE TABLE events_late PARTITION OF events FOR VALUES FROM (100) TO (200);
INSERT INTO events VALUES (1, 'seeded');
"""

#: What each test below does to the database, in ways a test might.
DIRTY = {
    "plain tables only": [
        "INSERT INTO items (kind) VALUES ('a'), ('b')",
        "INSERT INTO kinds VALUES ('c')",
        "INSERT INTO items (kind) VALUES ('c')",
        "DELETE FROM items WHERE kind = 'a'",
        "INSERT INTO audit VALUES ('by hand')",
    ],
    "parents written, their seeded children not": [
        "INSERT INTO customers VALUES (3, 'cy')",
        "INSERT INTO shops VALUES (2)",
    ],
    "a seeded parent's rows deleted, cascading": [
        "DELETE FROM customers WHERE id = 1",
        "INSERT INTO customers VALUES (3, 'cy')",
        "INSERT INTO orders (customer, total) VALUES (3, 30)",
        "UPDATE orders SET total = 99",
    ],
    "a parent table of another by inheritance": [
        "INSERT INTO animals VALUES ('cat')",
        "UPDATE animals SET name = 'renamed'",  # the child's row too
    ],
    "writes through a partitioned table": [
        "INSERT INTO events VALUES (150, 'new')",
        "UPDATE events SET what = 'changed'",
    ],
    "the tree and the trigger": [
        "INSERT INTO nodes VALUES (3, 2), (4, 3)",
        "DELETE FROM nodes WHERE id = 2 AND false",
        "UPDATE nodes SET parent = 4 WHERE id = 1",
        "DELETE FROM notes",
        "INSERT INTO notes (body) VALUES ('new')",
    ],
    "everything at once, and sequences": [
        "INSERT INTO items (kind) VALUES ('b')",
        "TRUNCATE customers CASCADE",
        "INSERT INTO nodes VALUES (5, NULL)",
        "DELETE FROM notes",
        "SELECT nextval('tickets'), nextval('tickets')",
        "SELECT lo_create(0)",
    ],
}


def contents(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every user table, in a stable order."""
    tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {
        table: sorted(
            conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))), key=repr
        )
        for (table,) in tables.fetchall()
    }


@pytest.fixture
def conn(pg_server: Endpoint, db_prefix: str) -> Iterator[psycopg.Connection[Any]]:
    """A database with SCHEMA and the reset machinery, in autocommit."""
    name = f"{db_prefix}reset"
    with pg_server.connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with pg_server.connect(name) as conn:
        conn.execute(SCHEMA.encode())
        conn.autocommit = False
        _reset.instrument(conn)
        conn.autocommit = True
        yield conn


def test_tables_are_classified_by_what_deleting_their_rows_would_do(
    conn: psycopg.Connection[Any],
) -> None:
    rows = conn.execute(
        "SELECT name, level, plain, snap IS NOT NULL FROM seamtest_reset.tables ORDER BY name"
    ).fetchall()
    assert rows == [
        ("public.animals", 0, True, False),  # the rows seen through it are the child's
        ("public.audit", 0, True, False),
        ("public.customers", 1, False, True),  # orders has template rows referencing it
        ("public.dogs", 0, True, True),
        ("public.events", 0, True, False),  # partitioned: its rows are its partitions'
        ("public.events_early", 0, True, True),
        ("public.events_late", 0, True, False),
        ("public.items", 0, True, False),
        ("public.kinds", 1, True, True),  # items references it, but items starts empty
        ("public.nodes", 1, False, True),  # a cycle onto itself
        ("public.notes", 0, False, True),  # a trigger of the user's
        ("public.orders", 0, True, True),
        ("public.shops", 1, False, True),  # staff has template rows referencing it
        ("public.staff", 0, True, True),
    ]
    families = conn.execute(
        "SELECT name, ARRAY(SELECT unnest(family)::text ORDER BY 1) FROM seamtest_reset.tables "
        "WHERE name IN ('public.animals', 'public.events', 'public.dogs') ORDER BY name"
    ).fetchall()
    assert families == [
        ("public.animals", ["animals", "dogs"]),  # a write to the parent reaches the child
        ("public.dogs", ["dogs"]),
        ("public.events", ["events_early", "events_late"]),  # a partitioned table: its rows
    ]


@pytest.mark.parametrize("statements", DIRTY.values(), ids=DIRTY.keys())
def test_one_call_restores_the_template_state(
    conn: psycopg.Connection[Any], statements: list[str]
) -> None:
    fresh, fresh_digest = contents(conn), _reset.digest(conn)
    for _ in range(2):  # and again, on the database the first reset cleaned
        for statement in statements:
            conn.execute(statement.encode())
        assert contents(conn) != fresh
        result = _reset.reset(conn)
        assert result.cleaned is not None
        assert result.digest is not None
        assert contents(conn) == fresh
        assert _reset.differences(fresh_digest, _reset.digest(conn)) == []
        assert _reset.differences(fresh_digest, result.digest) == []  # its own proof agrees
        assert conn.execute("SELECT count(*) FROM seamtest_reset.dirty").fetchone() == (0,)


def test_the_proof_names_the_cleaned_tables_only(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO items (kind) VALUES ('a')")
    conn.execute("UPDATE orders SET total = 1")
    result = _reset.reset(conn)
    assert result.cleaned == ["public.items", "public.orders"]
    assert result.digest is not None
    assert result.digest["tables"] == {"public.items": 0, "public.orders": 2}


def test_a_schema_change_is_reported_not_repaired(conn: psycopg.Connection[Any]) -> None:
    conn.execute("ALTER TABLE items ADD COLUMN note text")
    conn.execute("INSERT INTO items (kind) VALUES ('a')")
    result = _reset.reset(conn)
    assert result.cleaned is None
    assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)  # left as it was


def test_alone_touches_nothing_while_another_session_is_connected(
    conn: psycopg.Connection[Any], pg_server: Endpoint
) -> None:
    conn.execute("INSERT INTO items (kind) VALUES ('a')")
    name = conn.info.dbname
    with pg_server.connect(name):
        assert _reset.reset(conn, alone=True).others == 1
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
    for _ in range(100):  # the other backend leaves moments after its client closed
        result = _reset.reset(conn, alone=True)
        if not result.others:
            break
    assert result.cleaned == ["public.items"]
    assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
