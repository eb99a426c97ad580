"""The insecure opt-in for legacy in-cluster cron jobs: ``[imrt] allow_anonymous_sync`` opens POST /sync only."""

from __future__ import annotations

import pytest
import requests
from stack_fixtures import airflow_stack, fresh_database

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(pg_admin_url, tmp_path_factory):
    with airflow_stack(
        pg_admin_url,
        tmp_path_factory.mktemp("anonymous"),
        gitlab_url="http://127.0.0.1:9",
        gitlab_token="unused",
        group="iat-anon",
        imrt_url=fresh_database(pg_admin_url, "imrt_anon"),
        metadata_prefix="airflow_anon",
        extra_env={"AIRFLOW__IMRT__ALLOW_ANONYMOUS_SYNC": "True"},
    ) as airflow:
        yield airflow


def test_only_post_sync_is_opened(stack):
    anonymous = requests.post(f"{stack.url}/sync", timeout=30)
    assert anonymous.status_code == 409  # reached the endpoint: the DAG is still paused
    assert "paused" in anonymous.json()["detail"]
    assert requests.post(f"{stack.url}/sync/12", timeout=30).status_code == 401
    assert requests.get(f"{stack.url}/sync/1", timeout=30).status_code == 401
    assert requests.put(f"{stack.url}/abandon/1", timeout=30).status_code == 401
    assert "allow_anonymous_sync is on" in stack.log_file("api-server").read_text()
