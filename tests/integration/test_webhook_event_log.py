"""The record of GitLab hook events (imrt_sync.webhooks.EventLog) on a real PostgreSQL database."""

from __future__ import annotations

import sqlalchemy as sa

from imrt_sync.schema import ensure_schema
from imrt_sync.webhooks import EventLog, HookEvent, Verdict


def push(project_id: int, sha: str = "a" * 40) -> HookEvent:
    return HookEvent("push", project_id, f"iat/{project_id}", ref="refs/heads/master", commit_sha=sha,
                     default_branch="master")


def rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT id, project_id, status, run_id, detail, claimed_at IS NOT NULL, finished_at IS NOT NULL"
            " FROM imrt_webhook_event ORDER BY id"))]


def test_an_event_is_recorded_with_what_gitlab_sent(imrt_engine):
    ensure_schema(imrt_engine)
    log = EventLog(imrt_engine)
    event_id = log.record(HookEvent("push", 7, "iat/7", "refs/heads/master", "b" * 40, "master", "uuid-1"),
                          Verdict("pending"))
    with imrt_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM imrt_webhook_event WHERE id = :id"), {"id": event_id}).mappings().one()
    assert (row["event_type"], row["project_id"], row["project_path"], row["ref"], row["commit_sha"],
            row["gitlab_event_uuid"], row["status"]) == ("push", 7, "iat/7", "refs/heads/master", "b" * 40, "uuid-1",
                                                         "pending")
    assert row["received_at"] is not None and row["run_id"] is None


def test_a_run_claims_every_pending_event_once_and_a_retry_claims_the_same(imrt_engine):
    ensure_schema(imrt_engine)
    log = EventLog(imrt_engine)
    ids = [log.record(push(pid), Verdict("pending")) for pid in (1, 2, 1)]
    log.record(push(3), Verdict("ignored", "push to refs/heads/x"))
    first = log.claim("webhook__r1")
    assert [e.id for e in first] == ids
    assert log.claim("webhook__r2") == []  # nothing left for another run
    assert [e.id for e in log.claim("webhook__r1")] == ids  # the retried list_ids of r1
    assert not log.has_pending()
    late = log.record(push(2), Verdict("pending"))
    assert log.has_pending()
    assert [e.id for e in log.claim("webhook__r2")] == [late]


def test_closing_marks_failed_items_and_the_rest_synced(imrt_engine):
    ensure_schema(imrt_engine)
    log = EventLog(imrt_engine)
    for pid in (1, 2, 2):
        log.record(push(pid), Verdict("pending"))
    log.claim("webhook__r1")
    assert log.close("webhook__r1", {2: "project 2: item.json is not JSON"}) == 3
    statuses = [(pid, status, detail) for _, pid, status, _, detail, _, finished in rows(imrt_engine)]
    assert statuses == [(1, "synced", None), (2, "failed", "project 2: item.json is not JSON"),
                        (2, "failed", "project 2: item.json is not JSON")]
    assert all(finished for *_, finished in rows(imrt_engine))
    assert log.close("webhook__r1", {}) == 0  # closed once


def test_events_of_a_run_that_ended_unclosed_go_back_to_pending(imrt_engine):
    ensure_schema(imrt_engine)
    log = EventLog(imrt_engine)
    log.record(push(1), Verdict("pending"))
    log.record(push(2), Verdict("pending"))
    log.claim("webhook__r1")
    assert log.claiming_runs() == ["webhook__r1"]
    assert log.release(["webhook__r1"]) == 2
    assert [(status, run_id, claimed) for _, _, status, run_id, _, claimed, _ in rows(imrt_engine)] == [
        ("pending", None, False), ("pending", None, False)]
    assert [e.project_id for e in log.claim("webhook__r2")] == [1, 2]
    log.close("webhook__r2", {})
    assert log.release(["webhook__r2"]) == 0  # closed events stay closed
