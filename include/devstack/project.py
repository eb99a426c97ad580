"""This repository's DAG and plugin on an Airflow stack, configured for a GitLab (or the item bank server)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from .airflow_stack import AirflowStack
from .postgres import airflow_connection

REPO_ROOT = Path(__file__).resolve().parents[2]


def sync_environment(
    *,
    gitlab_url: str,
    gitlab_token: str,
    group: str,
    imrt_url,
    git_cache_dir: Path,
    webhook_url: str,
    webhook_secret: str = "",
    allow_http: bool = True,
) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` variables the DAG and the plugin read.

    ``allow_http``: the local item bank server speaks plain http://, which the DAG refuses unless
    ``imrt_gitlab_allow_http`` is true.
    """
    return {
        "AIRFLOW_CONN_GITLAB_DEFAULT": json.dumps(
            {"conn_type": "http", "host": gitlab_url, "password": gitlab_token, "extra": {"timeout": 60}}
        ),
        "AIRFLOW_CONN_IMRT_DEFAULT": airflow_connection(imrt_url),
        "AIRFLOW_VAR_IMRT_GITLAB_GROUP": group,
        "AIRFLOW_VAR_IMRT_WEBHOOK_URL": webhook_url,
        "AIRFLOW_VAR_IMRT_WEBHOOK_SECRET": webhook_secret,
        "AIRFLOW_VAR_IMRT_GIT_CACHE_DIR": str(git_cache_dir),
        "AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP": "true" if allow_http else "false",
    }


def worker_git_cache(hostname: str, worker_home: Path) -> dict[str, str]:
    """An edge worker's own item git cache (``imrt_git_cache_dir``) in its own directory: the ``worker_env`` of
    ``AirflowStack`` for workers that share no disk."""
    return {"AIRFLOW_VAR_IMRT_GIT_CACHE_DIR": str(worker_home / "git-cache")}


def prepare_imrt_database(imrt_url) -> list[str]:
    """Before Airflow starts, what a new environment's deployment does once (``imrt-migrate``): the missing legacy
    tables (``bootstrap-legacy``), then this service's own tables to the newest revision (``upgrade``).

    Returns the legacy objects created. The DAG and the plugin refuse a database that is not ready, and change no
    schema themselves (docs/deployment.md, "Database migrations").
    """
    from imrt_sync.schema_migrations import prepare_database

    engine = sa.create_engine(imrt_url)
    try:
        return prepare_database(engine)
    finally:
        engine.dispose()


def project_stack(home: Path, metadata_url, env: dict[str, str], **options) -> AirflowStack:
    """An Airflow stack (PostgreSQL metadata: psycopg2 driver) running this repository's dags/ and plugins/."""
    url = metadata_url.set(drivername="postgresql+psycopg2") if hasattr(metadata_url, "set") else metadata_url
    return AirflowStack(
        home, url, dags_folder=REPO_ROOT / "dags", plugins_folder=REPO_ROOT / "plugins", env=env, **options
    )
