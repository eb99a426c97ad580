"""Writing and deleting items in a real PostgreSQL database under the legacy project_lock protocol."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from imrt_sync.errors import ItemValidationError
from imrt_sync.gitrepo import Commit
from imrt_sync.mapping import map_item
from imrt_sync.schema_migrations import prepare_database
from imrt_sync.store import BeingCreated, ItemStore, ProjectLockedError, Revision

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


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


def revision(
    project_id: int,
    doc: dict,
    *shas: str,
    author: str = "Ann Author",
    statuses: tuple[str | None, ...] | None = None,
    incremental: bool = False,
    head: Commit | None = None,
) -> Revision:
    """A sync of ``item.json`` commits ``shas`` (an hour apart from T0), by default all with ``doc``'s status."""
    commits = tuple(Commit(sha, T0 + timedelta(hours=i), author) for i, sha in enumerate(shas))
    statuses = statuses or (doc["workflow"]["workflowStatusCode"],) * len(commits)
    return Revision(
        project_id, "iat-dev", "main", head or commits[-1], commits, map_item(doc, project_id), statuses, incremental
    )


@pytest.fixture
def store(imrt_engine):
    prepare_database(imrt_engine)
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

    updated = store.save(
        revision(11, document("205030", status="Approved"), "c3", author="Rob Reviewer", incremental=True)
    )
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
        conn.execute(sa.text("INSERT INTO project_lock VALUES (11, now(), now(), now(), 'internal')"))
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
    assert (
        scalar(
            imrt_engine,
            "SELECT s.id FROM stim_link l JOIN item i ON i.key = l.item_key JOIN item s ON s.key = l.item_key_stim "
            "WHERE i.id = 1001",
        )
        == 2000
    )


def wait_for_lock_waiters(engine, count: int, timeout: float = 20.0) -> None:
    """Poll pg_locks until ``count`` sessions wait for an advisory lock."""
    import time

    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while scalar(engine, query) < count:
        assert time.monotonic() < deadline, f"fewer than {count} writers reached the stimulus lock"
        time.sleep(0.05)


def test_item_git_records_the_last_item_json_commit_not_the_head(store, imrt_engine):
    readme_commit = Commit("h3", T0 + timedelta(hours=5), "Rae Readme")
    store.save(revision(31, document("310000"), "c1", "c2", author="Ann Author", head=readme_commit))
    row = "SELECT current_commit_hash, current_commit_date, updated_by FROM item_git WHERE project_id = 31"
    with imrt_engine.connect() as conn:
        assert tuple(conn.execute(sa.text(row)).one()) == ("c2", T0 + timedelta(hours=1), "Ann Author")
    assert scalar(imrt_engine, "SELECT updated_by FROM item") == "Ann Author"
    assert scalar(imrt_engine, "SELECT head_sha FROM imrt_project_head WHERE project_id = 31") == "h3"
    assert store.recorded_heads([31]) == {31: "h3"} and store.recorded_commit(31) == "c2"


def test_a_push_that_does_not_touch_item_json_writes_no_legacy_row(store, imrt_engine):
    from devstack import imrt_snapshot

    store.save(revision(32, document("320000"), "c1"))
    before = imrt_snapshot.take(imrt_engine)
    readme_commit = Commit("h2", T0 + timedelta(days=1), "Rae Readme")
    assert store.save(Revision(32, "iat-dev", "main", readme_commit, (), None, (), True)) is None
    assert imrt_snapshot.take(imrt_engine) == before
    assert store.recorded_heads([32]) == {32: "h2"}


def test_workflow_status_set_at_is_the_commit_that_changed_the_status(store, imrt_engine):
    statuses = ("Draft", "Approved", "Approved")
    store.save(revision(33, document("330000", status="Approved"), "c1", "c2", "c3", statuses=statuses))
    assert scalar(imrt_engine, "SELECT workflow_status_set_at FROM item") == T0 + timedelta(hours=1)
    assert scalar(imrt_engine, "SELECT item_created_at FROM item") == T0


