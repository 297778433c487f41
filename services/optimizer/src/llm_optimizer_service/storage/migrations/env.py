"""Alembic environment: the models' metadata, batch mode for SQLite, our connection if given."""

from __future__ import annotations

from alembic import context
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.storage.models import Base
from sqlalchemy import Connection

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
    else:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "", pool_size=1)
        with engine.connect() as connection:
            _configure(connection)
        engine.dispose()
