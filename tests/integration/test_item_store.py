"""Writing and deleting items in a real PostgreSQL database under the legacy project_lock protocol."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from imrt_sync.errors import ItemValidationError
from imrt_sync.gitrepo import Commit
from imrt_sync.mapping import map_item
from imrt_sync.schema import ensure_schema
from imrt_sync.store import ItemStore, ProjectLockedError, Revision

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def document(item_id: str, item_type: str = "mc", stimulus: str | None = None, status: str = "Draft") -> dict:
    doc = {
        "id": item_id,
        "type": item_type,
        "core": {"stimulusId": stimulus, "metadata": {"subject": "Math", "grade": "5", "depthOfKnowledge": "2"}},
        "workflow": {"workflowStatusCode": status},
        "asl": {"attachments": [{"fileName": f"{item_id}_ASL.MP4", "uploadedDate": "2018-05-25T20:57:45.000Z"}]},
    }
    if item_type == "stim":
        doc["core"].pop("stimulusId")
    return doc


def revision(project_id: int, doc: dict, *shas: str, author: str = "Ann Author") -> Revision:
    commits = tuple(Commit(sha, T0 + timedelta(hours=i), author) for i, sha in enumerate(shas))
    return Revision(project_id, "iat-dev", "main", commits[-1], commits, map_item(doc, project_id))


@pytest.fixture
def store(imrt_engine):
    ensure_schema(imrt_engine)
    return ItemStore(imrt_engine, lock_wait_seconds=0.5)


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.scalar(sa.text(sql), params)


def test_create_update_and_unchanged(store, imrt_engine):
    created = store.save(revision(11, document("205030"), "c1", "c2"))
    assert created.kind == "ITEM_CREATED" and created.item_id == 205030 and created.project_id == 11
    assert created.log_line() == f"ITEM EVENT type: ITEM_CREATED key: {created.key} itemId: 205030 projectId: 11"
    assert scalar(imrt_engine, "SELECT item_created_by FROM item") == "Ann Author"
    assert scalar(imrt_engine, "SELECT count(*) FROM item_log") == 2
    assert scalar(imrt_engine, "SELECT current_commit_hash FROM item_git WHERE project_id = 11") == "c2"
    assert scalar(imrt_engine, "SELECT count(*) FROM project_lock") == 0

    assert store.save(revision(11, document("205030"), "c1", "c2")) is None

    updated = store.save(revision(11, document("205030", status="Approved"), "c3", author="Rob Reviewer"))
    assert updated.kind == "ITEM_UPDATED" and updated.key == created.key
    assert scalar(imrt_engine, "SELECT workflow_status FROM item") == "Approved"
    assert scalar(imrt_engine, "SELECT updated_by FROM item") == "Rob Reviewer"
    assert scalar(imrt_engine, "SELECT item_created_by FROM item") == "Ann Author"
    assert scalar(imrt_engine, "SELECT workflow_status_set_at FROM item") == T0
    assert scalar(imrt_engine, "SELECT count(*) FROM item_log") == 3
    assert scalar(imrt_engine, "SELECT count(*) FROM item_attachment") == 1


def test_full_resync_rewrites_without_duplicating_history(store, imrt_engine):
    store.save(revision(11, document("205030"), "c1", "c2"))
    again = store.save(revision(11, document("205030"), "c1", "c2"), full=True)
    assert again.kind == "ITEM_UPDATED"
    assert scalar(imrt_engine, "SELECT count(*) FROM item_log") == 2


def test_stimulus_links_whichever_is_synced_first(store, imrt_engine):
    store.save(revision(1, document("300001", stimulus="300000"), "a1"))
    assert scalar(imrt_engine, "SELECT count(*) FROM stim_link") == 0
    stim = store.save(revision(2, document("300000", item_type="stim"), "s1"))
    assert scalar(imrt_engine, "SELECT item_key_stim FROM stim_link") == stim.key
    store.save(revision(3, document("300002", stimulus="300000"), "b1"))
    assert scalar(imrt_engine, "SELECT count(*) FROM stim_link WHERE item_key_stim = :k", k=stim.key) == 2
    store.save(revision(3, document("300002"), "b2"))
    assert scalar(imrt_engine, "SELECT count(*) FROM stim_link") == 1


def test_delete_removes_every_row_of_the_item(store, imrt_engine):
    stim = store.save(revision(2, document("300000", item_type="stim"), "s1"))
    store.save(revision(1, document("300001", stimulus="300000"), "a1"))
    deleted = store.delete(2)
    assert deleted.kind == "ITEM_DELETED" and deleted.key == stim.key and deleted.item_id == 300000
    assert scalar(imrt_engine, "SELECT count(*) FROM item") == 1
    assert scalar(imrt_engine, "SELECT count(*) FROM stim_link") == 0
    assert scalar(imrt_engine, "SELECT count(*) FROM item_git") == 1
    assert store.delete(2) is None


def test_the_same_item_id_from_two_projects_is_a_clear_item_error(store, imrt_engine):
    store.save(revision(1, document("205030"), "a1"))
    with pytest.raises(ItemValidationError, match="item id 205030 is already synced from project 1"):
        store.save(revision(2, document("205030"), "b1"))
    assert scalar(imrt_engine, "SELECT count(*) FROM item_git") == 1


def test_a_held_lock_blocks_the_write_and_a_stale_one_is_taken_over(store, imrt_engine):
    with imrt_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO project_lock VALUES (11, now(), now(), now(), 'internal')"
        ))
    with pytest.raises(ProjectLockedError, match="project 11 is locked"):
        store.save(revision(11, document("205030"), "c1"))
    assert scalar(imrt_engine, "SELECT count(*) FROM item") == 0

    with imrt_engine.begin() as conn:
        conn.execute(sa.text("UPDATE project_lock SET locked_at = now() - interval '61 seconds'"))
    assert store.save(revision(11, document("205030"), "c1")).kind == "ITEM_CREATED"
    assert scalar(imrt_engine, "SELECT count(*) FROM project_lock") == 0


def test_a_failed_write_leaves_nothing_half_written(store, imrt_engine):
    store.save(revision(11, document("205030"), "c1"))
    before = scalar(imrt_engine, "SELECT item_json::text FROM item")
    good = revision(11, document("205030", status="Approved"), "c2")
    # A form row the database rejects makes the transaction fail after the item row was updated.
    bad_form = {"assessment_type": "x", "form_id": "f", "form_type": "t", "exposures": "not a number"}
    broken = dataclasses.replace(good, item=dataclasses.replace(good.item, forms=(bad_form,)))
    with pytest.raises(sa.exc.DBAPIError):
        store.save(broken)
    assert scalar(imrt_engine, "SELECT item_json::text FROM item") == before
    assert scalar(imrt_engine, "SELECT current_commit_hash FROM item_git") == "c1"
    assert scalar(imrt_engine, "SELECT count(*) FROM item_log") == 1
    assert scalar(imrt_engine, "SELECT count(*) FROM project_lock") == 0
    assert store.save(good).kind == "ITEM_UPDATED"


def test_an_item_and_its_stimulus_written_concurrently_are_linked(store, imrt_engine):
    """Both transactions insert their item before either reaches the link step (held there by the stimulus lock,
    taken here first); whichever links first cannot see the other's row, so the second must link."""
    from concurrent.futures import ThreadPoolExecutor

    from imrt_sync.store import STIMULUS_LOCK_SPACE

    with imrt_engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:space, 2000)"), {"space": STIMULUS_LOCK_SPACE})
        with ThreadPoolExecutor(max_workers=2) as pool:
            item = pool.submit(store.save, revision(21, document("1001", stimulus="2000"), "i1"))
            stimulus = pool.submit(store.save, revision(22, document("2000", item_type="stim"), "s1"))
            wait_for_lock_waiters(imrt_engine, 2)
            holder.execute(sa.text("SELECT pg_advisory_unlock(:space, 2000)"), {"space": STIMULUS_LOCK_SPACE})
            holder.commit()
            assert {item.result().kind, stimulus.result().kind} == {"ITEM_CREATED"}
    assert scalar(
        imrt_engine,
        "SELECT s.id FROM stim_link l JOIN item i ON i.key = l.item_key JOIN item s ON s.key = l.item_key_stim "
        "WHERE i.id = 1001",
    ) == 2000


def wait_for_lock_waiters(engine, count: int, timeout: float = 20.0) -> None:
    """Poll pg_locks until ``count`` sessions wait for an advisory lock."""
    import time

    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while scalar(engine, query) < count:
        assert time.monotonic() < deadline, f"fewer than {count} writers reached the stimulus lock"
        time.sleep(0.05)
