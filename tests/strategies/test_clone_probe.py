"""The clone method is measured once per template and remembered with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from seamtest._probes import ProbeCache
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


def test_a_probe_is_remembered_for_the_same_cluster_version_and_template(
    pg_server: Endpoint, db_prefix: str, tmp_path: Path
) -> None:
    cache = ProbeCache(tmp_path / "clone-probes.json")
    provisioner = Provisioner(pg_server, prefix=db_prefix, run_id="0badcafe")
    provisioner.probe_cache = cache
    try:
        template = provisioner.ensure_template([OneTable()])
        first = provisioner.comment_of(template.name) or {}
        assert "cached" not in first
        [(key, entry)] = json.loads(cache.path.read_text()).items()
        assert key.endswith(f":{template.name}")
        assert entry == {"clone": first["clone"], "probe_ms": first["probe_ms"]}

        # The next run's server is a copy of the same cluster: its build reads the cache.
        # (An entry saying WAL_LOG, the usual loser, shows that the cache was what decided.)
        cache.put(key, {**entry, "clone": "WAL_LOG"})
        provisioner.drop_now(template.name)
        rebuilt = provisioner.ensure_template([OneTable()])
        assert rebuilt.built
        again = provisioner.comment_of(rebuilt.name) or {}
        assert again["cached"] is True
        assert again["clone"] == provisioner.clone_method(rebuilt.name) == "WAL_LOG"

    finally:
        provisioner.close()
    # --seamtest-rebuild (in a later run) measures afresh, and the cache learns the answer.
    later = Provisioner(pg_server, prefix=db_prefix, run_id="0badcaff")
    later.probe_cache = cache
    try:
        fresh = later.ensure_template([OneTable()], rebuild=True)
        measured = later.comment_of(fresh.name) or {}
        assert "cached" not in measured
        assert json.loads(cache.path.read_text())[key]["clone"] == measured["clone"]
    finally:
        later.close()


def test_a_damaged_probe_cache_costs_a_probe_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "clone-probes.json"
    path.write_text("{not json")
    cache = ProbeCache(path)
    assert cache.get("any") is None
    cache.put("k", {"clone": "FILE_COPY"})
    assert cache.get("k") == {"clone": "FILE_COPY"}
    assert [p.name for p in tmp_path.iterdir()] == ["clone-probes.json"]  # no temp files left
