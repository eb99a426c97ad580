"""The real-time path: GitLab hook events in, targeted syncs out (reference §1.9).

The receiver (``imrt_compat.webhooks``) checks the secret, parses the event with :func:`parse_event`, decides with
:func:`triage` and records it in ``imrt_webhook_event`` through :class:`EventLog` before it answers. A run of the
DAG started for events claims every pending event when it starts, so the pushes that arrive while a run waits are
all absorbed by that one run; the run's ``summary`` closes its events as synced or failed.

Event life cycle: ``ignored`` (never acted on), or ``pending`` -> ``claimed`` (by a run) -> ``synced`` | ``failed``;
a claimed event whose run ended without closing it goes back to ``pending``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from .schema import imrt_webhook_event

MAX_BODY_BYTES = 2 * 1024 * 1024
DETAIL_LIMIT = 2000

PUSH = "push"
PROJECT_CREATE = "project_create"
PROJECT_DESTROY = "project_destroy"
ACTED_ON = frozenset({PUSH, PROJECT_CREATE, PROJECT_DESTROY})

# System hook events GitLab documents that IMRT has no use for: recorded as ignored, answered 200.
OTHER_SYSTEM_EVENTS = frozenset({
    "group_create", "group_destroy", "group_rename", "key_create", "key_destroy", "project_rename",
    "project_transfer", "project_update", "repository_update", "tag_push", "merge_request",
    "user_access_request_revoked_for_group", "user_access_request_revoked_for_project",
    "user_access_request_to_group", "user_access_request_to_project", "user_add_to_group", "user_add_to_team",
    "user_create", "user_destroy", "user_failed_login", "user_remove_from_group", "user_remove_from_team",
    "user_rename", "user_update_for_group", "user_update_for_team",
})

RUN_ID_PREFIX = "webhook__"


class EventRejected(ValueError):
    """The request is not an event we take: answered with ``status_code``, nothing recorded."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class HookEvent:
    event_type: str
    project_id: int | None
    project_path: str | None  # with namespace: "group/item"
    ref: str | None = None
    commit_sha: str | None = None
    default_branch: str | None = None
    gitlab_event_uuid: str | None = None


@dataclass(frozen=True)
class Verdict:
    status: str  # "pending" or "ignored"
    detail: str = ""


def is_webhook_run(run_id: str) -> bool:
    return run_id.startswith(RUN_ID_PREFIX)


def webhook_run_id(now: datetime | None = None) -> str:
    return RUN_ID_PREFIX + (now or datetime.now(timezone.utc)).isoformat(timespec="microseconds")


def token_matches(presented: str | None, secret: str) -> bool:
    """Constant-time comparison; an unset secret matches nothing."""
    if not secret or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), secret.encode())


