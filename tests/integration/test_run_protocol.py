"""The run protocol's steps (imrt_sync.pipeline) on the item bank server and PostgreSQL: what open_run and close_run
record (the Spring Batch mirror for a scheduled or manual run, imrt_webhook_event for a run of the hook events), the
schema check before anything, and how sync_unit classifies an item's failure. Rows are read back with SQL."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from event_waits import WAIT_SQL, BackOff

from imrt_sync import DAG_ID, pipeline
from imrt_sync.config import EventRetryPolicy, GitLabSettings, RunParams, SyncSettings
from imrt_sync.contracts import RunContext, RunResults
from imrt_sync.schema_migrations import SchemaNotReady, head_revision, prepare_database
from imrt_sync.scope import GroupScope
from imrt_sync.webhook_events import EventLog, parse_event, triage
from itembank_server import ItemBank, ItemBankServer, generate_bank
from itembank_server.webhook_payloads import push_payload

TOKEN = "glpat-run-protocol-token"
GROUP = "iat-protocol"
WEBHOOK_URL = "https://imrt.example.org/webHook"
ITEMS = 4
RETRY = EventRetryPolicy(base_seconds=60, max_seconds=600, max_attempts=3)
STARTED_AT = datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)
SETTINGS_BROKEN = "imrt_deletion_guard_ratio must be a share of the items in item_git in (0, 1], e.g. 0.10, not 2.0"


@pytest.fixture
def bank(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    projects = generate_bank(bank, GROUP, count=ITEMS, seed=7)
    yield bank, projects
    bank.close()


@pytest.fixture
def server(bank):
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def settings(server, tmp_path) -> tuple[SyncSettings, GitLabSettings]:
    sync = SyncSettings(
        group=GROUP, webhook_url=WEBHOOK_URL, git_cache_dir=tmp_path / "git-cache", concurrency=4, event_retry=RETRY
    )
    return sync, GitLabSettings(base_url=server.url, token=TOKEN, retries=2, backoff_factor=0.01, allow_http=True)


@pytest.fixture
def services(settings, imrt_engine):
    prepare_database(imrt_engine)
    with pipeline.Services.open(*settings, imrt_engine) as services:
        yield services


def broken_settings():
    raise ValueError(SETTINGS_BROKEN)


def sync_all(services, planned, params: RunParams) -> RunResults:
    """The run's middle steps, as the DAG's tasks make them: every unit, then the hooks."""
    outcomes = [pipeline.sync_unit(services, unit, params) for unit in planned["units"]]
    hooks = pipeline.dispatch_webhooks(services, planned["plan"], params)
    return RunResults(planned["plan"], planned["units"], outcomes, hooks)


def head(total: int, missing_webhook: int, deleted: int) -> str:
    return (
        f"Total item bank ids: {total}, number of items requiring project webhook: {missing_webhook}, "
        f"number of items deleted from IMRT: {deleted}"
    )


def execution_rows(engine) -> list[dict]:
    """Every job execution with its context and step, oldest first."""
    with engine.connect() as conn:
        return [
            dict(row)
            for row in conn.execute(
                sa.text(
                    "SELECT j.job_execution_id, j.status, j.exit_code, j.exit_message, j.start_time, j.end_time,"
                    " c.short_context, s.status AS step_status, s.read_count, s.write_count, s.process_skip_count,"
                    " s.exit_message AS step_exit_message, s.end_time AS step_end_time"
                    " FROM batch_job_execution j"
                    " LEFT JOIN batch_job_execution_context c ON c.job_execution_id = j.job_execution_id"
                    " LEFT JOIN batch_step_execution s ON s.job_execution_id = j.job_execution_id"
                    " ORDER BY j.job_execution_id"
                )
            ).mappings()
        ]


def event_rows(engine) -> list[dict]:
    """Every hook event: its project, status, run, attempts, error and seconds to its next attempt."""
    with engine.connect() as conn:
        return [
            dict(row)
            for row in conn.execute(
                sa.text(
                    "SELECT project_id, status, run_id, attempts, detail, finished_at IS NOT NULL AS finished,"
                    f" {WAIT_SQL} AS wait"
                    " FROM imrt_webhook_event ORDER BY id"
                )
            ).mappings()
        ]


def recorded_heads(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT project_id, current_commit_hash FROM item_git")).all())


def push_and_record_event(bank: ItemBank, engine, project_id: int, files: dict, note: str) -> str:
    """Push a commit to the project's default branch and record the push event GitLab sends for it, as the hook
    receiver does (parse, triage, record). Returns the commit."""
    project = bank.project(project_id)
    before = bank.head(project_id)
    after = bank.push_commit(project_id, files=files, message=note)
    ref = f"refs/heads/{project['default_branch']}"
    payload = push_payload(
        bank.repo_path(project), project, bank.ensure_user("author"), before, after, ref, "http://gitlab.example.org"
    )
    event = parse_event("Push Hook", json.dumps(payload).encode(), f"uuid-{project_id}-{after[:8]}")
    verdict = triage(event, GroupScope(GROUP), ())
    assert verdict.status == "pending", verdict
    EventLog(engine).record(event, verdict)
    return after


def edited_item(bank: ItemBank, project_id: int, note: str) -> dict:
    document = json.loads(bank.read_file(project_id, "item.json"))
    document["note"] = note
    return {"item.json": document}


# -- a scheduled or manual run: the Spring Batch mirror --------------------------------------------------------------


def test_open_run_marks_the_execution_started_and_close_run_records_the_outcome_but_not_the_end(
    bank, services, imrt_engine, caplog
):
    _, projects = bank
    run = RunContext("manual__protocol-1", RunParams(), started_at=STARTED_AT)
    with caplog.at_level(logging.INFO, logger="imrt_sync.pipeline"):
        planned = pipeline.open_run(run, imrt_engine, lambda: (services.settings, services.gitlab.settings))

    [started] = execution_rows(imrt_engine)
    assert planned["job_execution_id"] == started["job_execution_id"]
    assert (started["status"], started["exit_code"], started["exit_message"]) == ("STARTED", "UNKNOWN", "")
    assert (started["start_time"], started["end_time"]) == (STARTED_AT.replace(tzinfo=None), None)
    assert json.loads(started["short_context"]) == {"dagId": DAG_ID, "runId": run.run_id}
    assert (started["step_status"], started["read_count"], started["write_count"]) == ("STARTED", 0, 0)
    assert f"Item Synchronization Process starting.  Job execution id: {started['job_execution_id']}" in caplog.messages
    assert planned["plan"]["to_sync"] == sorted(p["id"] for p in projects)

    verdict = pipeline.close_run(services, run, sync_all(services, planned, run.params))
    assert verdict["message"] == head(ITEMS, ITEMS, 0) and verdict["status"] == "COMPLETED"
    [closed] = execution_rows(imrt_engine)
    assert (closed["exit_message"], closed["step_exit_message"]) == (verdict["message"], verdict["message"])
    assert (closed["read_count"], closed["write_count"], closed["process_skip_count"]) == (ITEMS, ITEMS, 0)
    # The status and end_time wait for Airflow to say the run ended.
    assert (closed["status"], closed["exit_code"], closed["end_time"]) == ("STARTED", "UNKNOWN", None)
    assert (closed["step_status"], closed["step_end_time"]) == ("STARTED", None)


def test_a_run_whose_settings_cannot_be_read_keeps_its_execution_and_close_run_writes_why(services, imrt_engine):
    run = RunContext("manual__protocol-broken-settings", RunParams(), started_at=STARTED_AT)
    with pytest.raises(ValueError) as failure:
        pipeline.open_run(run, imrt_engine, broken_settings)
    [started] = execution_rows(imrt_engine)
    assert started["status"] == "STARTED" and json.loads(started["short_context"])["runId"] == run.run_id

    results = RunResults(None, listing_error=pipeline.describe_listing_failure(failure.value))
    verdict = pipeline.close_run(services, run, results)
    expected = f"Listing the item bank failed: ValueError: {SETTINGS_BROKEN}"
    assert (verdict["status"], verdict["message"]) == ("FAILED", expected)
    [closed] = execution_rows(imrt_engine)
    assert closed["job_execution_id"] == started["job_execution_id"]
    assert (closed["exit_message"], closed["read_count"], closed["write_count"]) == (expected, 0, 0)
    assert (closed["status"], closed["end_time"]) == ("STARTED", None)


def test_close_run_records_a_run_whose_open_run_never_recorded_it(services, imrt_engine):
    run = RunContext("manual__protocol-no-open-run", RunParams(), started_at=STARTED_AT)
    verdict = pipeline.close_run(services, run, RunResults(None))
    [row] = execution_rows(imrt_engine)
    assert json.loads(row["short_context"]) == {"dagId": DAG_ID, "runId": run.run_id}
    assert (
        row["exit_message"]
        == verdict["message"]
        == ("Listing the item bank failed: list_ids did not report why (see its task log)")
    )
    assert (row["status"], row["start_time"], row["end_time"]) == ("STARTED", STARTED_AT.replace(tzinfo=None), None)


def test_open_run_refuses_a_database_without_migrations_before_touching_anything(imrt_engine):
    settings_read = []
    run = RunContext("manual__protocol-old-schema", RunParams())
    with pytest.raises(SchemaNotReady) as refused:
        pipeline.open_run(run, imrt_engine, lambda: settings_read.append(True))
    assert str(refused.value) == (
        f"the imrt database is at schema revision none, this code needs {head_revision()}:"
        " run `python -m imrt_compat.migrate upgrade`"
    )
    assert settings_read == []
    assert sa.inspect(imrt_engine).get_table_names() == []
    assert sa.inspect(imrt_engine).get_sequence_names() == []


# -- a run of the hook events: imrt_webhook_event -------------------------------------------------------------------


def test_a_hook_events_run_plans_the_pushed_projects_writes_no_execution_and_closes_its_events_synced(
    bank, services, imrt_engine
):
    item_bank, projects = bank
    pushed = sorted(p["id"] for p in projects[1:3])
    heads = {
        pid: push_and_record_event(item_bank, imrt_engine, pid, edited_item(item_bank, pid, "pushed"), "push")
        for pid in pushed
    }
    run = RunContext("webhook__2024-05-01T12:30:15.000000+00:00", RunParams(webhook_events=True))

    planned = pipeline.open_run(run, imrt_engine, lambda: (services.settings, services.gitlab.settings))
    assert planned["job_execution_id"] is None
    assert (planned["plan"]["total_ids"], planned["plan"]["to_sync"]) == (2, pushed)
    assert [(e["project_id"], e["status"], e["run_id"], e["attempts"]) for e in event_rows(imrt_engine)] == [
        (pid, "claimed", run.run_id, 1) for pid in pushed
    ]

    verdict = pipeline.close_run(services, run, sync_all(services, planned, run.params))
    assert (verdict["status"], verdict["message"]) == ("COMPLETED", head(2, 2, 0))
    assert execution_rows(imrt_engine) == []
    assert [
        (e["project_id"], e["status"], e["attempts"], e["detail"], e["finished"], e["wait"])
        for e in event_rows(imrt_engine)
    ] == [(pid, "synced", 1, None, True, None) for pid in pushed]
    assert recorded_heads(imrt_engine) == heads


def test_a_backlog_of_hook_events_maps_into_at_most_the_events_bound_and_a_bank_wide_run_into_the_map_bound(
    bank, settings, imrt_engine
):
    """A hook events run maps its items into at most imrt_events_map_bound instances (a backlog in a few big ones);
    a bank-wide run of the same items into imrt_map_bound."""
    item_bank, projects = bank
    prepare_database(imrt_engine)
    for project in projects:
        push_and_record_event(item_bank, imrt_engine, project["id"], edited_item(item_bank, project["id"], "x"), "x")
    sync, gitlab = settings
    bounded = replace(sync, map_bound=ITEMS, events_map_bound=2, batch_size=1)
    events_run = RunContext("webhook__2024-05-01T12:30:45.000000+00:00", RunParams(webhook_events=True))
    planned = pipeline.open_run(events_run, imrt_engine, lambda: (bounded, gitlab))
    assert [len(unit["sync"]) for unit in planned["units"]] == [ITEMS // 2, ITEMS // 2]
    bank_wide = pipeline.open_run(RunContext("manual__bound", RunParams()), imrt_engine, lambda: (bounded, gitlab))
    assert [len(unit["sync"]) for unit in bank_wide["units"]] == [1] * ITEMS


def test_a_failed_item_sends_its_event_back_to_pending_with_a_back_off_and_the_others_are_synced(
    bank, services, imrt_engine
):
    item_bank, projects = bank
    good, broken = projects[0]["id"], projects[3]["id"]
    push_and_record_event(item_bank, imrt_engine, good, edited_item(item_bank, good, "fine"), "fine")
    push_and_record_event(item_bank, imrt_engine, broken, {"item.json": b'{"id": '}, "truncated item.json")
    run = RunContext("webhook__2024-05-01T12:31:00.000000+00:00", RunParams(webhook_events=True))

    planned = pipeline.open_run(run, imrt_engine, lambda: (services.settings, services.gitlab.settings))
    verdict = pipeline.close_run(services, run, sync_all(services, planned, run.params))
    error = f"project {broken}: item.json is not valid JSON: Expecting value at line 1 column 8"
    assert verdict["status"] == "FAILED"
    assert verdict["message"] == f"{head(2, 2, 0)}. Failed item bank ids: {broken}. Errors: {error}"
    assert [
        (e["project_id"], e["status"], e["run_id"], e["attempts"], e["detail"], e["wait"])
        for e in event_rows(imrt_engine)
    ] == [
        (good, "synced", run.run_id, 1, None, None),
        (broken, "pending", None, 1, error, BackOff(RETRY.base_seconds)),
    ]
    assert list(recorded_heads(imrt_engine)) == [good]
    assert EventLog(imrt_engine).claim("webhook__next") == []  # the back-off holds it


def test_settings_that_fail_after_the_claim_cost_the_events_an_attempt(bank, services, imrt_engine):
    item_bank, projects = bank
    pid = projects[0]["id"]
    push_and_record_event(item_bank, imrt_engine, pid, edited_item(item_bank, pid, "pushed"), "push")
    run = RunContext("webhook__2024-05-01T12:32:00.000000+00:00", RunParams(webhook_events=True))

    with pytest.raises(ValueError) as failure:
        pipeline.open_run(run, imrt_engine, broken_settings)
    [claimed] = event_rows(imrt_engine)
    assert (claimed["status"], claimed["run_id"], claimed["attempts"]) == ("claimed", run.run_id, 1)

    results = RunResults(None, listing_error=pipeline.describe_listing_failure(failure.value))
    verdict = pipeline.close_run(services, run, results)
    assert verdict["message"] == f"Listing the item bank failed: ValueError: {SETTINGS_BROKEN}"
    [released] = event_rows(imrt_engine)
    assert (released["status"], released["run_id"], released["attempts"], released["wait"]) == (
        "pending",
        None,
        1,
        BackOff(RETRY.base_seconds),
    )
    assert released["detail"] == f"run {run.run_id} could not plan: ValueError: {SETTINGS_BROKEN}"
    assert execution_rows(imrt_engine) == []


# -- sync_unit: how an item's failure is classified -----------------------------------------------------------------


@pytest.fixture
def synced(bank, services, imrt_engine):
    """The bank after a first full run: every item in IMRT."""
    run = RunContext("manual__protocol-first", RunParams())
    planned = pipeline.open_run(run, imrt_engine, lambda: (services.settings, services.gitlab.settings))
    verdict = pipeline.close_run(services, run, sync_all(services, planned, run.params))
    assert verdict["status"] == "COMPLETED", verdict
    return bank


def units_for(services, project_id: int, params: RunParams):
    plan, units = pipeline.list_ids(services, RunParams(item_ids=(project_id,), dry_run=params.dry_run))
    assert plan["to_sync"] == [project_id]
    return units


def test_a_malformed_item_json_fails_the_item_for_good_naming_the_project_and_the_problem(
    synced, services, imrt_engine
):
    item_bank, projects = synced
    pid = projects[1]["id"]
    before = recorded_heads(imrt_engine)
    item_bank.push_commit(pid, files={"item.json": b'{"stem": "What is 2 + 2?",}'}, message="trailing comma")
    [unit] = units_for(services, pid, RunParams())

    outcome = pipeline.sync_unit(services, unit, RunParams())
    assert outcome == {
        "label": unit["label"],
        "events": {},
        "failed": {
            str(pid): f"project {pid}: item.json is not valid JSON: "
            "Expecting property name enclosed in double quotes at line 1 column 27"
        },
        "transient": False,
    }
    assert recorded_heads(imrt_engine) == before


def test_gitlab_answering_500_for_the_project_fails_the_item_as_transient(synced, server, services, imrt_engine):
    item_bank, projects = synced
    pid = projects[2]["id"]
    before = recorded_heads(imrt_engine)
    item_bank.push_commit(pid, files=edited_item(item_bank, pid, "edited"), message="edit")
    [unit] = units_for(services, pid, RunParams())
    server.faults.add(
        "GET /api/v4/projects/:id",
        "status",
        status=500,
        body={"message": "500 Internal Server Error"},
        path_regex=rf"/projects/{pid}$",
    )

    outcome = pipeline.sync_unit(services, unit, RunParams())
    assert outcome["failed"] == {
        str(pid): f"project {pid}: GitLabError: GitLab GET /api/v4/projects/{pid} answered 500: "
        "500 Internal Server Error"
    }
    assert (outcome["events"], outcome["transient"]) == ({}, True)
    assert recorded_heads(imrt_engine) == before


def test_a_dry_run_writes_nothing(bank, services, imrt_engine):
    _, projects = bank
    params = RunParams(dry_run=True)
    plan, units = pipeline.list_ids(services, params)
    assert plan["to_sync"] == sorted(p["id"] for p in projects)
    assert plan["verify_webhooks"] == plan["to_sync"]  # the sweep: no hook recorded yet, every one to be checked

    outcomes = [pipeline.sync_unit(services, unit, params) for unit in units]
    hooks = pipeline.dispatch_webhooks(services, plan, params)
    assert outcomes == [{"label": u["label"], "events": {}, "failed": {}, "transient": False} for u in units]
    assert (hooks["created"], hooks["failed"]) == ([], {})
    assert recorded_heads(imrt_engine) == {}
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM imrt_project_hook")) == 0
    assert all(services.gitlab.hooks(p["id"]) == [] for p in projects)


def test_the_event_of_a_project_the_listing_could_not_read_is_not_closed_synced(bank, server, services, imrt_engine):
    item_bank, projects = bank
    pid = projects[0]["id"]
    push_and_record_event(item_bank, imrt_engine, pid, edited_item(item_bank, pid, "pushed"), "push")
    server.faults.add("GET /api/v4/projects/:id/hooks", "status", status=500, path_regex=rf"/projects/{pid}/hooks")
    run = RunContext("webhook__2024-05-01T12:33:00.000000+00:00", RunParams(webhook_events=True))

    planned = pipeline.open_run(run, imrt_engine, lambda: (services.settings, services.gitlab.settings))
    assert list(planned["plan"]["failed"]) == [str(pid)] and planned["plan"]["to_sync"] == []
    verdict = pipeline.close_run(services, run, sync_all(services, planned, run.params))
    assert verdict["status"] == "FAILED" and recorded_heads(imrt_engine) == {}
    [event] = event_rows(imrt_engine)
    assert (event["status"], event["attempts"], event["wait"]) == ("pending", 1, BackOff(RETRY.base_seconds))