@pytest.mark.parametrize("split", [1, 2], ids=["after the first commit", "after the second commit"])
def test_workflow_status_set_at_does_not_depend_on_how_the_commits_were_synced(store, imrt_engine, split):
    statuses = ("Draft", "Approved", "Approved")
    commits = tuple(Commit(f"c{i}", T0 + timedelta(hours=i), "Ann Author") for i in range(3))
    doc_at = {"Draft": document("340000", status="Draft"), "Approved": document("340000", status="Approved")}
    for part, incremental in ((slice(0, split), False), (slice(split, 3), True)):
        chunk = commits[part]
        status = statuses[part]
        store.save(
            Revision(34, "iat-dev", "main", chunk[-1], chunk, map_item(doc_at[status[-1]], 34), status, incremental)
        )
    assert scalar(imrt_engine, "SELECT workflow_status_set_at FROM item") == T0 + timedelta(hours=1)


def test_stim_link_updated_by_is_the_items_author_whichever_is_synced_first(store, imrt_engine):
    """IIS 0.1.46 ItemRevisionWriterImpl.java:92 (the item's revision author) and :115 (the linked item's)."""
    store.save(revision(41, document("410001", stimulus="410000"), "a1", author="Ivy Item"))
    store.save(revision(42, document("410000", item_type="stim"), "s1", author="Sam Stim"))
    store.save(revision(43, document("410002", stimulus="410000"), "b1", author="Bo Item"))
    with imrt_engine.connect() as conn:
        links = dict(
            conn.execute(sa.text("SELECT i.id, l.updated_by FROM stim_link l JOIN item i ON i.key = l.item_key")).all()
        )
    assert links == {410001: "Ivy Item", 410002: "Bo Item"}


def test_an_attachment_without_an_upload_date_gets_the_date_of_its_commit(store, imrt_engine):
    doc = document("420000")
    doc["asl"]["attachments"][0].pop("uploadedDate")
    store.save(revision(44, doc, "c1", "c2"))
    assert scalar(imrt_engine, "SELECT uploaded_at FROM item_attachment") == T0 + timedelta(hours=1)


def being_created(project_id: int, doc: dict, branch: str, *shas: str, source_head: str, head: str) -> Revision:
    """A sync of an item still being created: ``item.json`` commits ``shas`` read from ``branch``."""
    commits = tuple(Commit(sha, T0 + timedelta(hours=i), "Jo Doe") for i, sha in enumerate(shas))
    statuses = (doc["workflow"]["workflowStatusCode"],) * len(commits)
    return Revision(
        project_id,
        "iat-dev",
        branch,
        Commit(head, T0, "Jo Doe"),
        commits,
        map_item(doc, project_id),
        statuses,
        source_head=Commit(source_head, commits[-1].committed_at, "Jo Doe"),
    )


def test_an_item_being_created_records_its_branch_and_both_heads(store, imrt_engine):
    created = store.save(being_created(41, document("410000"), "create_jdoe", "c1", "c2", source_head="s2", head="d1"))
    assert created.kind == "ITEM_CREATED"
    assert scalar(imrt_engine, "SELECT is_being_created FROM item WHERE id = 410000") is True
    assert scalar(imrt_engine, "SELECT ingest_source FROM item_git WHERE project_id = 41") == "create_jdoe"
    with imrt_engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT commit_hash, ingest_source FROM item_log ORDER BY commit_hash")).all()
        observed = conn.execute(sa.text("SELECT head_sha, source_head_sha FROM imrt_project_head")).one()
    assert [tuple(row) for row in logged] == [("c1", "create_jdoe"), ("c2", "create_jdoe")]
    assert tuple(observed) == ("d1", "s2")
    assert store.items_being_created() == {41: BeingCreated("create_jdoe", "s2")}
    assert store.items_being_created([99]) == {}
    assert store.recorded_heads([41]) == {41: "d1"}


