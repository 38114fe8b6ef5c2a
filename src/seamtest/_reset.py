"""SQL for the reset strategy and the leak detector.

Reset returns a shared database to its template state by cleaning only what a test
dirtied. Statement-level triggers on every table note which tables were written (one
``INSERT ... ON CONFLICT DO NOTHING`` per statement); tables that held rows in the
template get a snapshot to restore from; sequences are compared with their starting
values; event triggers note any DDL, after which the database is re-cloned instead of
repaired, because a schema change cannot be proven undone. The reset itself is one
server-side function call, so it costs one round trip.

The leak detector takes a cheap digest of a database's state (row counts per table,
sequence values, a schema fingerprint, roles, large objects) and names what differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .errors import DatabaseError

SCHEMA = "seamtest_reset"

#: The user's tables (relkind 'r'), also partitioned ones ('p', which hold no rows of
#: their own), or sequences ('S'): not the catalogs, not temporary objects, not what
#: seamtest adds.
_USER_RELKIND = """
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ({relkinds})
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'seamtest_reset')
      AND n.nspname NOT LIKE 'pg\\_%'
"""
_USER_RELATIONS = _USER_RELKIND.replace("{relkinds}", "'r'")
_USER_TABLES = _USER_RELKIND.replace("{relkinds}", "'r', 'p'")
_USER_SEQUENCES = _USER_RELKIND.replace("{relkinds}", "'S'")

SCHEMA_CLAUSE = """    'schema', (SELECT md5(coalesce(string_agg(
                   format('%s.%s:%s', c.oid::regclass, a.attname, a.atttypid::regtype),
                   ',' ORDER BY c.oid::regclass::text, a.attnum), ''))
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'seamtest_reset')
                 AND n.nspname NOT LIKE 'pg\\_%'),
"""
_DIGEST = """
SELECT json_build_object(
    -- pg_sequence_last_value, not the pg_sequences view: the same values at half the cost.
    'sequences', (SELECT coalesce(json_object_agg(format('%I.%I', n.nspname, c.relname),
                                                  pg_sequence_last_value(c.oid)), '{}')
                  {user_sequences}),
{schema}    'roles', (SELECT json_agg(rolname ORDER BY rolname) FROM pg_roles),
    'large_objects', (SELECT count(*) FROM pg_largeobject_metadata),
    -- ALTER DATABASE ... SET / OWNER / CONNECTION LIMIT and GRANTs on the database fire no
    -- event trigger (databases are shared objects), so compare them directly.
    'database', (SELECT json_build_object(
                     'settings', (SELECT setconfig FROM pg_db_role_setting
                                  WHERE setdatabase = d.oid AND setrole = 0),
                     'owner', d.datdba::regrole::text,
                     'acl', d.datacl::text,
                     'connlimit', d.datconnlimit)
                 FROM pg_database d WHERE d.datname = current_database())
)
"""
_DIGEST = _DIGEST.replace("{user_sequences}", _USER_SEQUENCES.strip())
DIGEST = _DIGEST.replace("{schema}", SCHEMA_CLAUSE)
#: Where event triggers already vouch for the schema (reset, recycling), skip its md5.
DIGEST_WITHOUT_SCHEMA = _DIGEST.replace("{schema}", "    'schema', NULL,\n")
INSTRUMENT = """
CREATE SCHEMA seamtest_reset;
-- No unique key: with one, two sessions writing the same table would queue on the key.
CREATE UNLOGGED TABLE seamtest_reset.dirty (rel regclass NOT NULL);
CREATE UNLOGGED TABLE seamtest_reset.ddl (tag text);
-- Every user table: its family (itself and its inheritance children and partitions that
-- hold rows: a statement on a parent fires the parent's triggers only, and reaches them
-- all); its name as digests give it; where the copy of its template rows is
-- and its columns (NULL when it had none); its level (0: no other table references it,
-- else one more than the highest level among the tables referencing it) for deleting
-- from referencing tables first; and whether it is plain: a reset may delete and restore
-- its rows with triggers on. It is not when it has triggers or rules of its own, is on a
-- foreign-key cycle (itself included), or is referenced by a table with template rows
-- (deleting its rows would trip or cascade into those).
CREATE UNLOGGED TABLE seamtest_reset.tables (
    rel regclass PRIMARY KEY, family regclass[] NOT NULL DEFAULT '{}', name text NOT NULL,
    snap name, cols text,
    level int NOT NULL DEFAULT 0, plain boolean NOT NULL DEFAULT true);
