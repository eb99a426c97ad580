"""The insecure opt-in for legacy in-cluster cron jobs: ``[imrt] allow_anonymous_sync`` opens POST /sync only."""

from __future__ import annotations

import uuid

import pytest
import requests

from devstack.postgres import ensure_database
from devstack.project import DAG_ID, project_stack, sync_environment

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def stack(pg_admin_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("anonymous")
    env = sync_environment(
        gitlab_url="http://127.0.0.1:9", gitlab_token="unused", group="iat-anon",
        imrt_url=ensure_database(pg_admin_url, f"imrt_anon_{uuid.uuid4().hex[:10]}"), git_cache_dir=root / "git-cache",
        webhook_url="https://imrt.example.org/webHook",
    )
    env["AIRFLOW__IMRT__ALLOW_ANONYMOUS_SYNC"] = "True"
    airflow = project_stack(root / "home", ensure_database(pg_admin_url, f"airflow_anon_{uuid.uuid4().hex[:10]}"), env)
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