def test_a_create_branch_commit_that_leaves_item_json_alone_moves_only_the_recorded_source_head(store, imrt_engine):
    store.save(being_created(42, document("420000"), "create_jdoe", "c1", source_head="s1", head="d1"))
    readme = Revision(
        42,
        "iat-dev",
        "create_jdoe",
        Commit("d1", T0, "Jo Doe"),
        (),
        None,
        (),
        True,
        source_head=Commit("s2", T0 + timedelta(days=1), "Jo Doe"),
    )
    assert store.save(readme) is None
    assert store.items_being_created([42]) == {42: BeingCreated("create_jdoe", "s2")}


def test_a_published_item_is_no_longer_being_created_and_keeps_its_key_and_history(store, imrt_engine):
    created = store.save(being_created(43, document("430000"), "create_jdoe", "c1", source_head="s1", head="d1"))
    # Published by a fast-forward: the default branch's item.json history is the create branch's, plus a commit.
    published = revision(43, document("430000", status="Approved"), "c1", "c2", statuses=("Draft", "Approved"))
    updated = store.save(published, full=True)
    assert updated.kind == "ITEM_UPDATED" and updated.key == created.key
    assert scalar(imrt_engine, "SELECT is_being_created FROM item WHERE id = 430000") is False
    assert scalar(imrt_engine, "SELECT ingest_source FROM item_git WHERE project_id = 43") == "main"
    assert scalar(imrt_engine, "SELECT item_created_by FROM item WHERE id = 430000") == "Jo Doe"
    with imrt_engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT commit_hash, ingest_source FROM item_log ORDER BY commit_hash")).all()
        observed = conn.execute(sa.text("SELECT head_sha, source_head_sha FROM imrt_project_head")).one()
    assert [tuple(row) for row in logged] == [("c1", "create_jdoe"), ("c2", "main")]
    assert tuple(observed) == ("c2", None)
    assert store.items_being_created() == {}


def test_an_item_being_created_is_deleted_like_any_other(store, imrt_engine):
    store.save(being_created(44, document("440000"), "create_jdoe", "c1", source_head="s1", head="d1"))
    assert store.delete(44).kind == "ITEM_DELETED"
    for table in ("item", "item_git", "item_log", "imrt_project_head"):
        assert scalar(imrt_engine, f"SELECT count(*) FROM {table}") == 0
    assert store.items_being_created() == {}


# ------------------------------------------------------------------------------------------------ item_json


