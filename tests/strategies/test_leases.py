"""Leases: what a dead run left is collected; a live run's databases are never touched."""

from __future__ import annotations

import time

from seamtest._provision import Provisioner
from seamtest._server import Endpoint
from tests.helpers import databases_like, like_prefix


def test_garbage_of_dead_runs_is_collected_and_live_runs_are_left_alone(
    pg_server: Endpoint, db_prefix: str
) -> None:
    dead = Provisioner(pg_server, prefix=db_prefix, run_id="00000dea")
    dead.create(f"{db_prefix}t_dead_left", None, test="dead::left")
    dead.create(f"{db_prefix}t_dead_kept", None, test="dead::kept")
    dead.keep(f"{db_prefix}t_dead_kept", test="dead::kept")
    dead.close()  # its lease goes with its connection: the run is over (or crashed)

    live = Provisioner(pg_server, prefix=db_prefix, run_id="0000a11e")
    collector = Provisioner(pg_server, prefix=db_prefix, run_id="00000e47")
    try:
        live.create(f"{db_prefix}t_live_busy", None, test="live::busy")
        assert collector.run_alive("0000a11e")
        assert not collector.run_alive("00000dea")

        dropped = collector.collect_garbage(kept_ttl_seconds=3600)
        assert dropped == [f"{db_prefix}t_dead_left"]
        left = databases_like(pg_server, like_prefix(db_prefix + "t_"))
        assert left == {f"{db_prefix}t_dead_kept", f"{db_prefix}t_live_busy"}

        time.sleep(0.01)
        dropped = collector.collect_garbage(kept_ttl_seconds=0)  # the kept one expired
        assert dropped == [f"{db_prefix}t_dead_kept"]
        assert databases_like(pg_server, like_prefix(db_prefix + "t_")) == {
            f"{db_prefix}t_live_busy"
        }
    finally:
        live.close()
        collector.close()
