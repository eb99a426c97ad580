"""The real DAG under the real scheduler, API server and DAG processor (LocalExecutor, PostgreSQL metadata).

The scheduler starts the latest 09:00 run as soon as the DAG is unpaused (catchup=False): that scheduled run is the
first full sync. Then a REST-triggered run, authenticated with a token, syncs the items changed since.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from e2e_helpers import wait_until
from stack_fixtures import RealStack

from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

BANK_SIZE = 30
STACK = RealStack(
    name="sched",
    group="iat-sched",
    token="glpat-scheduler-e2e-token",
    bank_size=BANK_SIZE,
    seed=11,
    webhook_secret="scheduler-e2e-webhook-secret",
)


def count(imrt, sql: str) -> int:
    with imrt.connect() as conn:
        return conn.scalar(sa.text(sql))


def execution_of(imrt, run_id: str) -> int:
    with imrt.connect() as conn:
        return conn.scalar(
            sa.text("SELECT job_execution_id FROM batch_job_execution_context WHERE short_context LIKE :run"),
            {"run": f'%"{run_id}"%'},
        )


def test_scheduled_run_then_rest_triggered_run(stack, item_bank, imrt):
    bank, projects, _ = item_bank
    unauthenticated = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", token="", json={"logical_date": None})
    assert unauthenticated.status_code == 401

    stack.unpause(DAG_ID)
    runs = wait_until(
        lambda: stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"], 60, "the scheduled run"
    )
    scheduled = runs[0]
    assert scheduled["run_type"] == "scheduled"
    assert stack.wait_for_run(DAG_ID, scheduled["dag_run_id"], timeout=400) == "success"
    assert count(imrt, "SELECT count(*) FROM item") == BANK_SIZE
    sync_tis = [ti for ti in stack.task_instances(DAG_ID, scheduled["dag_run_id"]) if ti["task_id"] == "sync"]
    assert sorted(ti["rendered_map_index"] for ti in sync_tis) == sorted(p["path"] for p in projects)

    changed = projects[:2]
    for p in changed:
        document = json.loads(bank.read_file(p["id"], "item.json"))
        document["workflow"] = {"workflowStatusCode": "Approved"}
        bank.push_commit(p["id"], files={"item.json": document}, message="approve", author_name="Rest R")
    token = stack.token("admin")
    response = stack.api(
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        token=token,
        json={"logical_date": None, "conf": {"mode": "incremental"}},
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    assert stack.wait_for_run(DAG_ID, run_id, timeout=300) == "success"

    instances = {ti["rendered_map_index"]: ti for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "sync"}
    assert sorted(instances) == sorted(p["path"] for p in changed)
    assert count(imrt, "SELECT count(*) FROM item WHERE workflow_status = 'Approved' AND updated_by = 'Rest R'") == 2
    sync_log = stack.task_log(DAG_ID, run_id, "sync", map_index=instances[changed[0]["path"]]["map_index"])
    assert "ITEM EVENT type: ITEM_UPDATED key: " in sync_log and f"itemId: {changed[0]['path']}" in sync_log
    summary_log = stack.task_log(DAG_ID, run_id, "summary")
    execution_id = execution_of(imrt, run_id)
    assert (
        f"Item Synchronization Process complete.  Job execution id: {execution_id}, exit status code: COMPLETED, "
        f"exit message: Total item bank ids: {BANK_SIZE}, number of items requiring project webhook: 0, "
        "number of items deleted from IMRT: 0"
    ) in summary_log
    list_log = stack.task_log(DAG_ID, run_id, "list_ids")
    assert "getting item bank ids from source control" in list_log
    assert f"retrieved {BANK_SIZE} item bank ids from source control in " in list_log
    for secret in (STACK.token, STACK.webhook_secret):
        assert secret not in sync_log + summary_log + list_log
