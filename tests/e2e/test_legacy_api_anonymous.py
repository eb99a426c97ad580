"""The insecure opt-in for legacy in-cluster cron jobs: ``[imrt] allow_anonymous_sync`` opens POST /sync only."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from devstack.airflow_stack import AirflowStack
from devstack.postgres import airflow_connection, ensure_database

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "item_synchronization"


@pytest.fixture(scope="module")
def stack(pg_admin_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("anonymous")
    imrt_url = ensure_database(pg_admin_url, f"imrt_anon_{uuid.uuid4().hex[:10]}")
    metadata_url = ensure_database(pg_admin_url, f"airflow_anon_{uuid.uuid4().hex[:10]}")
    env = {
        "AIRFLOW__IMRT__ALLOW_ANONYMOUS_SYNC": "True",
        "AIRFLOW_CONN_GITLAB_DEFAULT": json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9", "password": "x"}),
        "AIRFLOW_CONN_IMRT_DEFAULT": airflow_connection(imrt_url),
        "AIRFLOW_VAR_IMRT_GITLAB_GROUP": "iat-anon",
        "AIRFLOW_VAR_IMRT_WEBHOOK_URL": "https://imrt.example.org/webHook",
    }
    airflow = AirflowStack(root / "home", metadata_url.set(drivername="postgresql+psycopg2"),
                           dags_folder=REPO_ROOT / "dags", plugins_folder=REPO_ROOT / "plugins", env=env)
    try:
        airflow.start()
        airflow.wait_for_dag(DAG_ID)
        yield airflow
    finally:
        airflow.stop()


def test_only_post_sync_is_opened(stack):
    anonymous = requests.post(f"{stack.url}/sync", timeout=30)
    assert anonymous.status_code == 409  # reached the endpoint: the DAG is still paused
    assert "paused" in anonymous.json()["detail"]
    assert requests.post(f"{stack.url}/sync/12", timeout=30).status_code == 401
    assert requests.get(f"{stack.url}/sync/1", timeout=30).status_code == 401
    assert requests.put(f"{stack.url}/abandon/1", timeout=30).status_code == 401
    assert "allow_anonymous_sync is on" in stack.log_file("api-server").read_text()