CREATE UNLOGGED TABLE seamtest_reset.sequences (
    seq regclass PRIMARY KEY, last_value bigint, start_value bigint NOT NULL);
CREATE UNLOGGED TABLE seamtest_reset.large_objects (lo oid PRIMARY KEY);
CREATE FUNCTION seamtest_reset.mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seamtest_reset.dirty SELECT TG_RELID
    WHERE NOT EXISTS (SELECT FROM seamtest_reset.dirty WHERE rel = TG_RELID);
    RETURN NULL;
END $$;
-- DDL on temporary objects lives and dies with its session (DISCARD ALL drops it): only
-- DDL on lasting objects means the database is no longer a clone of its template.
CREATE FUNCTION seamtest_reset.ddl_seen() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seamtest_reset.ddl SELECT tg_tag
    WHERE EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c
                  WHERE c.schema_name IS NULL OR c.schema_name NOT LIKE 'pg\\_temp%');
END $$;
CREATE FUNCTION seamtest_reset.drop_seen() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seamtest_reset.ddl SELECT tg_tag
    WHERE EXISTS (SELECT FROM pg_event_trigger_dropped_objects() d WHERE NOT d.is_temporary);
END $$;
-- Every statement on a user table says ONLY: a table's inheritance children are tables of
-- their own here, tracked, copied and cleaned on their own.
DO $$
DECLARE r record; has_rows boolean;
BEGIN
    FOR r IN SELECT c.oid, c.oid::regclass AS rel, format('%s.%s', n.nspname, c.relname) AS name
             {user_tables}
    LOOP
        EXECUTE format('CREATE TRIGGER seamtest_dirty AFTER INSERT OR UPDATE OR DELETE OR '
                       'TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION seamtest_reset.mark()',
                       r.rel);
        INSERT INTO seamtest_reset.tables (rel, name) VALUES (r.oid, r.name);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', r.rel) INTO has_rows;
        IF has_rows THEN
            EXECUTE format('CREATE UNLOGGED TABLE seamtest_reset.%I AS SELECT * FROM ONLY %s',
                           'snap_' || r.oid, r.rel);
            UPDATE seamtest_reset.tables SET snap = 'snap_' || r.oid, cols = (
                SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
                WHERE attrelid = r.oid AND attnum > 0 AND NOT attisdropped AND attgenerated = '')
            WHERE rel = r.oid;
        END IF;
    END LOOP;
END $$;
UPDATE seamtest_reset.tables t SET family = (
    WITH RECURSIVE below (rel) AS (
        SELECT t.rel::oid
        UNION SELECT i.inhrelid FROM pg_inherits i JOIN below b ON i.inhparent = b.rel
    )
    SELECT coalesce(array_agg(b.rel::regclass), '{}')
    FROM below b JOIN pg_class c ON c.oid = b.rel WHERE c.relkind = 'r'
);
WITH RECURSIVE fk AS (
    SELECT DISTINCT conrelid AS child, confrelid AS parent FROM pg_constraint WHERE contype = 'f'
), walk (top, rel, depth, path, cycle) AS (  -- down from each table to those referencing it
    SELECT rel::oid, rel::oid, 0, ARRAY[rel::oid], false FROM seamtest_reset.tables
    UNION ALL
    SELECT w.top, fk.child, w.depth + 1, w.path || fk.child, fk.child = ANY (w.path)
    FROM walk w JOIN fk ON fk.parent = w.rel WHERE NOT w.cycle
), levels AS (
    SELECT top, max(depth) AS level, bool_or(cycle) AS cycle FROM walk GROUP BY top
)
UPDATE seamtest_reset.tables t SET level = l.level, plain = NOT l.cycle
    AND NOT EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = t.rel AND NOT g.tgisinternal
                    AND g.tgname <> 'seamtest_dirty')
    AND NOT EXISTS (SELECT FROM pg_rewrite w WHERE w.ev_class = t.rel)
    AND NOT EXISTS (SELECT FROM fk JOIN seamtest_reset.tables c ON c.rel = fk.child
                    WHERE fk.parent = t.rel AND c.snap IS NOT NULL)
FROM levels l WHERE l.top = t.rel::oid;
INSERT INTO seamtest_reset.sequences
    SELECT c.oid, pg_sequence_last_value(c.oid),
           (SELECT seqstart FROM pg_sequence WHERE seqrelid = c.oid)
    {user_sequences};
