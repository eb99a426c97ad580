"""The scheduler (and the task it was running) killed in the middle of a run, then started again.

The legacy service left a hung ``batch_job_execution`` row after a pod restart, blocking every later run until
someone called ``/abandon``. Here the run ends in a true state, so does its row, and ``/sync`` keeps working.
"""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import wait_until
from stack_fixtures import RealStack

from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

BANK_SIZE = 6
SWEEP = "POST /api/graphql"  # the group's projects, 100 a request
STACK = RealStack(
    name="crash",
    group="iat-crash",
    token="glpat-crash-token",
    bank_size=BANK_SIZE,
    seed=3,
    extra_env={
        # A task whose process died is noticed after this many seconds without a heartbeat.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    },
)


def task_state(stack, run_id: str, task_id: str) -> str | None:
    return next((ti["state"] for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == task_id), None)


def test_a_run_survives_a_scheduler_crash_and_its_row_ends_truthfully(stack, item_bank, imrt):
    server = item_bank.server
    server.faults.add(SWEEP, "latency", seconds=30, times=1)  # the listing's first page of the group's projects
    stack.unpause(DAG_ID)
    run = wait_until(lambda: stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"], 60, "a run")[0]
    run_id = run["dag_run_id"]
    wait_until(lambda: task_state(stack, run_id, "list_ids") == "running", 60, "list_ids to be running")
    wait_until(lambda: server.counters().get(SWEEP), 30, "the listing to start")

    stack.kill("scheduler")
    with imrt.connect() as conn:
        hung = conn.execute(sa.text("SELECT job_execution_id, status, end_time FROM batch_job_execution")).one()
    assert hung.status == "STARTED" and hung.end_time is None

    stack.restart("scheduler")
    assert stack.wait_for_run(DAG_ID, run_id, timeout=400) == "success"
    assert any(ti["try_number"] > 1 for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "list_ids")

    def row_ended():
        with imrt.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT status, exit_code, end_time, exit_message FROM batch_job_execution WHERE job_execution_id = :i"
                ),
                {"i": hung.job_execution_id},
            ).one()

    row = wait_until(lambda: (r := row_ended()).end_time and r, 60, "the execution row to end")
    assert row.status == row.exit_code == "COMPLETED"
    assert row.exit_message.startswith(f"Total item bank ids: {BANK_SIZE}, ")
    with imrt.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM batch_job_execution WHERE end_time IS NULL")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM item")) == BANK_SIZE
    answer = requests.post(f"{stack.url}/sync", headers={"Authorization": f"Bearer {stack.token()}"}, timeout=30)
    assert answer.status_code == 200, answer.text
