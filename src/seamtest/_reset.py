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
from collections.abc import Collection
from typing import Any

import psycopg
from psycopg import sql

from .errors import DatabaseError

SCHEMA = "seamtest_reset"

#: Tables, schemas and functions seamtest adds; excluded from digests and tracking.
_USER_RELATIONS = """
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'seamtest_reset')
      AND n.nspname NOT LIKE 'pg\\_%'
"""

INSTRUMENT = """
CREATE SCHEMA seamtest_reset;
-- No unique key: with one, two sessions writing the same table would queue on the key.
CREATE UNLOGGED TABLE seamtest_reset.dirty (rel regclass NOT NULL);
CREATE UNLOGGED TABLE seamtest_reset.ddl (tag text);
CREATE UNLOGGED TABLE seamtest_reset.sequences (seq regclass PRIMARY KEY, last_value bigint);
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
DO $$
DECLARE r record; has_rows boolean;
BEGIN
    FOR r IN SELECT c.oid, c.oid::regclass AS rel {user_relations}
    LOOP
        EXECUTE format('CREATE TRIGGER seamtest_dirty AFTER INSERT OR UPDATE OR DELETE OR '
                       'TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION seamtest_reset.mark()',
                       r.rel);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', r.rel) INTO has_rows;
        IF has_rows THEN
            EXECUTE format('CREATE UNLOGGED TABLE seamtest_reset.%I AS SELECT * FROM %s',
                           'snap_' || r.oid, r.rel);
        END IF;
    END LOOP;
END $$;
INSERT INTO seamtest_reset.sequences
    SELECT format('%I.%I', schemaname, sequencename)::regclass, last_value FROM pg_sequences
    WHERE schemaname <> 'seamtest_reset';
INSERT INTO seamtest_reset.large_objects SELECT oid FROM pg_largeobject_metadata;
CREATE FUNCTION seamtest_reset.reset() RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE r record; cols text; cleaned text[];
BEGIN
    IF EXISTS (SELECT 1 FROM seamtest_reset.ddl) THEN
        RETURN NULL;  -- the schema changed: the caller re-clones
    END IF;
    SELECT coalesce(array_agg(DISTINCT format('%s.%s', n.nspname, c.relname)), '{}')
    INTO cleaned
    FROM seamtest_reset.dirty d JOIN pg_class c ON c.oid = d.rel
    JOIN pg_namespace n ON n.oid = c.relnamespace;
    -- Skip foreign-key and user triggers while restoring, so order does not matter.
    SET LOCAL session_replication_role = replica;
    FOR r IN SELECT DISTINCT rel FROM seamtest_reset.dirty LOOP
        EXECUTE format('DELETE FROM %s', r.rel);
        IF to_regclass(format('seamtest_reset.%I', 'snap_' || r.rel::oid)) IS NOT NULL THEN
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
            FROM pg_attribute
            WHERE attrelid = r.rel AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
            EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM '
                           'seamtest_reset.%I', r.rel, cols, cols, 'snap_' || r.rel::oid);
        END IF;
    END LOOP;
    DELETE FROM seamtest_reset.dirty;
    FOR r IN
        SELECT s.seq, s.last_value AS saved, p.start_value
        FROM seamtest_reset.sequences s
        JOIN pg_sequences p ON format('%I.%I', p.schemaname, p.sequencename)::regclass = s.seq
        WHERE p.last_value IS DISTINCT FROM s.last_value
    LOOP
        PERFORM setval(r.seq, coalesce(r.saved, r.start_value), r.saved IS NOT NULL);
    END LOOP;
    PERFORM lo_unlink(m.oid) FROM pg_largeobject_metadata m
    WHERE m.oid NOT IN (SELECT lo FROM seamtest_reset.large_objects);
    RETURN cleaned;
END $$;
CREATE EVENT TRIGGER seamtest_reset_ddl ON ddl_command_end
    EXECUTE FUNCTION seamtest_reset.ddl_seen();
CREATE EVENT TRIGGER seamtest_reset_drop ON sql_drop
    EXECUTE FUNCTION seamtest_reset.drop_seen();
""".replace("{user_relations}", _USER_RELATIONS)


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


def reset(conn: psycopg.Connection[Any]) -> list[str] | None:
    """Clean what the last test dirtied; return the tables cleaned (``schema.table``), or
    None if the schema changed (then the database must be re-cloned, not repaired)."""
    with conn.transaction():
        row = conn.execute("SELECT seamtest_reset.reset()").fetchone()
    return None if row is None or row[0] is None else list(row[0])


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
    'sequences', (SELECT coalesce(json_object_agg(format('%I.%I', schemaname, sequencename),
                                                  last_value), '{}')
                  FROM pg_sequences WHERE schemaname <> 'seamtest_reset'),
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
DIGEST = _DIGEST.replace("{schema}", SCHEMA_CLAUSE)
#: Where event triggers already vouch for the schema (reset, recycling), skip its md5.
DIGEST_WITHOUT_SCHEMA = _DIGEST.replace("{schema}", "    'schema', NULL,\n")
TABLES = "SELECT n.nspname, c.relname {user_relations} ORDER BY 1, 2".replace(
    "{user_relations}", _USER_RELATIONS
)


def _row_counts(
    conn: psycopg.Connection[Any], only: Collection[str] | None = None
) -> dict[str, int]:
    if only is None:
        tables = [(str(schema), str(table)) for schema, table in conn.execute(TABLES.encode())]
    else:  # names the reset returned: no catalog scan
        tables = [tuple(name.split(".", 1)) for name in sorted(only)]  # type: ignore[misc]
    if not tables:
        return {}
    # One round trip for every table's count, names quoted by psycopg.
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, count(*) FROM {}").format(
            sql.Literal(f"{schema}.{table}"), sql.Identifier(schema, table)
        )
        for schema, table in tables
    )
    return {str(name): int(count) for name, count in conn.execute(query).fetchall()}


def digest(
    conn: psycopg.Connection[Any],
    *,
    tables: Collection[str] | None = None,
    data: bool = True,
    schema: bool = True,
) -> dict[str, Any]:
    """A snapshot of what a test could leave behind in a database.

    Row counts cost a ``count(*)`` per table: ``tables`` limits them to those (the ones a
    reset cleaned: the triggers prove the others untouched), ``data=False`` skips them.
    ``schema=False`` skips the schema's md5 where event triggers already watch for DDL.
    """
    query = DIGEST if schema else DIGEST_WITHOUT_SCHEMA
    with conn.transaction():
        row = conn.execute(query.encode()).fetchone()
        assert row is not None
        value = row[0] if isinstance(row[0], dict) else json.loads(row[0])
        value["tables"] = _row_counts(conn, tables) if data else {}
        value["partial"] = tables is not None or not data
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