def parse_event(gitlab_event: str | None, body: bytes, event_uuid: str | None = None) -> HookEvent:
    """Read a project hook or system hook request (header ``X-Gitlab-Event`` and JSON body) into a HookEvent."""
    if len(body) > MAX_BODY_BYTES:
        raise EventRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if gitlab_event not in ("Push Hook", "System Hook"):
        raise EventRejected(400, f"unsupported X-Gitlab-Event {_shown(gitlab_event)}: expected Push Hook or System Hook")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventRejected(400, f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise EventRejected(400, "body is not a JSON object")
    kind = payload.get("event_name") or payload.get("object_kind")
    uuid = _short(event_uuid, 64)
    if kind == PUSH:
        return _push_event(payload, uuid)
    if gitlab_event == "System Hook" and kind in (PROJECT_CREATE, PROJECT_DESTROY):
        return HookEvent(kind, _int(payload, "project_id"), _text(payload, "path_with_namespace"), gitlab_event_uuid=uuid)
    if gitlab_event == "System Hook" and kind in OTHER_SYSTEM_EVENTS:
        return HookEvent(kind, None, None, gitlab_event_uuid=uuid)
    raise EventRejected(400, f"unsupported event {_shown(kind)} in a {gitlab_event}")


def _push_event(payload: Mapping, uuid: str | None) -> HookEvent:
    project = payload.get("project")
    if not isinstance(project, dict):
        raise EventRejected(400, "push event without a project object")
    project_id = _int(payload, "project_id")
    if project.get("id") is not None and _int(project, "id") != project_id:
        raise EventRejected(400, "push event: project_id and project.id differ")
    ref = _text(payload, "ref")
    sha = payload.get("checkout_sha") or payload.get("after")
    return HookEvent(
        PUSH, project_id, _text(project, "path_with_namespace"), ref=ref,
        commit_sha=_short(sha if isinstance(sha, str) else None, 64),
        default_branch=_text(project, "default_branch", required=False),
        gitlab_event_uuid=uuid,
    )


def triage(event: HookEvent, group: str, ignored_paths: Iterable[str]) -> Verdict:
    """Act on the event, or ignore it and say why: outside the group, an ignored project, not the default branch."""
    if event.event_type not in ACTED_ON:
        return Verdict("ignored", f"{event.event_type} events are not used by IMRT")
    namespace, _, path = (event.project_path or "").rpartition("/")
    if namespace != group:
        return Verdict("ignored", f"project {event.project_path} is not in the group {group}")
    if path in set(ignored_paths):
        return Verdict("ignored", f"project {event.project_path} is in imrt_ignore_projects")
    if event.event_type == PUSH:
        branch = (event.ref or "").removeprefix("refs/heads/")
        if not (event.ref or "").startswith("refs/heads/") or branch != event.default_branch:
            return Verdict("ignored", f"push to {event.ref}, not to the default branch {event.default_branch}")
    return Verdict("pending")


def _int(payload: Mapping, key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 2**63 - 1:
        raise EventRejected(400, f"{key} must be a positive integer, got {_shown(value)}")
    return value


def _text(payload: Mapping, key: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise EventRejected(400, f"{key} must be a non-empty string, got {_shown(value)}")
    return value


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


class EventLog:
    """``imrt_webhook_event``: what came in, which run took it, and how it ended."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def record(self, event: HookEvent, verdict: Verdict) -> int:
        with self.engine.begin() as conn:
            return conn.scalar(
                sa.insert(imrt_webhook_event)
                .values(
                    event_type=event.event_type, project_id=event.project_id, project_path=event.project_path,
                    ref=event.ref, commit_sha=event.commit_sha, gitlab_event_uuid=event.gitlab_event_uuid,
                    status=verdict.status, detail=verdict.detail or None,
                )
                .returning(imrt_webhook_event.c.id)
            )

    def has_pending(self, conn: sa.Connection | None = None) -> bool:
        query = sa.select(sa.exists().where(imrt_webhook_event.c.status == "pending"))
        if conn is not None:
            return bool(conn.scalar(query))
        with self.engine.connect() as own:
            return bool(own.scalar(query))

    def claim(self, run_id: str) -> list[ClaimedEvent]:
        """Take every pending event for ``run_id`` (again those it took before: a retried task claims the same)."""
        t = imrt_webhook_event.c
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.update(imrt_webhook_event)
                .where(sa.or_(t.status == "pending", sa.and_(t.status == "claimed", t.run_id == run_id)))
                .values(status="claimed", run_id=run_id, claimed_at=sa.func.coalesce(t.claimed_at, sa.func.now()))
                .returning(t.id, t.event_type, t.project_id)
            ).all()
        return sorted((ClaimedEvent(*row) for row in rows), key=lambda e: e.id)

    def close(self, run_id: str, failed: Mapping[int, str]) -> int:
        """End the run's claimed events: ``failed`` (with the item's error) for the given projects, else synced."""
        t = imrt_webhook_event.c
        mine = sa.and_(t.run_id == run_id, t.status == "claimed")
        closed = 0
        with self.engine.begin() as conn:
            for project_id, message in failed.items():
                closed += conn.execute(
                    sa.update(imrt_webhook_event).where(mine, t.project_id == project_id)
                    .values(status="failed", detail=message[:DETAIL_LIMIT], finished_at=sa.func.now())
                ).rowcount
            closed += conn.execute(
                sa.update(imrt_webhook_event).where(mine).values(status="synced", finished_at=sa.func.now())
            ).rowcount
        return closed

    def release(self, run_ids: Iterable[str]) -> int:
        """Give the events of runs that ended without closing them back to the next run."""
        run_ids = list(run_ids)
        if not run_ids:
            return 0
        t = imrt_webhook_event.c
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(imrt_webhook_event)
                .where(t.status == "claimed", t.run_id.in_(run_ids))
                .values(status="pending", run_id=None, claimed_at=None)
            ).rowcount

    def claiming_runs(self) -> list[str]:
        """The runs holding claimed events."""
        t = imrt_webhook_event.c
        with self.engine.connect() as conn:
            return list(conn.scalars(sa.select(t.run_id).where(t.status == "claimed").distinct()))
