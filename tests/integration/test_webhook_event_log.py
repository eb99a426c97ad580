"""The record of GitLab hook events (imrt_sync.webhook_events.EventLog) on a real PostgreSQL database: claims, attempts
with back-off, failure after the last attempt, retention and the counts of ignored events."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from event_waits import WAIT_SQL, BackOff, back_offs

from imrt_sync.config import EventRetryPolicy
from imrt_sync.schema_migrations import prepare_database
from imrt_sync.webhook_events import OTHER_BRANCH, OUTSIDE_GROUP, Closed, EventLog, Triage, WebhookEvent

POLICY = EventRetryPolicy(base_seconds=60, max_seconds=300, max_attempts=3, retention_days=30)


def push(project_id: int, sha: str = "a" * 40) -> WebhookEvent:
    return WebhookEvent(
        "push", project_id, f"iat/{project_id}", ref="refs/heads/master", commit_sha=sha, default_branch="master"
    )


def rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT id, project_id, status, run_id, detail, claimed_at IS NOT NULL, finished_at IS NOT NULL"
                    " FROM imrt_webhook_event ORDER BY id"
                )
            )
        ]


def attempts(engine) -> list[tuple]:
    """(id, status, attempts, seconds until the next attempt or None)."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(f"SELECT id, status, attempts, {WAIT_SQL} FROM imrt_webhook_event ORDER BY id")
            )
        ]


def ignored_counts(engine) -> dict[tuple[str, str], int]:
    """``{(day ISO, reason): events}`` from imrt_webhook_ignored_count."""
    with engine.connect() as conn:
        return {
            (day.isoformat(), reason): events
            for day, reason, events in conn.execute(
                sa.text("SELECT day, reason, events FROM imrt_webhook_ignored_count")
            )
        }


