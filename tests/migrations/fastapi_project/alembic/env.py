"""Alembic's generated sync env.py, plus the cookbook's shared connection."""

import os
from pathlib import Path

from alembic import context
from app.models import Base
from sqlalchemy import engine_from_config, pool

config = context.config
target_metadata = Base.metadata

# Every run of env.py leaves a line: the tests count template builds with it.
with (Path(__file__).parent.parent / "env_runs.log").open("a") as log:
    log.write(f"{os.getpid()}\n")


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        ).connect()
    context.configure(connection=connectable, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
