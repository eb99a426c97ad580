"""The compatibility plugin through the real API server, scheduler and DAG processor, and a real PostgreSQL.

POST /sync, POST /sync/{projectId}, GET /sync/{jobExecutionId}, PUT /abandon/{jobInstanceId}, their tokens and
status codes, and the Spring Batch mirror of every run, including the runbook's SQL run verbatim.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import wait_until
from stack_fixtures import RealStack, unpause_and_finish_scheduled_run

from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

GROUP = "iat-legacy"
TOKEN = "glpat-legacy-api-token"
BANK_SIZE = 8
RUNBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "runbook.md"  # a copy; see tests/test_fixtures.py
STACK = RealStack(
    name="legacy",
    group=GROUP,
    token=TOKEN,
    bank_size=BANK_SIZE,
    seed=5,
    options={"users": {"admin": "admin", "viewer": "viewer"}},
)


@pytest.fixture(scope="module")
def unpaused(stack):
    """Each test starts with no active run."""
    return unpause_and_finish_scheduled_run(stack, timeout=300)


def runs(stack) -> list[dict]:
    return stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "run_after"}).json()["dag_runs"]


def post(stack, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(stack.url + path, headers=headers, timeout=30, **kwargs)


def execution_row(imrt, execution_id: int) -> dict:
    with imrt.connect() as conn:
        return dict(
            conn.execute(
                sa.text("SELECT * FROM batch_job_execution WHERE job_execution_id = :id"), {"id": execution_id}
            )
            .mappings()
            .one()
        )


def wait_for_execution(stack, execution_id: int, token: str) -> dict:
    def ended():
        body = requests.get(
            f"{stack.url}/sync/{execution_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert body.status_code == 200, body.text
        view = body.json()
        return view if view["endTime"] else None

    return wait_until(ended, 300, f"job execution {execution_id} to end")


def test_tokens_decide_who_may_start_a_sync(stack, unpaused):
    assert post(stack, "/sync").status_code == 401
    assert post(stack, "/sync", token="not-a-jwt").status_code == 403  # Airflow: 403 "Invalid JWT token"
    claims = jwt.decode(stack.token("admin"), options={"verify_signature": False})
    expired = jwt.encode(
        {
            **claims,
            "exp": datetime.now(UTC) - timedelta(hours=1),
            "iat": datetime.now(UTC) - timedelta(hours=2),
            "nbf": datetime.now(UTC) - timedelta(hours=2),
        },
        stack.environment["AIRFLOW__API_AUTH__JWT_SECRET"],
        algorithm="HS512",
    )
    assert post(stack, "/sync", token=expired).status_code == 401
    assert post(stack, "/sync", token=stack.token("viewer")).status_code == 403
    assert [r["dag_run_id"] for r in runs(stack)] == [unpaused["dag_run_id"]]


def test_post_sync_starts_one_run_and_mirrors_it_to_the_end(stack, unpaused, imrt):
    token = stack.token("admin")
    response = post(stack, "/sync", token=token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["jobExecutionId", "jobInstanceId", "name", "status", "message"]
    assert body["name"] == "itemSynchronizationJob" and body["status"] == "STARTING"
    assert body["message"] == "Started itemSynchronizationJob successfully"
    execution_id = body["jobExecutionId"]
    assert execution_row(imrt, execution_id)["job_instance_id"] == body["jobInstanceId"]

    second = post(stack, "/sync/", token=token)
    assert second.status_code == 409
    assert second.headers["content-type"].startswith("text/plain")
    assert second.text == (
        f"A job execution for this job is already running: JobInstance: id={body['jobInstanceId']}, version=0, "
        "Job=[itemSynchronizationJob].  To abandon the running execution of this job, make a PUT call to /abandon, "
        "passing in the job instance id"
    )

    run_id = f"legacy__{execution_id}"
    run = stack.dag_run(DAG_ID, run_id)
    assert run["conf"]["jobExecutionId"] == execution_id
    view = wait_for_execution(stack, execution_id, token)
    assert view["status"] == "COMPLETED" and view["airflowRunId"] == run_id
    assert stack.dag_run(DAG_ID, run_id)["state"] == "success"
    row = execution_row(imrt, execution_id)
    assert row["status"] == row["exit_code"] == "COMPLETED"
    assert row["start_time"] is not None and row["end_time"] >= row["start_time"]
    assert row["exit_message"] == (
        f"Total item bank ids: {BANK_SIZE}, number of items requiring project webhook: 0, "
        "number of items deleted from IMRT: 0"
    )
    with imrt.connect() as conn:
        step = (
            conn.execute(
                sa.text("SELECT * FROM batch_step_execution WHERE job_execution_id = :id"), {"id": execution_id}
            )
            .mappings()
            .one()
        )
    assert step["step_name"] == "itemSynchronizationStep" and step["status"] == "COMPLETED"
    assert step["read_count"] == BANK_SIZE
    assert f"Item Synchronization Process starting.  Job execution id: {execution_id}" in stack.task_log(
        DAG_ID, run_id, "list_ids"
    )
    assert (
        f"Item Synchronization Process complete.  Job execution id: {execution_id}, exit status code: COMPLETED, "
        f"exit message: {row['exit_message']}"
    ) in stack.task_log(DAG_ID, run_id, "summary")


def test_concurrent_posts_start_exactly_one_run(stack, unpaused, imrt):
    token = stack.token("admin")
    before = {r["dag_run_id"] for r in runs(stack)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post(stack, "/sync", token=token), range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * 7, [a.text for a in answers]
    new_runs = [r for r in runs(stack) if r["dag_run_id"] not in before]
    assert len(new_runs) == 1
    started = next(a for a in answers if a.status_code == 200).json()
    wait_for_execution(stack, started["jobExecutionId"], token)


def test_sync_one_project(stack, unpaused, item_bank, imrt):
    bank, projects, _ = item_bank
    target = projects[2]
    document = json.loads(bank.read_file(target["id"], "item.json"))
    document["workflow"] = {"workflowStatusCode": "Released"}
    bank.push_commit(target["id"], files={"item.json": document}, message="release", author_name="One Item")
    token = stack.token("admin")
    response = post(stack, f"/sync/{target['id']}", token=token)
    assert response.status_code == 200, response.text
    execution_id = response.json()["jobExecutionId"]
    assert stack.dag_run(DAG_ID, f"legacy__{execution_id}")["conf"]["item_ids"] == [target["id"]]
    assert wait_for_execution(stack, execution_id, token)["status"] == "COMPLETED"
    with imrt.connect() as conn:
        assert (
            conn.scalar(sa.text("SELECT workflow_status FROM item WHERE id = :i"), {"i": int(target["path"])})
            == "Released"
        )


def test_rest_triggered_run_is_mirrored_too(stack, unpaused, imrt):
    response = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
    assert response.status_code == 200
    run_id = response.json()["dag_run_id"]
    assert stack.wait_for_run(DAG_ID, run_id) == "success"
    with imrt.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.status, e.end_time FROM batch_job_execution e JOIN batch_job_execution_context c "
                "ON c.job_execution_id = e.job_execution_id WHERE c.short_context LIKE :run"
            ),
            {"run": f"%{run_id}%"},
        ).all()
        scheduled = conn.scalar(
            sa.text("SELECT count(*) FROM batch_job_execution_context WHERE short_context LIKE :run"),
            {"run": f"%{unpaused['dag_run_id']}%"},
        )
    assert len(rows) == 1 and rows[0].status == "COMPLETED" and rows[0].end_time is not None
    assert scheduled == 1


def test_abandon_a_live_run(stack, unpaused, item_bank, imrt):
    bank, projects, server = item_bank
    token = stack.token("admin")
    instance_id = job_instance_id(imrt)
    nothing = requests.put(
        f"{stack.url}/abandon/{instance_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert nothing.status_code == 200
    assert nothing.json() == {
        "jobExecutionId": 0,
        "jobInstanceId": instance_id,
        "name": "itemSynchronizationJob",
        "status": "NO JOB EXECUTIONS",
        "message": f"No job executions are currently running for the itemSynchronizationJob (job instance id {instance_id})",
    }
    unknown = requests.put(f"{stack.url}/abandon/987654", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert unknown.status_code == 404 and unknown.text == "Could not find job instance for instance id 987654"

    server.faults.add("POST /api/graphql", "latency", seconds=20, times=1)  # the listing's first page
    started = post(stack, "/sync", token=token).json()
    run_id = f"legacy__{started['jobExecutionId']}"
    wait_until(lambda: stack.dag_run(DAG_ID, run_id)["state"] == "running", 60, "the run to be running")
    abandoned = requests.put(
        f"{stack.url}/abandon/{instance_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert abandoned.status_code == 200, abandoned.text
    assert abandoned.json()["status"] == "ABANDONED"
    assert abandoned.json()["jobExecutionId"] == started["jobExecutionId"]
    assert stack.dag_run(DAG_ID, run_id)["state"] == "failed"
    server.faults.clear()
    wait_until(
        lambda: all(
            ti["state"] not in ("running", "queued", "scheduled") for ti in stack.task_instances(DAG_ID, run_id)
        ),
        60,
        "the run's tasks to end",
    )
    row = execution_row(imrt, started["jobExecutionId"])
    assert row["status"] == "ABANDONED" and row["end_time"] is not None
    assert post(stack, "/sync", token=token).status_code == 200


def job_instance_id(imrt) -> int:
    with imrt.connect() as conn:
        return conn.scalar(
            sa.text("SELECT job_instance_id FROM batch_job_instance WHERE job_name = 'itemSynchronizationJob'")
        )


def runbook_statements(block: str, substitutions: dict[str, str]) -> list[str]:
    """The SQL statements of a runbook block as an operator runs them: placeholders filled in, one at a time."""
    for placeholder, value in substitutions.items():
        block = block.replace(placeholder, value)
    chunks = re.split(r"\n\s*\n", block)
    statements = []
    for chunk in chunks:
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        statements += [s.strip() for s in code.split(";") if s.strip()]
    return statements


def test_runbook_sql_verbatim_then_sync_still_works(stack, unpaused, imrt):
    token = stack.token("admin")
    wait_until(lambda: not [r for r in runs(stack) if r["state"] in ("queued", "running")], 300, "no active run")
    diagnosis, resets, deletes = (b.split("```")[0] for b in RUNBOOK.read_text().split("```sql")[1:])
    with imrt.begin() as conn:
        stuck = conn.scalar(sa.text("SELECT max(job_execution_id) FROM batch_job_execution"))
        step = conn.scalar(
            sa.text("SELECT step_execution_id FROM batch_step_execution WHERE job_execution_id = :i"), {"i": stuck}
        )
        conn.execute(
            sa.text("UPDATE batch_job_execution SET end_time = NULL, status = 'STARTED' WHERE job_execution_id = :i"),
            {"i": stuck},
        )
        conn.execute(
            sa.text("UPDATE batch_step_execution SET end_time = NULL, status = 'STARTED' WHERE step_execution_id = :i"),
            {"i": step},
        )
    substitutions = {
        "[the id of the job execution that failed]": str(stuck),
        "-- [the step_execution_id of the record that is incomplete]": str(step),
        "-- [the job_execution_id of the record that is incomplete]": str(stuck),
    }
    with imrt.begin() as conn:
        (found,) = [conn.exec_driver_sql(sql).all() for sql in runbook_statements(diagnosis, substitutions)]
        assert found[0][0] == stuck
        selected, step_update, job_update = runbook_statements(resets, substitutions)
        # It lists every step not COMPLETED: the stuck one, and the one abandoned earlier in this module.
        assert step in [row[0] for row in conn.exec_driver_sql(selected).all()]
        assert conn.exec_driver_sql(step_update).rowcount == 1
        assert conn.exec_driver_sql(job_update).rowcount == 1
    assert execution_row(imrt, stuck)["exit_message"] == "Marked complete by SQL"
    started = post(stack, "/sync", token=token)
    assert started.status_code == 200
    assert started.json()["jobExecutionId"] > stuck
    wait_for_execution(stack, started.json()["jobExecutionId"], token)

    with imrt.begin() as conn:
        for statement in runbook_statements(deletes, {}):
            conn.exec_driver_sql(statement)
        assert conn.scalar(sa.text("SELECT count(*) FROM batch_job_instance")) == 0
    again = post(stack, "/sync", token=token)
    assert again.status_code == 200, again.text
    assert again.json()["jobExecutionId"] > started.json()["jobExecutionId"]
    assert wait_for_execution(stack, again.json()["jobExecutionId"], token)["status"] == "COMPLETED"


def test_unknown_execution_and_paused_dag_are_clear_json_errors(stack, unpaused):
    token = stack.token("admin")
    missing = requests.get(f"{stack.url}/sync/99999999", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert missing.status_code == 404 and "99999999" in missing.json()["detail"]
    wait_until(lambda: not [r for r in runs(stack) if r["state"] in ("queued", "running")], 300, "no active run")
    stack.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": True})
    try:
        paused = post(stack, "/sync", token=token)
        assert paused.status_code == 409
        assert "paused" in paused.json()["detail"]
    finally:
        stack.unpause(DAG_ID)


def test_a_row_left_started_for_an_ended_run_is_repaired(stack, unpaused, imrt):
    """What a scheduler crash between a run's end and its mirror write leaves behind, and how it is repaired."""
    token = stack.token("admin")
    wait_until(lambda: not [r for r in runs(stack) if r["state"] in ("queued", "running")], 300, "no active run")
    started = post(stack, "/sync", token=token).json()
    execution_id = started["jobExecutionId"]
    wait_for_execution(stack, execution_id, token)
    with imrt.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE batch_job_execution SET status = 'STARTED', exit_code = 'UNKNOWN', "
                "end_time = NULL WHERE job_execution_id = :i"
            ),
            {"i": execution_id},
        )
    after_hang = post(stack, "/sync", token=token)  # a hung row does not block: Airflow's run state is the truth
    assert after_hang.status_code == 200, after_hang.text
    repaired = requests.get(
        f"{stack.url}/sync/{execution_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert repaired.status_code == 200
    assert repaired.json()["status"] == "COMPLETED" and repaired.json()["endTime"]
    assert execution_row(imrt, execution_id)["exit_message"].startswith("Total item bank ids: ")
    wait_for_execution(stack, after_hang.json()["jobExecutionId"], token)


def test_an_unreachable_imrt_database_is_a_503(stack, unpaused, imrt):
    token = stack.token("admin")
    wait_until(lambda: not [r for r in runs(stack) if r["state"] in ("queued", "running")], 300, "no active run")
    database = imrt.url.database
    admin = sa.create_engine(imrt.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": database}
            )
        answer = post(stack, "/sync", token=token)
        assert answer.status_code == 503
        assert answer.json() == {"detail": "the imrt database is unreachable or busy; try again later"}
        assert [r for r in runs(stack) if r["state"] in ("queued", "running")] == []
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert post(stack, "/sync", token=token).status_code == 200
