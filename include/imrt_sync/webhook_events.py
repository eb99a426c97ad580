"""The real-time path: GitLab webhook events in, targeted syncs out (docs/real-time-path.md).

The legacy service's counterpart is its ``/webHook`` and ``/systemHook`` handling: SmarterApp/AP_IMRT_ItemIngestService
at tag 0.1.46, ``src/main/java/org/opentestsystem/ap/imrt/iis/client/GitlabClientImpl.java`` (``onPushEvent``: a
push to ``master`` queues an update; ``onProjectEvent``: a project created in the group gets its hook, a destroyed
one queues a delete).

The receiver (``imrt_compat.webhook_receiver``) checks the secret, parses the event with :func:`parse_event`, decides
with :func:`triage` and records it in ``imrt_webhook_event`` through :class:`EventLog` before it answers. A run of the
DAG started for events claims every pending event when it starts, so the pushes that arrive while a run waits are
all absorbed by that one run; the run's ``summary`` closes its events as synced or failed.

Event life cycle: ``ignored`` (never acted on, counted in ``imrt_webhook_ignored_count``), or ``pending`` ->
``claimed`` (by a run; ``attempts`` + 1) -> ``synced``, or on a failure (the item failed, the run could not plan, the
run ended without closing it) back to ``pending`` with ``next_attempt_at`` moved by an exponential back-off
(:class:`~imrt_sync.config.EventRetryPolicy`), until the ``max_attempts``-th failure ends it ``failed``. A run only
takes events that are due (and the not yet due events of the same projects, which it syncs anyway). Closed events
(``ignored``, ``synced``, ``failed``) older than the retention are pruned by :meth:`EventLog.prune`.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from .config import EventRetryPolicy
from .errors import PermanentError
from .schema import imrt_webhook_event, imrt_webhook_ignored_count
from .scope import GroupScope

MAX_BODY_BYTES = 2 * 1024 * 1024
DETAIL_LIMIT = 2000

PUSH = "push"
PROJECT_CREATE = "project_create"
PROJECT_DESTROY = "project_destroy"
PROJECT_TRANSFER = "project_transfer"  # into the item bank, out of it, or between the group and its subgroups
ACTED_ON = frozenset({PUSH, PROJECT_CREATE, PROJECT_DESTROY, PROJECT_TRANSFER})

# System hook events GitLab documents that IMRT has no use for: recorded as ignored, answered 200.
OTHER_SYSTEM_EVENTS = frozenset(
    {
        "group_create",
        "group_destroy",
        "group_rename",
        "key_create",
        "key_destroy",
        "project_rename",
        "project_update",
        "repository_update",
        "tag_push",
        "merge_request",
        "user_access_request_revoked_for_group",
        "user_access_request_revoked_for_project",
        "user_access_request_to_group",
        "user_access_request_to_project",
        "user_add_to_group",
        "user_add_to_team",
        "user_create",
        "user_destroy",
        "user_failed_login",
        "user_remove_from_group",
        "user_remove_from_team",
        "user_rename",
        "user_update_for_group",
        "user_update_for_team",
    }
)

RUN_ID_PREFIX = "webhook__"

# Why an event was ignored: the reasons imrt_webhook_ignored_count counts.
NOT_USED, OUTSIDE_GROUP = "event_type", "outside_group"
IGNORED_PROJECT, OTHER_BRANCH = "ignored_project", "other_branch"

_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
PRUNE_BATCH = 10_000


class EventRejected(ValueError, PermanentError):
    """The request is not an event we take: answered with ``status_code``, nothing recorded."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class WebhookEvent:
    event_type: str
    project_id: int | None
    project_path: str | None  # with namespace: "group/item"
    ref: str | None = None
    commit_sha: str | None = None
    default_branch: str | None = None
    gitlab_event_uuid: str | None = None
    old_project_path: str | None = None  # a transfer's former path with namespace (not stored)


@dataclass(frozen=True)
class Triage:
    """What triage decided for one webhook event: record it as pending (a run syncs its project) or as ignored."""

    status: str  # "pending" or "ignored"
    detail: str = ""
    reason: str = ""  # an ignored event's reason: NOT_USED, OUTSIDE_GROUP, IGNORED_PROJECT or OTHER_BRANCH


