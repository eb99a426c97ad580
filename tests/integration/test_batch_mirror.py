"""The Spring Batch mirror of the Airflow runs (imrt_sync.spring_batch) on a real PostgreSQL database.

The legacy behaviour it keeps (sources in the docstring of ``imrt_sync.spring_batch.mirror``): the tables and the
row life cycle, ``POST /sync``, ``PUT /abandon`` and the 409, the statuses, the manual recovery, and the runbook's SQL
(tests/fixtures/runbook.md), executed verbatim. Every test reads the rows back with SQL.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from imrt_compat.legacy_responses import abandon_response, already_running_message, execution_view, started_response
from imrt_sync import DAG_ID
from imrt_sync.schema import EXIT_MESSAGE_LIMIT
from imrt_sync.schema_migrations import prepare_database
from imrt_sync.spring_batch import JOB_KEY, JOB_NAME, STEP_NAME, RunAlreadyLinkedError, SpringBatchMirror

RUN = "manual__2024-05-01T09:00:00+00:00"
SCHEDULED_RUN = "scheduled__2024-05-02T09:00:00+00:00"
T0 = datetime(2024, 5, 1, 9, 0, 1)

# The runbook ("Resetting the Job"), verbatim; only the "-- [the ... id ...]" placeholders are replaced by ids.
RUNBOOK_DIAGNOSIS = """
SELECT
    step_execution_id,
    job_execution_id,
    status,
    exit_code,
    start_time,
    end_time,
    last_updated
FROM
    batch_step_execution
WHERE
    status <> 'COMPLETED'
    OR exit_code <> 'COMPLETED';
"""
RUNBOOK_UPDATE_STEP = """
UPDATE
    batch_step_execution
SET
    status = 'COMPLETED',
    exit_code = 'COMPLETED',
    end_time = CURRENT_TIMESTAMP
WHERE
    step_execution_id = {step_execution_id}
"""
RUNBOOK_UPDATE_JOB = """
UPDATE
    batch_job_execution
SET
    status = 'COMPLETED',
    exit_code = 'COMPLETED',
    end_time = CURRENT_TIMESTAMP,
    exit_message = 'Marked complete by SQL'
WHERE
    job_execution_id = {job_execution_id}
