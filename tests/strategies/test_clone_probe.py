"""The clone method is measured once per template and remembered with it."""

from __future__ import annotations

from typing import Any

import psycopg

from seamtest._provision import Provisioner
from seamtest._server import Endpoint


class OneTable:
    def describe(self) -> str:
        return "one table"

    def fingerprint(self) -> str:
        return "one-table-v1"

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")


def test_the_fastest_clone_method_is_probed_and_used(pg_server: Endpoint, db_prefix: str) -> None:
    provisioner = Provisioner(pg_server, prefix=db_prefix, run_id="0badcafe")
    try:
        template = provisioner.ensure_template([OneTable()])
        info = provisioner.comment_of(template.name) or {}
        probed = info["probe_ms"]
        assert {"FILE_COPY", "WAL_LOG"} <= set(probed)  # PostgreSQL 15+ has both
        assert info["clone"] == min(probed, key=probed.get)
        # a new provisioner (a later run) reads the choice from the template's comment
        later = Provisioner(pg_server, prefix=db_prefix, run_id="0badcaff")
        try:
            assert later.clone_method(template.name) == info["clone"]
            clone = later.create(f"{db_prefix}t_probe_1", template.name, test="probe")
            with psycopg.connect(clone.conninfo) as conn:
                assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        finally:
            later.close()
    finally:
        provisioner.close()
