"""The imrt database as seen from Airflow's server components: short timeouts, so a slow database never stalls them."""

from __future__ import annotations

import functools

import sqlalchemy as sa

CONNECT_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 5000


@functools.cache
def imrt_engine() -> sa.Engine:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from imrt_sync.airflow_settings import variable
    from imrt_sync.migrate import require_current_schema

    hook = PostgresHook(postgres_conn_id=variable("imrt_db_conn_id"))
    engine = hook.get_sqlalchemy_engine(
        engine_kwargs={
            "pool_pre_ping": True,
            "pool_size": 2,
            "max_overflow": 10,
            "pool_timeout": 10,
            "connect_args": {
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}",
            },
        }
    )
    require_current_schema(engine)  # no DDL here (imrt-migrate does it); if it raises, nothing is cached
    return engine