def webhook_run_id(now: datetime | None = None) -> str:
    return RUN_ID_PREFIX + (now or datetime.now(UTC)).isoformat(timespec="microseconds")


def token_matches(presented: str | None, secret: str) -> bool:
    """Constant-time comparison; an unset secret matches nothing."""
    if not secret or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), secret.encode())


def token_accepted(presented: str | None, secret: str, previous_secret: str = "") -> bool:
    """The current secret, or during a rotation the previous one; both are always compared (constant time)."""
    current = token_matches(presented, secret)
    previous = token_matches(presented, previous_secret)
    return current or previous


def sanitized(text: str) -> str:
    """``text`` with every C0/C1 control character and DEL replaced by U+FFFD, fit for a log line or a table."""
    return _CONTROL_CHARACTERS.sub("\ufffd", text)


def parse_event(gitlab_event: str | None, body: bytes, event_uuid: str | None = None) -> WebhookEvent:
    """Read a project hook or system hook request (header ``X-Gitlab-Event`` and JSON body) into a WebhookEvent."""
    if len(body) > MAX_BODY_BYTES:
        raise EventRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if gitlab_event not in ("Push Hook", "System Hook"):
        raise EventRejected(
            400, f"unsupported X-Gitlab-Event {_shown(gitlab_event)}: expected Push Hook or System Hook"
        )
    try:
        payload = json.loads(body)
    except RecursionError:
        raise EventRejected(400, "body is not JSON we take: nested too deep") from None
    except ValueError as exc:  # not JSON, not UTF-8, or an integer past Python's digit limit
        raise EventRejected(400, f"body is not JSON we take: {_shown(str(exc))}") from None
    if not isinstance(payload, dict):
        raise EventRejected(400, "body is not a JSON object")
    kind = payload.get("event_name") or payload.get("object_kind")
    uuid = _short(sanitized(event_uuid) if event_uuid else None, 64)
    if kind == PUSH:
        return _push_event(payload, uuid)
    if gitlab_event == "System Hook" and kind in (PROJECT_CREATE, PROJECT_DESTROY, PROJECT_TRANSFER):
        old_path = _text(payload, "old_path_with_namespace") if kind == PROJECT_TRANSFER else None
        return WebhookEvent(
            kind,
            _int(payload, "project_id"),
            _text(payload, "path_with_namespace"),
            gitlab_event_uuid=uuid,
            old_project_path=old_path,
        )
    if gitlab_event == "System Hook" and kind in OTHER_SYSTEM_EVENTS:
        return WebhookEvent(kind, None, None, gitlab_event_uuid=uuid)
    raise EventRejected(400, f"unsupported event {_shown(kind)} in a {gitlab_event}")


def _push_event(payload: Mapping, uuid: str | None) -> WebhookEvent:
    project = payload.get("project")
    if not isinstance(project, dict):
        raise EventRejected(400, "push event without a project object")
    project_id = _int(payload, "project_id")
    if project.get("id") is not None and _int(project, "id") != project_id:
        raise EventRejected(400, "push event: project_id and project.id differ")
    ref = _text(payload, "ref")
    sha = payload.get("checkout_sha") or payload.get("after")
    return WebhookEvent(
        PUSH,
        project_id,
        _text(project, "path_with_namespace"),
        ref=ref,
        commit_sha=_short(sanitized(sha) if isinstance(sha, str) else None, 64),
        default_branch=_text(project, "default_branch", required=False),
        gitlab_event_uuid=uuid,
    )


def triage(event: WebhookEvent, scope: GroupScope, ignored_paths: Iterable[str]) -> Triage:
    """Act on the event, or ignore it and say why: outside the group (and its subgroups, when they are in scope), an
    ignored project, not the default branch."""
    if event.event_type not in ACTED_ON:
        return Triage("ignored", f"{event.event_type} events are not used by IMRT", NOT_USED)
    path = (event.project_path or "").rpartition("/")[2]
    moved_out = event.event_type == PROJECT_TRANSFER and scope.contains_project(event.old_project_path)
    if not scope.contains_project(event.project_path) and not moved_out:
        return Triage("ignored", f"project {event.project_path} is not in the {scope.describe()}", OUTSIDE_GROUP)
    if path in set(ignored_paths):
        return Triage("ignored", f"project {event.project_path} is in imrt_ignore_projects", IGNORED_PROJECT)
    if event.event_type == PUSH:
        branch = (event.ref or "").removeprefix("refs/heads/")
        if not (event.ref or "").startswith("refs/heads/") or branch != event.default_branch:
            return Triage(
                "ignored", f"push to {event.ref}, not to the default branch {event.default_branch}", OTHER_BRANCH
            )
    return Triage("pending")