def test_item_json_holds_the_document_as_the_legacy_model_wrote_it(store, imrt_engine):
    """The search service reads item_json into the ap-common model with a default ObjectMapper: no property the
    model lacks, every property it has (docs/legacy-differences.md, "item_json")."""
    doc = document("450000")
    doc["unknownTopLevel"] = {"kept": False}
    doc["asl"]["isAslProvided"] = "true"
    store.save(revision(45, doc, "c1"))

    stored = scalar(imrt_engine, "SELECT item_json FROM item")
    assert stored == map_item(doc, 45).stored_item_json
    assert "unknownTopLevel" not in stored
    assert "grade" not in stored["core"]["metadata"] and stored["core"]["metadata"]["intendedGrade"] is None
    assert stored["asl"]["isAslProvided"] is True
    assert list(stored) == [
        "id", "type", "version", "core", "asl", "braille", "cc", "images", "audio", "textToSpeech", "workflow",
        "translations",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- attachments


def with_attachments(item_id: str, *attachments: tuple[str, str | None]) -> dict:
    """``document(item_id)`` whose ASL attachments are ``(fileName, uploadedDate)``."""
    doc = document(item_id)
    doc["asl"]["attachments"] = [
        {"fileName": name, **({"uploadedDate": uploaded} if uploaded else {})} for name, uploaded in attachments
    ]
    return doc


def attachment_rows(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT file_name, uploaded_at, created_at, updated_at, updated_by FROM item_attachment")
        ).all()
    return {row.file_name: tuple(row[1:]) for row in rows}


def age_attachment_rows(engine) -> datetime:
    """Date every attachment row's audit columns back, so that a rewrite shows which columns it touched."""
    long_ago = datetime(2019, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE item_attachment SET created_at = :t, updated_at = :t"), {"t": long_ago})
    return long_ago


MAY_25 = "2018-05-25T20:57:45.000Z"
MAY_25_AT = datetime(2018, 5, 25, 20, 57, 45, tzinfo=UTC)


def test_an_unchanged_attachment_keeps_its_row_as_the_legacy_merge_did(store, imrt_engine):
    """Hibernate's merge left an unchanged attachment alone and never updated created_at (Common 0.1.39
    model/BaseEntity.java:26, updatable = false): the row of an attachment still listed is kept as it was."""
    store.save(revision(46, with_attachments("460000", ("a.mp4", MAY_25)), "c1"))
    long_ago = age_attachment_rows(imrt_engine)

    store.save(revision(46, with_attachments("460000", ("a.mp4", MAY_25)), "c2", incremental=True))

    assert attachment_rows(imrt_engine) == {"a.mp4": (MAY_25_AT, long_ago, long_ago, "Ann Author")}


def test_a_changed_attachment_is_updated_and_keeps_its_created_at(store, imrt_engine):
    store.save(revision(47, with_attachments("470000", ("a.mp4", MAY_25)), "c1"))
    long_ago = age_attachment_rows(imrt_engine)

    store.save(
        revision(
            47,
            with_attachments("470000", ("a.mp4", "2018-06-01T08:00:00.000Z")),
            "c2",
            author="Rob Reviewer",
            incremental=True,
        )
    )

    uploaded_at, created_at, updated_at, updated_by = attachment_rows(imrt_engine)["a.mp4"]
    assert uploaded_at == datetime(2018, 6, 1, 8, tzinfo=UTC)
    assert created_at == long_ago
    assert updated_at > long_ago and updated_by == "Rob Reviewer"


def test_attachments_follow_the_document_a_removed_one_is_deleted_a_new_one_added(store, imrt_engine):
    """Legacy never deleted a removed attachment (no orphan removal, Common 0.1.39 model/BaseItem.java:117-127): we
    do, as stim_link follows the document (docs/legacy-differences.md, "Attachments")."""
    store.save(revision(48, with_attachments("480000", ("kept.mp4", MAY_25), ("removed.mp4", MAY_25)), "c1"))
    long_ago = age_attachment_rows(imrt_engine)

    store.save(
        revision(48, with_attachments("480000", ("kept.mp4", MAY_25), ("new.mp4", MAY_25)), "c2", incremental=True)
    )

    rows = attachment_rows(imrt_engine)
    assert set(rows) == {"kept.mp4", "new.mp4"}
    assert rows["kept.mp4"][1:3] == (long_ago, long_ago)
    assert rows["new.mp4"][1] > long_ago


def test_removing_every_attachment_deletes_every_row(store, imrt_engine):
    store.save(revision(49, with_attachments("490000", ("a.mp4", MAY_25), ("b.mp4", None)), "c1"))
    store.save(revision(49, with_attachments("490000"), "c2", incremental=True))
    assert scalar(imrt_engine, "SELECT count(*) FROM item_attachment") == 0


def test_attachments_of_other_items_are_left_alone(store, imrt_engine):
    store.save(revision(50, with_attachments("500000", ("same-name.mp4", MAY_25)), "c1"))
    store.save(revision(51, with_attachments("510000", ("same-name.mp4", MAY_25)), "d1"))
    store.save(revision(50, with_attachments("500000"), "c2", incremental=True))
    assert scalar(imrt_engine, "SELECT count(*) FROM item_attachment") == 1
