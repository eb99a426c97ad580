"""The imrt database's SQLAlchemy engines, all built from an Airflow connection the same way
(:func:`connection_engine`): for a task (:func:`task_engine`), for Airflow's server components
(:func:`server_engine`: short timeouts, so a slow database never stalls them) and for the migration command."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import sqlalchemy as sa

from .settings import read_variables, variable

CONNECT_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 5000


def connection_engine(conn_id: str, **engine_kwargs) -> sa.Engine:
    """The engine of an Airflow connection, resolved by Airflow (environment, secrets backend), with pre-ping."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id).get_sqlalchemy_engine(
        engine_kwargs={"pool_pre_ping": True, **engine_kwargs}
    )


def task_engine(values: Mapping[str, str] | None = None) -> sa.Engine:
    """The engine a task uses (the connection named by ``imrt_db_conn_id``); the caller disposes of it."""
    values = read_variables() if values is None else values
    return connection_engine(values["imrt_db_conn_id"], pool_size=4, connect_args={"connect_timeout": 10})


@functools.cache
def server_engine() -> sa.Engine:
    """The API server's and the scheduler's engine, one per process; checks the schema once (no DDL here: the
    migration command does it; if the check raises, nothing is cached)."""
    from imrt_sync.schema_migrations import require_current_schema

    engine = connection_engine(
        variable("imrt_db_conn_id"),
        pool_size=2,
        max_overflow=10,
        pool_timeout=10,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    require_current_schema(engine)
    return engine