INSERT INTO seamtest_reset.large_objects SELECT oid FROM pg_largeobject_metadata;
-- Clean what the last test dirtied and take the digest that proves it (``digest(conn)``,
-- counting only the cleaned tables, without the schema) in one call, so one round trip:
-- the pool's background thread pays for each round trip with a wait for the interpreter
-- while pytest runs a test. With alone, it first checks that no other session is
-- connected (the test's backends leave moments after their clients close) and if one is,
-- says how many and touches nothing.
CREATE FUNCTION seamtest_reset.reset(alone boolean) RETURNS json LANGUAGE plpgsql AS $$
DECLARE r record; n bigint; counts jsonb := '{}'; todo regclass[];
BEGIN
    IF alone THEN  -- pg_stat_activity would say the same at several times the cost
        SELECT pg_stat_get_db_numbackends(oid) - 1 INTO n
        FROM pg_database WHERE datname = current_database();
        IF n > 0 THEN
            RETURN json_build_object('others', n);
        END IF;
    END IF;
    IF EXISTS (SELECT FROM seamtest_reset.ddl) THEN
        RETURN json_build_object('cleaned', NULL);  -- the schema changed: re-clone
    END IF;
    SELECT coalesce(array_agg(DISTINCT member), '{}') INTO todo
    FROM seamtest_reset.dirty JOIN seamtest_reset.tables USING (rel), unnest(family) member;
    IF EXISTS (SELECT FROM seamtest_reset.tables WHERE rel = ANY (todo) AND NOT plain) THEN
        -- Foreign keys, triggers and rules off, so that order does not matter. Costly: a
        -- change of this setting makes the session re-plan every statement it cached.
        SET LOCAL session_replication_role = replica;
    END IF;
    FOR r IN SELECT rel FROM seamtest_reset.tables WHERE rel = ANY (todo) ORDER BY level LOOP
        EXECUTE format('DELETE FROM ONLY %s', r.rel);
    END LOOP;
    FOR r IN SELECT rel, name, snap, cols FROM seamtest_reset.tables
             WHERE rel = ANY (todo) ORDER BY level DESC LOOP
        IF r.snap IS NOT NULL THEN
            EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM '
                           'seamtest_reset.%I', r.rel, r.cols, r.cols, r.snap);
        END IF;
        EXECUTE format('SELECT count(*) FROM ONLY %s', r.rel) INTO n;
        counts := counts || jsonb_build_object(r.name, n);
    END LOOP;
    DELETE FROM seamtest_reset.dirty;  -- last: the reset's own statements marked the tables
    PERFORM setval(s.seq, coalesce(s.last_value, s.start_value), s.last_value IS NOT NULL)
    FROM seamtest_reset.sequences s
    WHERE pg_sequence_last_value(s.seq) IS DISTINCT FROM s.last_value;
    PERFORM lo_unlink(m.oid) FROM pg_largeobject_metadata m
    WHERE m.oid NOT IN (SELECT lo FROM seamtest_reset.large_objects);
    RETURN json_build_object(
        'cleaned', (SELECT coalesce(json_agg(k ORDER BY k), '[]') FROM jsonb_object_keys(counts) k),
        'digest', ({digest})::jsonb || jsonb_build_object('tables', counts));
END $$;
CREATE EVENT TRIGGER seamtest_reset_ddl ON ddl_command_end
    EXECUTE FUNCTION seamtest_reset.ddl_seen();
CREATE EVENT TRIGGER seamtest_reset_drop ON sql_drop
    EXECUTE FUNCTION seamtest_reset.drop_seen();
