"""The GitLab hook receiver through the real API server, scheduler and DAG processor (issue 6).

Requests carry GitLab's documented payload shapes (tests/fixtures/gitlab_webhooks) filled in with the item bank's
projects; every test reads ``imrt_webhook_event`` and the item tables back with SQL.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import wait_until
from stack_fixtures import RealStack, unpause_and_finish_scheduled_run

from imrt_sync import DAG_ID, EVENTS_DAG_ID
from imrt_sync.store import ItemStore
from itembank_server import ItemBank, make_item_document

pytestmark = pytest.mark.e2e

GROUP = "iat-hooks"
TOKEN = "glpat-hooks-token"
SECRET = "whsec-hooks-" + uuid.uuid4().hex
PREVIOUS_SECRET = "whsec-hooks-previous-" + uuid.uuid4().hex  # a rotation in progress
BANK_SIZE = 6
HOOK_URL = "https://imrt.example.org/webHook"
PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab_webhooks"
STACK = RealStack(
    name="hooks",
    group=GROUP,
    token=TOKEN,
    bank_size=BANK_SIZE,
    seed=11,
    webhook_url=HOOK_URL,
    webhook_secret=SECRET,
    extra_env={
        "AIRFLOW__IMRT__WEBHOOK_SWEEP_SECONDS": "3",
        "AIRFLOW_VAR_IMRT_WEBHOOK_PREVIOUS_SECRET": PREVIOUS_SECRET,
    },
)


@pytest.fixture(scope="module")
def synced(stack):
    """The first full sync, which also creates the project hooks."""
    return unpause_and_finish_scheduled_run(stack, timeout=300)


def runs(stack) -> list[dict]:
    """The runs of both DAGs."""
    return stack.dag_runs(DAG_ID) + stack.dag_runs(EVENTS_DAG_ID)


def webhook_runs(stack) -> list[dict]:
    """The runs of the hook events DAG."""
    return stack.dag_runs(EVENTS_DAG_ID, order_by="run_after")


def push_payload(project: dict, sha: str, ref: str | None = None) -> dict:
    document = json.loads((PAYLOADS / "push.json").read_text())
    namespaced = project["path_with_namespace"]
    document.update(
        project_id=project["id"],
        ref=ref or f"refs/heads/{project['default_branch']}",
        after=sha,
        checkout_sha=sha,
        project={
            **document["project"],
            "id": project["id"],
            "name": project["name"],
            "path_with_namespace": namespaced,
            "default_branch": project["default_branch"],
        },
    )
    return document


def system_payload(kind: str, project: dict) -> dict:
    document = json.loads((PAYLOADS / f"{kind}.json").read_text())
    document.update(
        project_id=project["id"],
        path=project["path"],
        name=project["name"],
        path_with_namespace=project["path_with_namespace"],
    )
    return document


def send(
    stack, document, *, event: str = "Push Hook", token: str | None = SECRET, path: str = "/webHook", **kwargs
) -> requests.Response:
    headers = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": str(uuid.uuid4())}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    if document is not None:
        kwargs["json"] = document
    return requests.post(stack.url + path, headers=headers, timeout=30, **kwargs)


def commit(bank: ItemBank, project: dict, note: str) -> str:
    document = json.loads(bank.read_file(project["id"], "item.json"))
    document["workflow"] = {"workflowStatusCode": note}
    return bank.push_commit(project["id"], files={"item.json": document}, message=note, author_name="Hook H")


def events(imrt, **where) -> list[dict]:
    clause = " AND ".join(f"{column} = :{column}" for column in where) or "TRUE"
    with imrt.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text(f"SELECT * FROM imrt_webhook_event WHERE {clause} ORDER BY id"), where
            ).mappings()
        ]


def event_count(imrt) -> int:
    with imrt.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM imrt_webhook_event"))


def head_in_imrt(imrt, project_id: int) -> str | None:
    with imrt.connect() as conn:
        return conn.scalar(sa.text("SELECT current_commit_hash FROM item_git WHERE project_id = :p"), {"p": project_id})


def wait_closed(imrt, ids: list[int], timeout: float = 300) -> list[dict]:
    def closed():
        rows = [e for e in events(imrt) if e["id"] in ids]
        return rows if rows and all(e["status"] in ("synced", "failed") for e in rows) else None

    return wait_until(closed, timeout, f"hook events {ids} to be synced")


def test_a_push_without_the_right_token_is_refused_and_leaves_nothing(stack, synced, item_bank, imrt):
    bank, projects, _ = item_bank
    document = push_payload(projects[0], "f" * 40)
    before_runs, before_events = len(runs(stack)), event_count(imrt)
    for token in (None, "", "wrong-" + SECRET, SECRET[:-1], SECRET + " ", PREVIOUS_SECRET + "x"):
        response = send(stack, document, token=token)
        assert response.status_code == 401, (token, response.text)
        assert SECRET not in response.text and PREVIOUS_SECRET not in response.text
    assert event_count(imrt) == before_events
    assert len(runs(stack)) == before_runs


def test_malformed_unknown_and_oversized_requests_get_a_4xx_and_change_nothing(stack, synced, item_bank, imrt):
    _, projects, _ = item_bank
    before_runs, before_events = len(runs(stack)), event_count(imrt)
    checks = [
        (send(stack, None, data=b"{not json"), 400),
        (send(stack, push_payload(projects[0], "a" * 40), event="Issue Hook"), 400),
        (send(stack, {"event_name": "pipeline_bananas"}, event="System Hook"), 400),
        (send(stack, {**push_payload(projects[0], "a" * 40), "project_id": "1; DROP TABLE item"}), 400),
        (send(stack, None, data=b"x" * (3 * 1024 * 1024)), 413),
        (send(stack, None, data=b"[" * 200_000 + b"]" * 200_000), 400),  # RecursionError in json.loads
        (send(stack, None, data=b'{"project_id": ' + b"7" * 10_000 + b"}"), 400),  # past int's digit limit
        (requests.get(stack.url + "/webHook/", headers={"X-Gitlab-Token": SECRET}, timeout=30), 405),
    ]
    for response, status in checks:
        assert response.status_code == status, response.text
        assert "Traceback" not in response.text
    assert event_count(imrt) == before_events
    assert len(runs(stack)) == before_runs


def test_pushes_to_other_branches_and_projects_outside_the_group_are_recorded_as_ignored(
    stack, synced, item_bank, imrt
):
    bank, projects, _ = item_bank
    project = projects[1]
    sha = bank.push_commit(project["id"], files={"notes.txt": "draft"}, branch="draft-branch")
    before_runs = len(runs(stack))
    other_branch = send(stack, push_payload(project, sha, ref="refs/heads/draft-branch"))
    outside = send(
        stack,
        {
            **push_payload(project, sha),
            "project": {**push_payload(project, sha)["project"], "path_with_namespace": "elsewhere/x"},
        },
    )
    for response in (other_branch, outside):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ignored"
    recorded = events(imrt, status="ignored")
    assert [e["id"] for e in recorded][-2:] == [other_branch.json()["event"], outside.json()["event"]]
    assert "not to the default branch" in recorded[-2]["detail"]
    assert "not in the group" in recorded[-1]["detail"]
    assert all(e["run_id"] is None for e in recorded)
    assert len(runs(stack)) == before_runs


def test_a_push_to_the_default_branch_syncs_the_item_and_records_the_run(stack, synced, item_bank, imrt):
    bank, projects, _ = item_bank
    project = projects[2]
    sha = commit(bank, project, "Approved")
    response = send(stack, push_payload(project, sha))
    assert response.status_code == 200, response.text
    assert response.elapsed < timedelta(seconds=10)  # GitLab times a hook out after 10 s
    assert response.json()["status"] == "pending"
    [event] = wait_closed(imrt, [response.json()["event"]])
    assert (event["status"], event["project_id"], event["commit_sha"]) == ("synced", project["id"], sha)
    assert event["received_at"] <= event["claimed_at"] <= event["finished_at"]
    assert head_in_imrt(imrt, project["id"]) == sha
    run_id = event["run_id"]
    assert run_id.startswith("webhook__")
    assert stack.wait_for_run(EVENTS_DAG_ID, run_id, timeout=120) == "success"
    labels = [ti["rendered_map_index"] for ti in stack.task_instances(EVENTS_DAG_ID, run_id) if ti["task_id"] == "sync"]
    assert labels == [project["path"]]
    with imrt.connect() as conn:  # the real-time path is not the Spring Batch job
        assert (
            conn.scalar(
                sa.text("SELECT count(*) FROM batch_job_execution_context WHERE short_context LIKE :r"),
                {"r": f"%{run_id}%"},
            )
            == 0
        )


def test_a_burst_of_50_pushes_to_5_items_costs_a_few_runs_and_loses_nothing(stack, synced, item_bank, imrt):
    bank, projects, _ = item_bank
    targets = projects[:5]
    last_sha, event_ids = {}, []
    for round_number in range(10):
        for project in targets:
            sha = commit(bank, project, f"Review {round_number}")
            response = send(stack, push_payload(project, sha))
            assert response.status_code == 200, response.text
            last_sha[project["id"]] = sha
            event_ids.append(response.json()["event"])
    closed = wait_closed(imrt, event_ids)
    assert len(closed) == 50 and {e["status"] for e in closed} == {"synced"}
    for project in targets:
        assert head_in_imrt(imrt, project["id"]) == last_sha[project["id"]]
    used = {e["run_id"] for e in closed}
    # Coalesced: a queued run absorbs every push that arrives before it starts (typically 2 runs; the bound leaves
    # room for a slow machine where the burst outlasts a whole run).
    assert 1 <= len(used) <= 5, used
    assert [stack.wait_for_run(EVENTS_DAG_ID, run_id, timeout=120) for run_id in sorted(used)] == ["success"] * len(
        used
    )
    with imrt.connect() as conn:  # one item_log row per commit, none twice
        assert (
            conn.scalar(
                sa.text(
                    "SELECT count(*) FROM (SELECT item_key, commit_hash FROM item_log GROUP BY 1, 2 HAVING count(*) > 1) d"
                )
            )
            == 0
        )


def test_system_hooks_create_and_destroy_an_item(stack, synced, item_bank, imrt):
    bank, _, _ = item_bank
    document = make_item_document("209001", "mc", subject="Math", grade="5")
    project = bank.create_project(GROUP, "209001", {"item.json": document})
    created = send(stack, system_payload("project_create", project), event="System Hook", path="/systemHook")
    assert created.status_code == 200, created.text
    [event] = wait_closed(imrt, [created.json()["event"]])
    assert event["status"] == "synced"
    assert head_in_imrt(imrt, project["id"]) == bank.head(project["id"])
    assert [(h["url"], h["token"], h["push_events"]) for h in bank.hooks(project["id"])] == [(HOOK_URL, SECRET, True)]

    bank.delete_project(project["id"])
    destroyed = send(stack, system_payload("project_destroy", project), event="System Hook", path="/systemHook")
    assert destroyed.status_code == 200, destroyed.text
    [event] = wait_closed(imrt, [destroyed.json()["event"]])
    assert event["status"] == "synced"
    with imrt.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item WHERE id = 209001")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM item_git WHERE project_id = :p"), {"p": project["id"]}) == 0


def test_events_recorded_before_an_api_server_restart_are_synced_after_it(stack, synced, item_bank, imrt):
    bank, projects, _ = item_bank
    wait_until(
        lambda: not [r for r in webhook_runs(stack) if r["state"] in ("queued", "running")],
        120,
        "earlier hook event runs to end",
    )  # so that only the restarted server can start the next one
    stack.api("PATCH", f"/api/v2/dags/{EVENTS_DAG_ID}", json={"is_paused": True}).raise_for_status()
    targets = projects[3:6]
    last_sha, event_ids = {}, []
    for project in targets:
        last_sha[project["id"]] = sha = commit(bank, project, "Before restart")
        response = send(stack, push_payload(project, sha))
        assert response.status_code == 200, response.text
        event_ids.append(response.json()["event"])
    # Paused: recorded, no run can start for them.
    assert {e["status"] for e in events(imrt) if e["id"] in event_ids} == {"pending"}

    runs_before_restart = {r["dag_run_id"] for r in webhook_runs(stack)}
    stack.kill("api-server")
    stack.restart("api-server")
    stack.unpause(EVENTS_DAG_ID)
    closed = wait_closed(imrt, event_ids)  # nobody sends anything: the restarted server's sweeper starts the run
    assert {e["status"] for e in closed} == {"synced"}
    assert {e["run_id"] for e in closed}.isdisjoint(runs_before_restart)
    for project in targets:
        assert head_in_imrt(imrt, project["id"]) == last_sha[project["id"]]


def test_the_previous_secret_is_accepted_during_a_rotation(stack, synced, item_bank, imrt):
    _, projects, _ = item_bank
    project = projects[0]
    response = send(stack, push_payload(project, "e" * 40, ref="refs/heads/rotation-check"), token=PREVIOUS_SECRET)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"  # another branch: recorded, no run


def test_control_characters_in_path_and_ref_are_replaced_before_they_are_stored(stack, synced, item_bank, imrt):
    _, projects, _ = item_bank
    document = push_payload(projects[0], "e" * 40, ref="refs/heads/x\r\nINFO forged log line\x1b[0m")
    document["project"] = {**document["project"], "path_with_namespace": "else\x00where/\x9bx\x7f"}
    response = send(stack, document)
    assert response.status_code == 200, response.text
    [event] = events(imrt, id=response.json()["event"])
    assert event["ref"] == "refs/heads/x\ufffd\ufffdINFO forged log line\ufffd[0m"
    assert event["project_path"] == "else\ufffdwhere/\ufffdx\ufffd"
    assert event["status"] == "ignored" and "\n" not in event["detail"] and "\x00" not in event["detail"]
    with imrt.connect() as conn:
        assert conn.scalar(sa.text("SELECT sum(events) FROM imrt_webhook_ignored_count")) >= 1


def test_a_push_is_synced_while_a_bank_wide_run_is_in_progress(stack, synced, item_bank, imrt):
    """Pushes never wait behind a bank-wide run: a full run is held at one item (the test holds that item's lock, as
    a slow repository would); a push to another item reaches its row while that run is still running, and POST /sync
    answers 409 meanwhile (one bank-wide run at a time). Released, the full run ends and both items are at their
    repositories' heads."""
    bank, projects, _ = item_bank
    held, pushed = projects[4], projects[5]
    held_sha = commit(bank, held, "Held by a slow repository")
    with ItemStore(imrt).item_lock(held["id"]):
        full_run = stack.trigger(DAG_ID, conf={"mode": "full"})
        wait_until(
            lambda: any(
                ti["state"] == "running" and ti["rendered_map_index"] == held["path"]
                for ti in stack.task_instances(DAG_ID, full_run)
                if ti["task_id"] == "sync"
            ),
            180,
            "the full run's sync of the held item",
        )
        sha = commit(bank, pushed, "Pushed during a full run")
        response = send(stack, push_payload(pushed, sha))
        assert response.status_code == 200, response.text
        [event] = wait_closed(imrt, [response.json()["event"]], timeout=60)
        assert (event["status"], head_in_imrt(imrt, pushed["id"])) == ("synced", sha)
        assert stack.dag_run(DAG_ID, full_run)["state"] == "running"
        legacy = stack.api("POST", "/sync")
        assert legacy.status_code == 409, legacy.text
    assert stack.wait_for_run(DAG_ID, full_run, timeout=300) == "success"
    assert stack.wait_for_run(EVENTS_DAG_ID, event["run_id"], timeout=120) == "success"
    assert (head_in_imrt(imrt, held["id"]), head_in_imrt(imrt, pushed["id"])) == (held_sha, sha)