"""
RUNBOOK_DELETE = """
DELETE FROM batch_step_execution_context;
DELETE FROM batch_step_execution;
DELETE FROM batch_job_execution_context;
DELETE FROM batch_job_execution_params;
DELETE FROM batch_job_execution;
DELETE FROM batch_job_instance;
"""
# The diagnosis query and the later (ABANDONED) version of the manual fix, from the legacy service's own docs:
# SmarterApp/AP_IMRT_ItemIngestService at tag 0.1.84, docs/items_are_not_syncing.md ("Abandon Job via DB tables").
REFERENCE_DIAGNOSIS = (
    "select job_execution_id, job_instance_id, start_time, end_time, status, exit_message "
    "from batch_job_execution order by start_time desc;"
)
REFERENCE_ABANDON_STEP = (
    "UPDATE batch_step_execution SET status='ABANDONED', exit_code='ABANDONED', end_time=CURRENT_TIMESTAMP "
    "WHERE job_execution_id={id};"
)
REFERENCE_ABANDON_JOB = (
    "UPDATE batch_job_execution  SET status='ABANDONED', exit_code='ABANDONED', end_time=CURRENT_TIMESTAMP,\n"
    "       exit_message='Marked anbandon by SQL' WHERE job_execution_id={id};"
)


@pytest.fixture
def engine(imrt_engine):
    prepare_database(imrt_engine)
    return imrt_engine


@pytest.fixture
def mirror(engine):
    return SpringBatchMirror(engine)


def query(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]


def jobs(engine) -> list[dict]:
    return query(engine, "SELECT * FROM batch_job_execution ORDER BY job_execution_id")


def steps(engine) -> list[dict]:
    return query(engine, "SELECT * FROM batch_step_execution ORDER BY step_execution_id")


def contexts(engine) -> list[dict]:
    return query(engine, "SELECT * FROM batch_job_execution_context ORDER BY job_execution_id")


def instances(engine) -> list[dict]:
    return query(engine, "SELECT * FROM batch_job_instance ORDER BY job_instance_id")


def last_value(engine, sequence: str) -> int:
    # sequence names are constants of the tests, not input
    return query(engine, f"SELECT last_value FROM {sequence}")[0]["last_value"]


def run_sql(engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------- life cycle


def test_life_cycle_starting_started_completed(engine, mirror):
    before = utcnow()
    created = mirror.create_execution(RUN)
    after = utcnow()

    [instance] = instances(engine)
    assert instance == {"job_instance_id": 1, "version": 0, "job_name": JOB_NAME, "job_key": JOB_KEY}
    [job] = jobs(engine)
    assert job["job_execution_id"] == created.job_execution_id == last_value(engine, "batch_job_execution_seq")
    assert job["job_instance_id"] == created.job_instance_id == 1
    assert (job["status"], job["exit_code"], job["exit_message"], job["version"]) == ("STARTING", "UNKNOWN", "", 0)
    assert before <= job["create_time"] <= after
    assert job["start_time"] is None and job["end_time"] is None
    assert job["job_configuration_location"] is None
    [context] = contexts(engine)
    assert context["job_execution_id"] == created.job_execution_id
    assert context["short_context"].startswith('{"dagId"')
    assert json.loads(context["short_context"]) == {"dagId": DAG_ID, "runId": RUN}
    assert context["serialized_context"] is None
    assert query(engine, "SELECT * FROM batch_job_execution_params") == []
    assert steps(engine) == []
    assert created.run_id == RUN and created.status == "STARTING"

    started_at = T0.replace(tzinfo=UTC)  # Airflow's aware start_date is stored as naive UTC
    started = mirror.mark_started(RUN, started_at)
    [job] = jobs(engine)
    assert (job["status"], job["start_time"], job["end_time"], job["version"]) == ("STARTED", T0, None, 1)
    [step] = steps(engine)
    assert step["step_execution_id"] == last_value(engine, "batch_step_execution_seq")
    assert step["job_execution_id"] == created.job_execution_id
    assert (step["step_name"], step["status"], step["start_time"], step["end_time"]) == (STEP_NAME, "STARTED", T0, None)
    assert step["commit_count"] == 1 and step["version"] == 0
    assert [
        step[c]
        for c in (
            "read_count",
            "write_count",
            "filter_count",
            "read_skip_count",
            "write_skip_count",
            "process_skip_count",
            "rollback_count",
        )
    ] == [0] * 7
    assert started.status == "STARTED" and started.start_time == T0

    ended_at = T0 + timedelta(minutes=3)
    message = (
        "Total item bank ids: 1811, number of items requiring project webhook: 10, number of items deleted from IMRT: 2"
    )
    finished = mirror.mark_finished(
        RUN, "COMPLETED", message, read_count=1811, write_count=40, skip_count=3, ended_at=ended_at
    )
    [job] = jobs(engine)
    assert (job["status"], job["exit_code"], job["exit_message"]) == ("COMPLETED", "COMPLETED", message)
    assert (job["start_time"], job["end_time"], job["version"]) == (T0, ended_at, 2)
    assert job["last_updated"] >= job["create_time"]
    [step] = steps(engine)
    assert (step["status"], step["exit_code"], step["exit_message"]) == ("COMPLETED", "COMPLETED", message)
    assert (step["end_time"], step["read_count"], step["write_count"], step["process_skip_count"]) == (
        ended_at,
        1811,
        40,
        3,
    )
    assert step["version"] == 1 and step["commit_count"] == 1
    assert finished == mirror.execution(created.job_execution_id) == mirror.execution_for_run(RUN)
    assert mirror.running() == []

    view = execution_view(finished)
    assert list(view) == [
        "jobExecutionId",
        "jobInstanceId",
        "name",
        "status",
        "exitCode",
        "exitMessage",
        "createTime",
        "startTime",
        "endTime",
        "lastUpdated",
        "airflowRunId",
    ]
    assert view["startTime"] == "2024-05-01T09:00:01.000Z" and view["endTime"] == "2024-05-01T09:03:01.000Z"
    assert view["airflowRunId"] == RUN and view["name"] == JOB_NAME and view["exitCode"] == "COMPLETED"


def test_run_without_a_row_gets_rows_at_mark_started(engine, mirror):
    """Runs started by the schedule, the UI or the REST API have no row until their "running" notification."""
    assert mirror.execution_for_run(SCHEDULED_RUN) is None
    execution = mirror.mark_started(SCHEDULED_RUN, T0)

    [job] = jobs(engine)
    assert (job["status"], job["exit_code"], job["start_time"], job["end_time"]) == ("STARTED", "UNKNOWN", T0, None)
    assert job["create_time"] <= job["start_time"]
    assert job["job_instance_id"] == instances(engine)[0]["job_instance_id"]
    [context] = contexts(engine)
    assert json.loads(context["short_context"])["runId"] == SCHEDULED_RUN
    [step] = steps(engine)
    assert (step["job_execution_id"], step["status"], step["start_time"]) == (job["job_execution_id"], "STARTED", T0)
    assert mirror.running() == [execution]


def test_mark_finished_without_running_notification_creates_the_rows(engine, mirror):
    ended_at = T0 + timedelta(minutes=1)
    mirror.mark_finished(RUN, "FAILED", "boom", ended_at=ended_at, started_at=T0)
    [job] = jobs(engine)
    assert (job["status"], job["exit_code"], job["exit_message"]) == ("FAILED", "FAILED", "boom")
    assert (job["start_time"], job["end_time"]) == (T0, ended_at)
    [step] = steps(engine)
    assert (step["status"], step["start_time"], step["end_time"]) == ("FAILED", T0, ended_at)
    assert json.loads(contexts(engine)[0]["short_context"])["runId"] == RUN


def test_mark_started_and_mark_finished_are_idempotent(engine, mirror):
    mirror.create_execution(RUN)
    mirror.mark_started(RUN, T0)
    snapshot = (jobs(engine), steps(engine), contexts(engine))
    mirror.mark_started(RUN, T0)
    mirror.mark_started(RUN)  # no start time: keeps the one recorded
    assert (jobs(engine), steps(engine), contexts(engine)) == snapshot

    mirror.mark_finished(RUN, "COMPLETED", "done", read_count=5, write_count=2, skip_count=1)
    snapshot = (jobs(engine), steps(engine), contexts(engine))
    assert snapshot[0][0]["version"] == 2
    again = mirror.mark_finished(RUN, "COMPLETED", "done", read_count=5, write_count=2, skip_count=1)
    assert (jobs(engine), steps(engine), contexts(engine)) == snapshot  # same end_time, version, last_updated
    assert again.end_time == snapshot[0][0]["end_time"]
    assert len(instances(engine)) == 1


def test_failed_exit_message_is_cut_to_2500_characters(engine, mirror):
    mirror.mark_started(RUN, T0)
    trace = "java.lang.IllegalStateException: boom: " + "\n\tat org.example.Frame.call(Frame.java:1)" * 200
    assert len(trace) > 2500
    execution = mirror.mark_finished(RUN, "FAILED", trace)

    cut = trace[:2497] + "..."
    [job] = jobs(engine)
    assert (job["status"], job["exit_code"]) == ("FAILED", "FAILED")
    assert job["exit_message"] == cut and len(job["exit_message"]) == EXIT_MESSAGE_LIMIT == 2500
    [step] = steps(engine)
    assert (step["status"], step["exit_code"], step["exit_message"]) == ("FAILED", "FAILED", cut)
    assert execution.exit_message == cut
    with pytest.raises(ValueError):
        mirror.mark_finished(RUN, "DONE", "x")


# ---------------------------------------------------------------------------------------------- runbook SQL


def test_ids_keep_increasing_after_the_runbook_delete(engine, mirror):
    first = mirror.create_execution("run-1")
    mirror.mark_started("run-1", T0)
    mirror.mark_finished("run-1", "COMPLETED", "ok")
    second = mirror.mark_started("run-2", T0)
    [old_instance] = instances(engine)
    old_step_ids = [s["step_execution_id"] for s in steps(engine)]
    assert second.job_execution_id > first.job_execution_id

    run_sql(engine, RUNBOOK_DELETE)
    assert jobs(engine) == steps(engine) == contexts(engine) == instances(engine) == []
    assert mirror.execution_for_run("run-2") is None and mirror.running() == []

    new_instance_id = mirror.job_instance_id()
    third = mirror.create_execution("run-3")
    mirror.mark_started("run-3", T0)
    [instance] = instances(engine)
    assert instance["job_instance_id"] == new_instance_id == third.job_instance_id
    assert new_instance_id > old_instance["job_instance_id"]
    assert (instance["job_name"], instance["job_key"], instance["version"]) == (JOB_NAME, JOB_KEY, 0)
    [job] = jobs(engine)
    assert job["job_execution_id"] == third.job_execution_id > second.job_execution_id
    [step] = steps(engine)
    assert step["step_execution_id"] > max(old_step_ids)


def test_runbook_manual_reset_then_nothing_is_running(engine, mirror):
    mirror.mark_started(RUN, T0)  # a hung run: the pod died, end_time stays NULL
    [hung] = mirror.running()

    diagnosis = query(engine, REFERENCE_DIAGNOSIS)
    assert [(r["job_execution_id"], r["job_instance_id"], r["end_time"], r["status"]) for r in diagnosis] == [
        (hung.job_execution_id, hung.job_instance_id, None, "STARTED")
    ]
    [incomplete] = query(engine, RUNBOOK_DIAGNOSIS)
    assert incomplete["job_execution_id"] == hung.job_execution_id
    assert (incomplete["status"], incomplete["exit_code"], incomplete["end_time"]) == ("STARTED", "EXECUTING", None)

    run_sql(engine, RUNBOOK_UPDATE_STEP.format(step_execution_id=incomplete["step_execution_id"]))
    run_sql(engine, RUNBOOK_UPDATE_JOB.format(job_execution_id=incomplete["job_execution_id"]))

    assert mirror.running() == []
    assert query(engine, RUNBOOK_DIAGNOSIS) == []
    [job] = jobs(engine)
    assert (job["status"], job["exit_code"]) == ("COMPLETED", "COMPLETED")
    assert job["exit_message"] == "Marked complete by SQL"
    assert job["end_time"] is not None
    # the run can then be started again; a stale "running" notification of the fixed run changes nothing
    assert mirror.create_execution("run-after-fix").status == "STARTING"
    assert mirror.mark_started(RUN, T0).status == "COMPLETED"


def test_reference_abandon_sql_then_nothing_is_running(engine, mirror):
    hung = mirror.mark_started(RUN, T0)
    run_sql(engine, REFERENCE_ABANDON_STEP.format(id=hung.job_execution_id))
    run_sql(engine, REFERENCE_ABANDON_JOB.format(id=hung.job_execution_id))
    assert mirror.running() == []
    [job] = jobs(engine)
    assert (job["status"], job["exit_message"]) == ("ABANDONED", "Marked anbandon by SQL")
    assert steps(engine)[0]["status"] == "ABANDONED"


# ------------------------------------------------------------------------------------------------- abandon


def test_abandon_unknown_instance(engine, mirror):
    result = mirror.abandon(42)
    assert result.kind == "not_found" and result.run_ids == ()
    assert abandon_response(result) == (404, "Could not find job instance for instance id 42")
    assert instances(engine) == [] and jobs(engine) == []


def test_abandon_with_nothing_running(engine, mirror):
    mirror.mark_started(RUN, T0)
    mirror.mark_finished(RUN, "COMPLETED", "ok")
    before = jobs(engine)
    instance_id = mirror.job_instance_id()

    result = mirror.abandon(instance_id)
    status, body = abandon_response(result)
    assert result.kind == "none" and status == 200
    assert json.dumps(body, separators=(",", ":")) == (
        f'{{"jobExecutionId":0,"jobInstanceId":{instance_id},"name":"itemSynchronizationJob",'
        f'"status":"NO JOB EXECUTIONS","message":"No job executions are currently running for the '
        f'itemSynchronizationJob (job instance id {instance_id})"}}'
    )
    assert jobs(engine) == before


def test_abandon_running_executions(engine, mirror):
    done = mirror.mark_started("run-done", T0)
    mirror.mark_finished("run-done", "COMPLETED", "ok")
    scheduled = mirror.mark_started(SCHEDULED_RUN, T0)  # STARTED, with a step
    triggered = mirror.create_execution(RUN)  # STARTING, no step yet
    unlinked = mirror.create_execution()
    before = {j["job_execution_id"]: j for j in jobs(engine)}

    result = mirror.abandon(triggered.job_instance_id)
    status, body = abandon_response(result)
    assert result.kind == "abandoned" and status == 200
    newest = unlinked.job_execution_id
    assert json.dumps(body, separators=(",", ":")) == (
        f'{{"jobExecutionId":{newest},"jobInstanceId":{triggered.job_instance_id},"name":"itemSynchronizationJob",'
        f'"status":"ABANDONED","message":"Job Execution {newest} for Job itemSynchronizationJob '
        'abandoned successfully"}'
    )
    assert set(result.run_ids) == {SCHEDULED_RUN, RUN}
    assert result.job_execution_ids == (scheduled.job_execution_id, triggered.job_execution_id, newest)

    rows = {j["job_execution_id"]: j for j in jobs(engine)}
    for execution_id in result.job_execution_ids:
        row = rows[execution_id]
        assert row["status"] == "ABANDONED" and row["end_time"] is not None
        assert row["exit_code"] == before[execution_id]["exit_code"] == "UNKNOWN"  # legacy: exit_code untouched
        assert row["version"] == before[execution_id]["version"] + 1
    assert rows[done.job_execution_id] == before[done.job_execution_id]
    step_rows = {s["job_execution_id"]: s for s in steps(engine)}
    assert (step_rows[scheduled.job_execution_id]["status"], step_rows[scheduled.job_execution_id]["exit_code"]) == (
        "ABANDONED",
        "ABANDONED",
    )
    assert step_rows[scheduled.job_execution_id]["end_time"] is not None
    assert step_rows[done.job_execution_id]["status"] == "COMPLETED"
    assert mirror.running() == []

    # the stopped Airflow run then ends "failed": the row stays ABANDONED
    mirror.mark_finished(SCHEDULED_RUN, "FAILED", "stopped")
    assert query(
        engine,
        "SELECT status, exit_message FROM batch_job_execution WHERE job_execution_id = :id",
        id=scheduled.job_execution_id,
    ) == [{"status": "ABANDONED", "exit_message": ""}]
    assert mirror.abandon(triggered.job_instance_id).kind == "none"


# ----------------------------------------------------------------------------------------------- reconcile


def test_reconcile_repairs_rows_whose_run_ended(engine, mirror):
    failed = mirror.mark_started("run-failed", T0)
    succeeded = mirror.mark_started("run-success", T0)
    vanished = mirror.mark_started("run-gone", T0)
    running = mirror.mark_started("run-running", T0)
    queued = mirror.create_execution("run-queued")
    finished = mirror.mark_started("run-finished", T0)
    mirror.mark_finished("run-finished", "COMPLETED", "ok")
    # a legacy Java execution (no Airflow context) is not the reconciler's business
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO batch_job_execution (job_execution_id, version, job_instance_id, create_time, status, "
                "exit_code) VALUES (nextval('batch_job_execution_seq'), 0, :i, :t, 'STARTED', 'UNKNOWN')"
            ),
            {"i": failed.job_instance_id, "t": T0},
        )
    before = {j["job_execution_id"]: j for j in jobs(engine)}
    asked: list[list[str]] = []

    def run_states(run_ids: list[str]) -> dict[str, str]:
        asked.append(run_ids)
        known = {"run-failed": "failed", "run-success": "success", "run-running": "running", "run-queued": "queued"}
        return {r: known[r] for r in run_ids if r in known}

    repaired = mirror.reconcile(run_states, grace=timedelta(0))
    assert sorted(repaired) == sorted([failed.job_execution_id, succeeded.job_execution_id, vanished.job_execution_id])
    assert asked == [sorted(["run-failed", "run-success", "run-gone", "run-running", "run-queued"])]

    rows = {j["job_execution_id"]: j for j in jobs(engine)}
    step_rows = {s["job_execution_id"]: s for s in steps(engine)}
    expected = {failed: "FAILED", succeeded: "COMPLETED", vanished: "ABANDONED"}
    for execution, status in expected.items():
        row = rows[execution.job_execution_id]
        assert (row["status"], row["exit_code"]) == (status, status) and row["end_time"] is not None
        assert row["exit_message"].startswith(f"Marked {status} by the reconciler: Airflow run {execution.run_id}")
        step = step_rows[execution.job_execution_id]
        assert (step["status"], step["exit_code"]) == (status, status) and step["end_time"] is not None
    assert "does not exist" in rows[vanished.job_execution_id]["exit_message"]
    assert "'failed'" in rows[failed.job_execution_id]["exit_message"]
    for untouched in (running.job_execution_id, queued.job_execution_id, finished.job_execution_id):
        assert rows[untouched] == before[untouched]
    legacy_id = max(before)
    assert rows[legacy_id] == before[legacy_id] and rows[legacy_id]["end_time"] is None

    assert mirror.reconcile(run_states, grace=timedelta(0)) == []  # nothing left to repair
    assert jobs(engine) == list(rows.values())


def test_reconcile_grace_protects_fresh_rows(engine, mirror):
    about_to_run = mirror.create_execution("run-about-to-be-triggered")
    unlinked = mirror.create_execution()
    assert mirror.reconcile(lambda run_ids: {}) == []  # default grace: both rows are too young
    assert [j["status"] for j in jobs(engine)] == ["STARTING", "STARTING"]
    with engine.begin() as conn:  # an hour later: the /sync caller died before triggering
        conn.execute(sa.text("UPDATE batch_job_execution SET create_time = create_time - interval '1 hour'"))
    repaired = mirror.reconcile(lambda run_ids: {})
    assert sorted(repaired) == [about_to_run.job_execution_id, unlinked.job_execution_id]
    sql = "SELECT * FROM batch_job_execution WHERE job_execution_id = :id"
    row = query(engine, sql, id=unlinked.job_execution_id)[0]
    assert (row["status"], row["exit_code"], row["end_time"] is not None) == ("ABANDONED", "ABANDONED", True)
    assert row["exit_message"] == (
        "Marked ABANDONED by the reconciler: no Airflow run was ever linked to this execution"
    )
    assert row["start_time"] is None and steps(engine) == []  # it never started: no step row is invented


# ---------------------------------------------------------------------------------------------- concurrency


def _in_threads(count: int, work):
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def test_concurrent_job_instance_id_creates_one_instance(engine):
    results, errors = _in_threads(8, lambda _: SpringBatchMirror(engine).job_instance_id())
    assert errors == []
    [instance] = instances(engine)
    assert set(results) == {instance["job_instance_id"]}


def test_concurrent_mark_started_creates_one_execution(engine):
    results, errors = _in_threads(8, lambda _: SpringBatchMirror(engine).mark_started(SCHEDULED_RUN, T0))
    assert errors == []
    [job] = jobs(engine)
    assert {r.job_execution_id for r in results} == {job["job_execution_id"]}
    assert len(steps(engine)) == 1 and len(contexts(engine)) == 1 and len(instances(engine)) == 1
    assert (job["status"], job["version"]) == ("STARTED", 0)


# ------------------------------------------------------------------------------------ legacy HTTP shapes


def test_409_text_and_started_response(engine, mirror):
    execution = mirror.create_execution(RUN)
    body = started_response(execution)
    assert json.dumps(body, separators=(",", ":")) == (
        f'{{"jobExecutionId":{execution.job_execution_id},"jobInstanceId":1,"name":"itemSynchronizationJob",'
        '"status":"STARTING","message":"Started itemSynchronizationJob successfully"}'
    )
    assert already_running_message(1) == (
        "A job execution for this job is already running: JobInstance: id=1, version=0, "
        "Job=[itemSynchronizationJob].  To abandon the running execution of this job, make a PUT call to /abandon, "
        "passing in the job instance id"
    )
    assert [j["job_execution_id"] for j in jobs(engine)] == [execution.job_execution_id]
    assert [r["job_instance_id"] for r in query(engine, "SELECT job_instance_id FROM batch_job_instance")] == [1]


# ------------------------------------------------------------------------------- linking, clear, legacy rows


def test_link_run_and_lookup_tolerate_legacy_contexts(engine, mirror):
    execution = mirror.create_execution()
    assert json.loads(contexts(engine)[0]["short_context"]) == {"dagId": DAG_ID, "runId": None}
    # a legacy Java execution with an XStream context, and one with a JSON context of something else
    with engine.begin() as conn:
        for short_context in ('{"map":[{"entry":{"string":"response"}}]}', "not json at all {"):
            new_id = conn.execute(
                sa.text(
                    "INSERT INTO batch_job_execution (job_execution_id, version, job_instance_id, create_time, end_time,"
                    " status, exit_code) VALUES (nextval('batch_job_execution_seq'), 0, :i, :t, :t, 'COMPLETED',"
                    " 'COMPLETED') RETURNING job_execution_id"
                ),
                {"i": execution.job_instance_id, "t": T0},
            ).scalar_one()
            conn.execute(
                sa.text("INSERT INTO batch_job_execution_context (job_execution_id, short_context) VALUES (:id, :ctx)"),
                {"id": new_id, "ctx": short_context},
            )

    mirror.link_run(execution.job_execution_id, RUN)
    assert json.loads(contexts(engine)[0]["short_context"])["runId"] == RUN
    assert mirror.execution_for_run(RUN).job_execution_id == execution.job_execution_id
    assert mirror.execution_for_run("response") is None
    mirror.link_run(execution.job_execution_id, "renamed")  # replace
    assert mirror.execution_for_run(RUN) is None
    assert mirror.execution_for_run("renamed").job_execution_id == execution.job_execution_id
    assert len(contexts(engine)) == 3

    other = mirror.create_execution("other")
    with pytest.raises(RunAlreadyLinkedError):
        mirror.link_run(other.job_execution_id, "renamed")
    with pytest.raises(RunAlreadyLinkedError):
        mirror.create_execution("renamed")
    with pytest.raises(LookupError):
        mirror.link_run(10_000, "x")
    assert [e.run_id for e in mirror.running()] == ["other", "renamed"]


def test_clear_reopens_the_finished_execution(engine, mirror):
    first = mirror.mark_started(RUN, T0)
    end = T0 + timedelta(minutes=2)
    mirror.mark_finished(RUN, "FAILED", "item 7 failed", ended_at=end)
    finished_rows = (jobs(engine), steps(engine))

    mirror.mark_started(RUN, T0)  # a late "running" notification of the first try: stale, ignored
    assert (jobs(engine), steps(engine)) == finished_rows

    restart = T0 + timedelta(hours=1)  # cleared in Airflow: the same run id runs again
    reopened = mirror.mark_started(RUN, restart)
    assert reopened.job_execution_id == first.job_execution_id
    [job] = jobs(engine)
    assert (job["status"], job["exit_code"], job["exit_message"], job["start_time"], job["end_time"]) == (
        "STARTED",
        "UNKNOWN",
        "",
        restart,
        None,
    )
    [step] = steps(engine)
    assert (step["status"], step["exit_code"], step["start_time"], step["end_time"]) == (
        "STARTED",
        "EXECUTING",
        restart,
        None,
    )
    assert mirror.running() == [reopened]

    mirror.mark_finished(RUN, "COMPLETED", "ok", ended_at=restart + timedelta(minutes=1))
    [job] = jobs(engine)
    assert (job["status"], job["exit_message"], job["end_time"]) == ("COMPLETED", "ok", restart + timedelta(minutes=1))
    assert len(steps(engine)) == 1


def test_the_summary_is_recorded_before_the_run_ends_and_kept_when_it_ends(engine, mirror):
    mirror.mark_started("run-summary", utcnow())
    recorded = mirror.record_outcome(
        "run-summary", "Total item bank ids: 3, ...", read_count=3, write_count=2, skip_count=1
    )
    assert recorded.end_time is None and recorded.status == "STARTED"
    assert recorded.exit_message == "Total item bank ids: 3, ..."
    (step,) = steps(engine)
    assert (step["read_count"], step["write_count"], step["process_skip_count"]) == (3, 2, 1)
    assert step["end_time"] is None

    ended = mirror.mark_finished("run-summary", "FAILED")
    assert ended.status == "FAILED" and ended.end_time is not None
    assert ended.exit_message == "Total item bank ids: 3, ..."
    (step,) = steps(engine)
    assert step["status"] == "FAILED" and step["exit_message"] == "Total item bank ids: 3, ..."
    assert (step["read_count"], step["write_count"], step["process_skip_count"]) == (3, 2, 1)


def test_recording_a_summary_needs_the_run_s_execution(mirror):
    with pytest.raises(LookupError, match="no job execution is linked to run nowhere"):
        mirror.record_outcome("nowhere", "x", read_count=0, write_count=0, skip_count=0)
