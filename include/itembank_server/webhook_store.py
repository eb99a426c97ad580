"""Project webhooks in SQLite: their settings, their auto-disabling state and the record of every request sent.

GitLab's project webhooks API: https://docs.gitlab.com/api/project_webhooks/ (the fields and their defaults);
auto-disabling state: https://docs.gitlab.com/user/project/integrations/webhooks/#auto-disabled-webhooks;
delivery records (GitLab's "request history"): https://docs.gitlab.com/user/project/integrations/webhooks/#view-webhook-request-history
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .records import NotFoundError, timestamp

HOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS hooks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    url        TEXT NOT NULL,
    token      TEXT,
    attributes TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hooks_by_project ON hooks (project_id, id);
CREATE TABLE IF NOT EXISTS hook_states (
    hook_id         INTEGER PRIMARY KEY REFERENCES hooks(id) ON DELETE CASCADE,
    recent_failures INTEGER NOT NULL DEFAULT 0,
    disabled_until  REAL
);
CREATE TABLE IF NOT EXISTS hook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id          INTEGER REFERENCES hooks(id) ON DELETE CASCADE,
    system_hook_id   INTEGER,
    project_id       INTEGER,
    event            TEXT NOT NULL,
    trigger          TEXT NOT NULL,
    url              TEXT NOT NULL,
    request_headers  TEXT NOT NULL,
    request_body     TEXT NOT NULL,
    response_status  INTEGER,
    error            TEXT,
    duration         REAL NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hook_deliveries_by_hook ON hook_deliveries (hook_id, id);
"""

HOOK_DEFAULTS: dict[str, object] = {
    "name": None,
    "description": None,
    "push_events": True,
    "push_events_branch_filter": None,
    "branch_filter_strategy": "wildcard",
    "issues_events": False,
    "confidential_issues_events": False,
    "merge_requests_events": False,
    "tag_push_events": False,
    "note_events": False,
    "confidential_note_events": False,
    "job_events": False,
    "pipeline_events": False,
    "wiki_page_events": False,
    "deployment_events": False,
    "feature_flag_events": False,
    "releases_events": False,
    "emoji_events": False,
    "resource_access_token_events": False,
    "repository_update_events": False,
    "enable_ssl_verification": True,
}

_DELIVERY_COLUMNS = (
    "id",
    "hook_id",
    "system_hook_id",
    "project_id",
    "event",
    "trigger",
    "url",
    "request_headers",
    "request_body",
    "response_status",
    "error",
    "duration",
    "created_at",
)


@dataclass(frozen=True)
class WebhookState:
    """A project hook's auto-disabling counters (GitLab's ``recent_failures`` and ``disabled_until``, epoch s)."""

    recent_failures: int = 0
    disabled_until: float | None = None


