"""Items still being created (docs/how-a-run-works.md, "Items still being created"), through the real scheduler and
REST API.

An item whose ``item.json`` is only on a ``create_<user>`` branch is synced from that branch with
``is_being_created`` true; a push to that branch is picked up by the next run (planning reads the branch's head from
the ref advertisement); once ``item.json`` is published to the default branch the item is a normal one; a project
with no ``item.json`` anywhere fails with the legacy message; a deleted project's item is deleted.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from stack_fixtures import RealStack, unpause_and_finish_scheduled_run

from imrt_sync import DAG_ID
from itembank_server import make_item_document

pytestmark = pytest.mark.e2e

GROUP = "iat-creating"
BANK_SIZE = 3
RUN_TIMEOUT = 400
STACK = RealStack(
    name="creating",
    group=GROUP,
    token="glpat-creating-e2e-token",
    bank_size=BANK_SIZE,
    seed=13,
    webhook_secret="creating-e2e-webhook-secret",
)


def query(imrt, sql: str, **params) -> list[tuple]:
    with imrt.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def item_state(imrt, project_id: int) -> tuple | None:
    """(is_being_created, ingest_source, current_commit_hash, workflow_status, key) of the project's item."""
    rows = query(
        imrt,
        "SELECT i.is_being_created, g.ingest_source, g.current_commit_hash, i.workflow_status, i.key"
        " FROM item_git g JOIN item i ON i.key = g.item_key WHERE g.project_id = :pid",
        pid=project_id,
    )
    return rows[0] if rows else None


def logged_sources(imrt, key: int) -> dict[str, str]:
    return dict(query(imrt, "SELECT commit_hash, ingest_source FROM item_log WHERE item_key = :key", key=key))


def run(stack) -> tuple[str, str, list[str]]:
    """A REST-triggered incremental run, waited for: its id, final state and the labels of its sync instances."""
    run_id = stack.trigger(DAG_ID, conf={"mode": "incremental"})
    state = stack.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    synced = sorted(ti["rendered_map_index"] for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "sync")
    return run_id, state, synced


def exit_message(imrt, run_id: str) -> tuple[str, str]:
    return query(
        imrt,
        "SELECT e.exit_code, e.exit_message FROM batch_job_execution e"
        " JOIN batch_job_execution_context c USING (job_execution_id) WHERE c.short_context LIKE :run",
        run=f'%"{run_id}"%',
    )[0]


def document(item_id: str, status: str) -> dict:
    doc = make_item_document(item_id, "mc")
    doc["workflow"] = {**doc.get("workflow", {}), "workflowStatusCode": status}
    return doc


def test_an_item_from_creation_on_its_create_branch_to_publication_and_deletion(stack, item_bank, imrt):
    bank, _, _ = item_bank
    unpause_and_finish_scheduled_run(stack, timeout=RUN_TIMEOUT)
    assert query(imrt, "SELECT count(*) FROM item WHERE is_being_created") == [(0,)]

    # Created: item.json only on create_jdoe (the default branch has a README).
    jdoe = bank.create_project(GROUP, "300001", files={"README.md": "# Item 300001\n"}, author_name="Jo Doe")
    created_sha = bank.push_commit(
        jdoe["id"],
        files={"item.json": document("300001", "Draft")},
        branch="create_jdoe",
        message="Create item",
        author_name="Jo Doe",
    )
    # Two create branches: the first by name is read.
    both = bank.create_project(GROUP, "300003", files={"README.md": "# Item 300003\n"}, author_name="Zed Zee")
    bank.push_commit(both["id"], files={"item.json": document("300003", "Zed")}, branch="create_zed")
    bob_sha = bank.push_commit(both["id"], files={"item.json": document("300003", "Bob")}, branch="create_bob")
    run_id, state, synced = run(stack)
    assert state == "success", exit_message(imrt, run_id)
    assert synced == ["300001", "300003"]
    is_being_created, source, commit, status, key = item_state(imrt, jdoe["id"])
    assert (is_being_created, source, commit, status) == (True, "create_jdoe", created_sha, "Draft")
    assert logged_sources(imrt, key) == {created_sha: "create_jdoe"}
    assert item_state(imrt, both["id"])[:4] == (True, "create_bob", bob_sha, "Bob")

    # A push to the create branch: the default branch does not move, the next run still syncs it.
    review_sha = bank.push_commit(
        jdoe["id"],
        files={"item.json": document("300001", "InternalReview")},
        branch="create_jdoe",
        message="Review",
        author_name="Rae Reviewer",
    )
    run_id, state, synced = run(stack)
    assert state == "success", exit_message(imrt, run_id)
    assert synced == ["300001"]
    assert item_state(imrt, jdoe["id"]) == (True, "create_jdoe", review_sha, "InternalReview", key)
    assert query(imrt, "SELECT updated_by FROM item WHERE key = :key", key=key) == [("Rae Reviewer",)]

    # Published: item.json on the default branch; the item is a normal one, same key, its history continued.
    published_sha = bank.push_commit(
        jdoe["id"], files={"item.json": document("300001", "Published")}, message="Publish item", author_name="Jo Doe"
    )
    run_id, state, synced = run(stack)
    assert state == "success", exit_message(imrt, run_id)
    assert synced == ["300001"]
    assert item_state(imrt, jdoe["id"]) == (False, jdoe["default_branch"], published_sha, "Published", key)
    assert logged_sources(imrt, key) == {
        created_sha: "create_jdoe",
        review_sha: "create_jdoe",
        published_sha: jdoe["default_branch"],
    }
    assert query(imrt, "SELECT source_head_sha FROM imrt_project_head WHERE project_id = :p", p=jdoe["id"]) == [(None,)]

    # No item.json anywhere: the legacy error, and the run says so.
    nowhere = bank.create_project(GROUP, "300002", files={"README.md": "# Item 300002\n"})
    run_id, state, synced = run(stack)
    assert state == "failed"
    assert synced == ["300002"]
    code, message = exit_message(imrt, run_id)
    assert code == "FAILED"
    assert f"project {nowhere['id']}: Unable to find create_<user> branch for itemBankId {nowhere['id']}" in message
    assert item_state(imrt, nowhere["id"]) is None

    # Deleted: the item still being created goes like any other (and the failing project with it).
    bank.delete_project(both["id"])
    bank.delete_project(nowhere["id"])
    run_id, state, synced = run(stack)
    assert state == "success", exit_message(imrt, run_id)
    assert synced == ["300003"]  # one unit deletes the item, labelled with its item id
    assert item_state(imrt, both["id"]) is None
    assert query(imrt, "SELECT count(*) FROM item WHERE id = 300003") == [(0,)]
    assert query(imrt, "SELECT count(*) FROM item") == [(BANK_SIZE + 1,)]