"""
INSTRUMENT = (
    INSTRUMENT.replace("{user_tables}", _USER_TABLES)
    .replace("{user_sequences}", _USER_SEQUENCES.strip())
    .replace("{digest}", DIGEST_WITHOUT_SCHEMA.strip())
)


def instrument(conn: psycopg.Connection[Any]) -> None:
    """Add the reset machinery to a fresh clone (needs a superuser role)."""
    try:
        with conn.transaction():
            conn.execute(INSTRUMENT.encode())
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(
            "isolation='reset' needs a superuser role on the server (event triggers and "
            f"session_replication_role): {exc.diag.message_primary}. Use "
            "isolation='database' or 'transaction' with this server."
        ) from exc


@dataclass
class Reset:
    """What ``seamtest_reset.reset`` answered."""

    #: Other sessions still connected (with ``alone``): nothing was done.
    others: int = 0
    #: The tables cleaned; None if the schema changed (re-clone, do not repair).
    cleaned: list[str] | None = None
    #: The digest after the reset: ``digest(conn)`` counting only the cleaned tables, and
    #: without the schema's md5 (the event triggers watch for DDL).
    digest: dict[str, Any] | None = None

    @classmethod
    def parse(cls, value: dict[str, Any]) -> Reset:
        if "others" in value:
            return cls(others=int(value["others"]))
        state = value.get("digest")
        if state is not None:
            state["partial"] = True
        return cls(cleaned=value["cleaned"], digest=state)


def reset_query(*, alone: bool = False) -> str:
    """The reset as a query. ``alone`` is a literal in it, so that the query needs no
    parameters and can follow other statements in one round trip (``_connections.forget``)."""
    return f"SELECT seamtest_reset.reset({'true' if alone else 'false'})"


def reset(conn: psycopg.Connection[Any], *, alone: bool = False) -> Reset:
    """Clean what the last test dirtied and prove it, in one round trip (``conn`` in
    autocommit: the call is its own transaction)."""
    row = conn.execute(reset_query(alone=alone).encode()).fetchone()
    assert row is not None
    return Reset.parse(row[0])


TABLES = "SELECT n.nspname, c.relname {user_relations} ORDER BY 1, 2".replace(
    "{user_relations}", _USER_RELATIONS
)


def _row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    tables = [(str(schema), str(table)) for schema, table in conn.execute(TABLES.encode())]
    if not tables:
        return {}
    # One round trip for every table's count, names quoted by psycopg.
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, count(*) FROM ONLY {}").format(
            sql.Literal(f"{schema}.{table}"), sql.Identifier(schema, table)
        )
        for schema, table in tables
    )
    return {str(name): int(count) for name, count in conn.execute(query).fetchall()}


def digest(conn: psycopg.Connection[Any], *, data: bool = True) -> dict[str, Any]:
    """A snapshot of what a test could leave behind in a database.

    Row counts cost a ``count(*)`` per table; ``data=False`` skips them. (After a reset,
    ``seamtest_reset.reset`` takes the same digest server-side, counting only the tables
    it cleaned: the triggers prove the others untouched.)
    """
    with conn.transaction():
        row = conn.execute(DIGEST.encode()).fetchone()
        assert row is not None
        value = row[0] if isinstance(row[0], dict) else json.loads(row[0])
        value["tables"] = _row_counts(conn) if data else {}
        value["partial"] = not data
    return value


def differences(
    before: dict[str, Any], after: dict[str, Any], *, data: bool = True, roles: bool = True
) -> list[str]:
    """What changed between two digests, in words.

    ``data=False`` compares the schema (and roles) only. ``roles=False`` skips roles,
    which are global to the server: under xdist another worker's test may have changed
    them, so they cannot be pinned on this one.
    """
    found = []
    if after["schema"] is not None and before["schema"] != after["schema"]:
        found.append("the schema changed (tables or columns added, dropped or altered)")
    if roles and before["roles"] != after["roles"]:
        added = sorted(set(after["roles"]) - set(before["roles"]))
        removed = sorted(set(before["roles"]) - set(after["roles"]))
        found.append(f"roles changed (added {added}, removed {removed})")
    if not data:
        return found
    names = set(after["tables"])
    if not after.get("partial"):
        names |= set(before["tables"])
    for table in sorted(names):
        was, now = before["tables"].get(table), after["tables"].get(table)
        if was != now:
            found.append(f"table {table} has {now} rows (expected {was})")
    for seq in sorted(set(before["sequences"]) | set(after["sequences"])):
        was, now = before["sequences"].get(seq), after["sequences"].get(seq)
        if was != now:
            found.append(f"sequence {seq} is at {now} (expected {was})")
    if before.get("database") != after.get("database"):
        found.append(
            f"database-level settings changed (ALTER DATABASE: {before.get('database')} -> "
            f"{after.get('database')})"
        )
    if before["large_objects"] != after["large_objects"]:
        found.append(f"{after['large_objects']} large objects (expected {before['large_objects']})")
    return found


def vacuum(conn: psycopg.Connection[Any]) -> None:
    """Reclaim the dead rows that DELETE-based resets leave (autovacuum is off)."""
    previous = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(sql.SQL("VACUUM"))
    finally:
        conn.autocommit = previous