def _int(payload: Mapping, key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 2**63 - 1:
        raise EventRejected(400, f"{key} must be a positive integer, got {_shown(value)}")
    return value


def _text(payload: Mapping, key: str, *, required: bool = True) -> str | None:
    """A non-empty string of at most 1000 characters, its control characters replaced (see :func:`sanitized`)."""
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise EventRejected(400, f"{key} must be a non-empty string, got {_shown(value)}")
    return sanitized(value)


def _short(value: str | None, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    event_type: str
    project_id: int


@dataclass(frozen=True)
class Closed:
    """How a run's events ended: synced, back to pending for a later attempt, or failed for good."""

    synced: int = 0
    retrying: int = 0
    failed: int = 0


class EventLog:
    """``imrt_webhook_event``: what came in, which run took it, how often it was tried and how it ended."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def record(self, event: WebhookEvent, triaged: Triage) -> int:
        """Store the event; an ignored one is also counted for its day and reason (the count outlives the row)."""
        with self.engine.begin() as conn:
            event_id = conn.scalar(
                sa.insert(imrt_webhook_event)
                .values(
                    event_type=event.event_type,
                    project_id=event.project_id,
                    project_path=event.project_path,
                    ref=event.ref,
                    commit_sha=event.commit_sha,
                    gitlab_event_uuid=event.gitlab_event_uuid,
                    status=triaged.status,
                    detail=triaged.detail or None,
                )
                .returning(imrt_webhook_event.c.id)
            )
            if triaged.status == "ignored":
                _count_ignored(conn, triaged.reason or NOT_USED)
        return event_id

    def delivered(self, heads: Mapping[int, str]) -> set[int]:
        """The projects of ``heads`` (project id -> a head commit) for which a push event with that commit came in
        (kept ``retention_days``): the evidence that their hook works."""
        if not heads:
            return set()
        t = imrt_webhook_event.c
        query = sa.select(t.project_id, t.commit_sha).where(
            t.event_type == PUSH, t.project_id.in_(list(heads)), t.commit_sha.in_(set(heads.values()))
        )
        with self.engine.connect() as conn:
            return {pid for pid, sha in conn.execute(query) if heads.get(pid) == sha}

    def has_due(self, conn: sa.Connection | None = None) -> bool:
        """Whether a pending event is due: new, or its back-off is over."""
        t = imrt_webhook_event.c
        query = sa.select(sa.exists().where(t.status == "pending", _due()))
        if conn is not None:
            return bool(conn.scalar(query))
        with self.engine.connect() as own:
            return bool(own.scalar(query))

    def claim(self, run_id: str) -> list[ClaimedEvent]:
        """Take the due pending events, and the other pending events of their projects, for ``run_id``.

        A retried task of the same run takes the same events again, without counting another attempt.
        """
        t = imrt_webhook_event.c
        other = imrt_webhook_event.alias("due_event")
        due_projects = sa.select(other.c.project_id).where(
            other.c.status == "pending", _due(other), other.c.project_id.is_not(None)
        )
        taken = sa.and_(t.status == "pending", sa.or_(_due(), t.project_id.in_(due_projects.scalar_subquery())))
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.update(imrt_webhook_event)
                .where(sa.or_(taken, sa.and_(t.status == "claimed", t.run_id == run_id)))
                .values(
                    status="claimed",
                    run_id=run_id,
                    claimed_at=sa.func.coalesce(t.claimed_at, sa.func.now()),
                    attempts=sa.case((t.status == "pending", t.attempts + 1), else_=t.attempts),
                    next_attempt_at=None,
                )
                .returning(t.id, t.event_type, t.project_id)
            ).all()
        return sorted((ClaimedEvent(*row) for row in rows), key=lambda e: e.id)

    def close(self, run_id: str, failed: Mapping[int, str], policy: EventRetryPolicy) -> Closed:
        """End the run's claimed events: the given projects' events failed this attempt (with the item's error);
        the rest synced."""
        t = imrt_webhook_event.c
        mine = sa.and_(t.run_id == run_id, t.status == "claimed")
        retrying = failed_for_good = 0
        with self.engine.begin() as conn:
            for project_id, message in failed.items():
                again, ended = _fail_attempt(conn, sa.and_(mine, t.project_id == project_id), message, policy)
                retrying, failed_for_good = retrying + again, failed_for_good + ended
            synced = conn.execute(
                sa.update(imrt_webhook_event)
                .where(mine)
                .values(status="synced", detail=None, finished_at=sa.func.now())
            ).rowcount
        return Closed(synced, retrying, failed_for_good)

    def release(self, run_ids: Iterable[str], reason: str, policy: EventRetryPolicy) -> Closed:
        """The events of runs that ended without closing them failed this attempt: ``reason`` says why."""
        run_ids = list(run_ids)
        if not run_ids:
            return Closed()
        t = imrt_webhook_event.c
        with self.engine.begin() as conn:
            retrying, failed = _fail_attempt(
                conn, sa.and_(t.status == "claimed", t.run_id.in_(run_ids)), reason, policy
            )
        return Closed(0, retrying, failed)

    def claiming_runs(self) -> list[str]:
        """The runs holding claimed events."""
        t = imrt_webhook_event.c
        with self.engine.connect() as conn:
            return list(conn.scalars(sa.select(t.run_id).where(t.status == "claimed").distinct()))

    def prune(self, retention_days: int) -> int:
        """Delete closed events (ignored, synced, failed) received more than ``retention_days`` ago."""
        closed = imrt_webhook_event.alias("closed_event")
        cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, retention_days)
        old = (
            sa.select(closed.c.id)
            .where(closed.c.status.in_(("ignored", "synced", "failed")), closed.c.received_at < cutoff)
            .limit(PRUNE_BATCH)
            .scalar_subquery()
        )
        pruned = 0
        while True:
            with self.engine.begin() as conn:
                deleted = conn.execute(sa.delete(imrt_webhook_event).where(imrt_webhook_event.c.id.in_(old))).rowcount
            pruned += deleted
            if deleted < PRUNE_BATCH:
                return pruned


def webhook_backlog(engine: sa.Engine) -> tuple[int, float]:
    """Hook events waiting for a run (``pending``) and the age in seconds of the oldest (0.0 when none)."""
    t = imrt_webhook_event
    query = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.extract("epoch", sa.func.now() - sa.func.min(t.c.received_at)), 0),
    ).where(t.c.status == "pending")
    with engine.connect() as conn:
        pending, oldest = conn.execute(query).one()
    return int(pending), float(oldest)


def _due(table: sa.FromClause = imrt_webhook_event):
    t = table.c
    return sa.or_(t.next_attempt_at.is_(None), t.next_attempt_at <= sa.func.now())


def _fail_attempt(conn: sa.Connection, events, message: str, policy: EventRetryPolicy) -> tuple[int, int]:
    """The ``events`` failed an attempt: the last allowed attempt ends them ``failed``, the others wait
    ``min(base * 2**(attempts-1), max)`` seconds as ``pending``. Returns (retrying, failed)."""
    t = imrt_webhook_event.c
    detail = sanitized(message)[:DETAIL_LIMIT]
    failed = conn.execute(
        sa.update(imrt_webhook_event)
        .where(events, t.attempts >= policy.max_attempts)
        .values(status="failed", detail=detail, finished_at=sa.func.now())
    ).rowcount
    delay = sa.func.least(
        policy.base_seconds * sa.func.power(2.0, sa.func.greatest(t.attempts - 1, 0)), policy.max_seconds
    )
    retrying = conn.execute(
        sa.update(imrt_webhook_event)
        .where(events, t.attempts < policy.max_attempts)
        .values(
            status="pending",
            run_id=None,
            claimed_at=None,
            detail=detail,
            next_attempt_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, delay),
        )
    ).rowcount
    return retrying, failed


def _count_ignored(conn: sa.Connection, reason: str) -> None:
    c = imrt_webhook_ignored_count.c
    today = sa.cast(sa.func.timezone("UTC", sa.func.now()), sa.Date)
    statement = pg_insert(imrt_webhook_ignored_count).values(day=today, reason=reason, events=1)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[c.day, c.reason], set_={"events": imrt_webhook_ignored_count.c.events + 1}
        )
    )