class WebhookStore:
    """The hook half of :class:`ItemBank` (mixed in; uses its connection, transactions and projects)."""

    _rows: Callable[..., list[sqlite3.Row]]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    project: Callable[[int | str], dict]

    # -- hooks -------------------------------------------------------------------------------------

    def add_hook(self, project_id: int | str, url: str, *, token: str | None = None, **attributes: object) -> dict:
        """Register a project hook; unknown attribute names are rejected, missing ones take GitLab's defaults."""
        unknown = set(attributes) - set(HOOK_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown hook attributes: {sorted(unknown)}")
        project = self.project(project_id)
        stored = {**HOOK_DEFAULTS, **attributes}
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO hooks (project_id, url, token, attributes, created_at) VALUES (?, ?, ?, ?, ?)",
                (project["id"], url, token, json.dumps(stored), timestamp()),
            )
        return self.hook(project["id"], cursor.lastrowid)  # type: ignore[arg-type]

    def add_hooks(
        self, project_ids: Sequence[int], url: str, *, token: str | None = None, **attributes: object
    ) -> dict[int, int]:
        """:meth:`add_hook` for many projects in one transaction (a generated bank of 100,000 projects); return the
        new hook's id by project id."""
        unknown = set(attributes) - set(HOOK_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown hook attributes: {sorted(unknown)}")
        stored, now, added = json.dumps({**HOOK_DEFAULTS, **attributes}), timestamp(), {}
        with self._transaction() as db:
            for project_id in project_ids:
                cursor = db.execute(
                    "INSERT INTO hooks (project_id, url, token, attributes, created_at) VALUES (?, ?, ?, ?, ?)",
                    (project_id, url, token, stored, now),
                )
                added[project_id] = cursor.lastrowid
        return added

    def hooks(self, project_id: int | str) -> list[dict]:
        """The project's hooks, oldest first, including their secret ``token``."""
        project = self.project(project_id)
        rows = self._rows("SELECT * FROM hooks WHERE project_id = ? ORDER BY id", (project["id"],))
        return [self._hook_dict(row) for row in rows]

    def hook(self, project_id: int | str, hook_id: int) -> dict:
        project = self.project(project_id)
        rows = self._rows("SELECT * FROM hooks WHERE project_id = ? AND id = ?", (project["id"], hook_id))
        if not rows:
            raise NotFoundError(f"hook {hook_id} of project {project_id!r}")
        return self._hook_dict(rows[0])

    def delete_hook(self, project_id: int | str, hook_id: int) -> bool:
        project = self.project(project_id)
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM hooks WHERE project_id = ? AND id = ?", (project["id"], hook_id))
        return cursor.rowcount > 0

    def remove_hooks(self, project_id: int | str) -> int:
        """Delete all hooks of the project; return how many there were."""
        project = self.project(project_id)
        with self._transaction() as db:
            return db.execute("DELETE FROM hooks WHERE project_id = ?", (project["id"],)).rowcount

    def update_hook(
        self, project_id: int | str, hook_id: int, *, url: str | None = None, token: str | None = None, **attributes
    ) -> dict:
        """Change the given fields of a hook (``token=""`` removes its secret token); return the hook."""
        unknown = set(attributes) - set(HOOK_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown hook attributes: {sorted(unknown)}")
        hook = self.hook(project_id, hook_id)
        stored = {name: hook[name] for name in HOOK_DEFAULTS} | attributes
        with self._transaction() as db:
            db.execute(
                "UPDATE hooks SET url = ?, token = ?, attributes = ? WHERE id = ?",
                (
                    url if url is not None else hook["url"],
                    hook["token"] if token is None else (token or None),
                    json.dumps(stored),
                    hook["id"],
                ),
            )
        return self.hook(project_id, hook_id)

    def hook_state(self, hook_id: int) -> WebhookState:
        rows = self._rows("SELECT recent_failures, disabled_until FROM hook_states WHERE hook_id = ?", (hook_id,))
        return WebhookState(rows[0]["recent_failures"], rows[0]["disabled_until"]) if rows else WebhookState()

    def change_hook_state(self, hook_id: int, change: Callable[[WebhookState], WebhookState]) -> WebhookState | None:
        """Apply ``change`` to the hook's state atomically; None if the hook no longer exists."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM hooks WHERE id = ?", (hook_id,)).fetchone() is None:
                return None
            row = db.execute(
                "SELECT recent_failures, disabled_until FROM hook_states WHERE hook_id = ?", (hook_id,)
            ).fetchone()
            new = change(WebhookState(row[0], row[1]) if row else WebhookState())
            db.execute(
                "INSERT INTO hook_states (hook_id, recent_failures, disabled_until) VALUES (?, ?, ?)"
                " ON CONFLICT (hook_id) DO UPDATE SET recent_failures = excluded.recent_failures,"
                " disabled_until = excluded.disabled_until",
                (hook_id, new.recent_failures, new.disabled_until),
            )
        return new

    def add_hook_delivery(self, record: Mapping) -> None:
        """Record one hook request (a deleted project hook's record is dropped, as GitLab drops its logs)."""
        columns = [name for name in _DELIVERY_COLUMNS if name != "id"]
        values = [json.dumps(record[name]) if name == "request_headers" else record.get(name) for name in columns]
        try:
            with self._transaction() as db:
                db.execute(
                    f"INSERT INTO hook_deliveries ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    values,
                )
        except sqlite3.IntegrityError:
            pass

    def hook_deliveries(
        self, *, hook_id: int | None = None, system_hook_id: int | None = None, project_id: int | None = None
    ) -> list[dict]:
        """Recorded hook requests, oldest first, optionally for one hook, system hook or project."""
        clauses, params = [], []
        for column, value in (("hook_id", hook_id), ("system_hook_id", system_hook_id), ("project_id", project_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(f"SELECT * FROM hook_deliveries{where} ORDER BY id", params)
        return [
            {name: json.loads(row[name]) if name == "request_headers" else row[name] for name in _DELIVERY_COLUMNS}
            for row in rows
        ]

    @staticmethod
    def _hook_dict(row: sqlite3.Row) -> dict:
        return {
            "id": row["id"],
            "url": row["url"],
            "project_id": row["project_id"],
            "token": row["token"],
            "created_at": row["created_at"],
            **json.loads(row["attributes"]),
        }