def make_due(engine) -> None:
    """What the passing of the back-off does: every waiting event's next attempt time is reached."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE imrt_webhook_event SET next_attempt_at = now() - interval '1 second'"
                " WHERE next_attempt_at IS NOT NULL"
            )
        )


def new_log(engine) -> EventLog:
    prepare_database(engine)
    return EventLog(engine)


def test_an_event_is_recorded_with_what_gitlab_sent(imrt_engine):
    log = new_log(imrt_engine)
    event_id = log.record(
        WebhookEvent("push", 7, "iat/7", "refs/heads/master", "b" * 40, "master", "uuid-1"), Triage("pending")
    )
    with imrt_engine.connect() as conn:
        row = (
            conn.execute(sa.text("SELECT * FROM imrt_webhook_event WHERE id = :id"), {"id": event_id}).mappings().one()
        )
    assert (
        row["event_type"],
        row["project_id"],
        row["project_path"],
        row["ref"],
        row["commit_sha"],
        row["gitlab_event_uuid"],
        row["status"],
    ) == ("push", 7, "iat/7", "refs/heads/master", "b" * 40, "uuid-1", "pending")
    assert row["received_at"] is not None and row["run_id"] is None
    assert (row["attempts"], row["next_attempt_at"]) == (0, None)


def test_a_run_claims_every_due_event_once_and_a_retry_claims_the_same(imrt_engine):
    log = new_log(imrt_engine)
    ids = [log.record(push(pid), Triage("pending")) for pid in (1, 2, 1)]
    log.record(push(3), Triage("ignored", "push to refs/heads/x", OTHER_BRANCH))
    first = log.claim("webhook__r1")
    assert [e.id for e in first] == ids
    assert log.claim("webhook__r2") == []  # nothing left for another run
    assert [e.id for e in log.claim("webhook__r1")] == ids  # the retried list_ids of r1
    assert [a for _, _, a, _ in attempts(imrt_engine)] == [1, 1, 1, 0]  # a retried task is not another attempt
    assert not log.has_due()
    late = log.record(push(2), Triage("pending"))
    assert log.has_due()
    assert [e.id for e in log.claim("webhook__r2")] == [late]


def test_closing_marks_failed_items_for_a_later_attempt_and_the_rest_synced(imrt_engine):
    log = new_log(imrt_engine)
    for pid in (1, 2, 2):
        log.record(push(pid), Triage("pending"))
    log.claim("webhook__r1")
    assert log.close("webhook__r1", {2: "project 2: GitLab answered 503"}, POLICY) == Closed(1, 2, 0)
    assert [(pid, status, run_id, detail) for _, pid, status, run_id, detail, _, _ in rows(imrt_engine)] == [
        (1, "synced", "webhook__r1", None),
        (2, "pending", None, "project 2: GitLab answered 503"),
        (2, "pending", None, "project 2: GitLab answered 503"),
    ]
    assert [(status, n, wait) for _, status, n, wait in attempts(imrt_engine)] == [
        ("synced", 1, None),
        ("pending", 1, BackOff(60)),
        ("pending", 1, BackOff(60)),
    ]
    assert log.close("webhook__r1", {}, POLICY) == Closed()  # closed once
    assert not log.has_due() and log.claim("webhook__r2") == []  # the back-off holds them


def test_an_event_that_keeps_failing_backs_off_exponentially_then_ends_failed(imrt_engine):
    log = new_log(imrt_engine)
    [event_id] = [log.record(push(5), Triage("pending"))]
    waits = []
    for attempt in range(1, POLICY.max_attempts + 1):
        assert [e.id for e in log.claim(f"webhook__r{attempt}")] == [event_id]
        closed = log.close(f"webhook__r{attempt}", {5: f"project 5: attempt {attempt} failed"}, POLICY)
        [(_, status, count, wait)] = attempts(imrt_engine)
        assert count == attempt
        waits.append(wait)
        if attempt < POLICY.max_attempts:
            assert closed == Closed(0, 1, 0) and status == "pending" and not log.has_due()
            make_due(imrt_engine)
            assert log.has_due()
    assert waits == back_offs(60, 120, None)  # base, doubled; the third failure is the last
    assert closed == Closed(0, 0, 1)
    [(_, _, status, run_id, detail, _, finished)] = rows(imrt_engine)
    assert (status, detail, finished) == ("failed", "project 5: attempt 3 failed", True)
    assert not log.has_due() and log.claim("webhook__r9") == []  # it waits for a new push
    recovery = log.record(push(5, "c" * 40), Triage("pending"))
    assert [e.id for e in log.claim("webhook__r10")] == [recovery]
    assert log.close("webhook__r10", {}, POLICY) == Closed(1, 0, 0)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (EventRetryPolicy(base_seconds=100, max_seconds=250, max_attempts=10), [100, 200, 250, 250]),
        (EventRetryPolicy(base_seconds=10, max_seconds=50, max_attempts=10), [10, 20, 40, 50, 50]),
        (EventRetryPolicy(), [60, 120, 240, 480]),  # the defaults: 60 s doubled, 5 attempts, at most an hour
    ],
)
def test_the_delay_doubles_from_the_base_up_to_the_maximum(imrt_engine, policy, expected):
    """The wait after each failed attempt, as the SQL of ``EventLog.close`` sets ``next_attempt_at``."""
    log = new_log(imrt_engine)
    log.record(push(6), Triage("pending"))
    waits = []
    for attempt in range(1, len(expected) + 1):
        log.claim(f"webhook__r{attempt}")
        log.close(f"webhook__r{attempt}", {6: "failed"}, policy)
        waits.append(attempts(imrt_engine)[0][3])
        make_due(imrt_engine)
    assert waits == back_offs(*expected)


def test_a_new_push_is_due_at_once_and_takes_the_waiting_events_of_its_project_along(imrt_engine):
    log = new_log(imrt_engine)
    waiting = log.record(push(1), Triage("pending"))
    other = log.record(push(2), Triage("pending"))
    log.claim("webhook__r1")
    log.close("webhook__r1", {1: "failed", 2: "failed"}, POLICY)
    assert not log.has_due()
    fresh = log.record(push(1, "d" * 40), Triage("pending"))
    assert log.has_due()
    assert [e.id for e in log.claim("webhook__r2")] == [waiting, fresh]  # project 2 keeps waiting
    assert [(i, status, n) for i, status, n, _ in attempts(imrt_engine)] == [
        (waiting, "claimed", 2),
        (other, "pending", 1),
        (fresh, "claimed", 1),
    ]


def test_events_of_a_run_that_ended_unclosed_cost_an_attempt(imrt_engine):
    log = new_log(imrt_engine)
    log.record(push(1), Triage("pending"))
    log.record(push(2), Triage("pending"))
    log.claim("webhook__r1")
    assert log.claiming_runs() == ["webhook__r1"]
    assert log.release(["webhook__r1"], "run webhook__r1 ended without closing its events", POLICY) == Closed(0, 2, 0)
    assert [(status, run_id, claimed, detail) for _, _, status, run_id, detail, claimed, _ in rows(imrt_engine)] == [
        ("pending", None, False, "run webhook__r1 ended without closing its events")
    ] * 2
    assert log.claim("webhook__r2") == []  # not before the back-off
    make_due(imrt_engine)
    assert [e.project_id for e in log.claim("webhook__r2")] == [1, 2]
    log.close("webhook__r2", {}, POLICY)
    assert log.release(["webhook__r2"], "gone", POLICY) == Closed()  # closed events stay closed
    assert log.release([], "nothing", POLICY) == Closed()


def test_ignored_events_are_counted_per_day_and_reason_and_outlive_pruning(imrt_engine):
    log = new_log(imrt_engine)
    for _ in range(3):
        log.record(push(9), Triage("ignored", "push to refs/heads/x", OTHER_BRANCH))
    log.record(push(9), Triage("ignored", "not in the group", OUTSIDE_GROUP))
    with imrt_engine.connect() as conn:
        today = conn.scalar(sa.text("SELECT (now() AT TIME ZONE 'UTC')::date")).isoformat()
    assert ignored_counts(imrt_engine) == {(today, OTHER_BRANCH): 3, (today, OUTSIDE_GROUP): 1}
    with imrt_engine.begin() as conn:
        conn.execute(sa.text("UPDATE imrt_webhook_event SET received_at = now() - interval '31 days'"))
    assert log.prune(30) == 4
    assert rows(imrt_engine) == []
    assert ignored_counts(imrt_engine) == {(today, OTHER_BRANCH): 3, (today, OUTSIDE_GROUP): 1}


def test_pruning_removes_only_closed_events_past_the_retention(imrt_engine):
    log = new_log(imrt_engine)
    ids = {
        name: log.record(push(n), Triage("pending"))
        for n, name in enumerate(["synced", "failed", "pending", "claimed", "recent"], start=1)
    }
    ignored = log.record(push(7), Triage("ignored", "x", OTHER_BRANCH))
    with imrt_engine.begin() as conn:
        for name in ("synced", "failed", "pending", "claimed"):
            conn.execute(
                sa.text(
                    "UPDATE imrt_webhook_event SET status = :s, received_at = now() - interval '40 days' WHERE id = :id"
                ),
                {"s": name, "id": ids[name]},
            )
        conn.execute(sa.text("UPDATE imrt_webhook_event SET status = 'synced' WHERE id = :id"), {"id": ids["recent"]})
        conn.execute(
            sa.text("UPDATE imrt_webhook_event SET received_at = now() - interval '29 days' WHERE id = :id"),
            {"id": ignored},
        )
    assert log.prune(30) == 2
    assert [i for i, *_ in rows(imrt_engine)] == [ids["pending"], ids["claimed"], ids["recent"], ignored]
    assert log.prune(30) == 0


def test_the_first_migration_adds_the_attempt_columns_to_an_event_table_created_before_them(imrt_engine):
    with imrt_engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE imrt_webhook_event (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                " received_at TIMESTAMPTZ NOT NULL DEFAULT now(), event_type VARCHAR(40) NOT NULL, project_id BIGINT,"
                " project_path VARCHAR, ref VARCHAR, commit_sha VARCHAR(64), gitlab_event_uuid VARCHAR(64),"
                " status VARCHAR(16) NOT NULL, detail VARCHAR, run_id VARCHAR(250), claimed_at TIMESTAMPTZ,"
                " finished_at TIMESTAMPTZ)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO imrt_webhook_event (event_type, project_id, status) VALUES ('push', 4, 'pending')")
        )
    log = new_log(imrt_engine)
    prepare_database(imrt_engine)  # twice: nothing more to add
    assert [e.project_id for e in log.claim("webhook__r1")] == [4]
    assert attempts(imrt_engine)[0][1:3] == ("claimed", 1)
