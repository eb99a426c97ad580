"""The project webhooks IMRT keeps on every item's project: when one counts, and how a missing or broken one is fixed.

A project has a working webhook when one of its webhooks points at ``imrt_webhook_url``, sends push events, is not
disabled and carries the current secret. GitLab never returns a hook's token ("the token isn't returned in the
response", https://docs.gitlab.com/api/project_webhooks/#add-a-webhook-to-a-project), so ``imrt_project_hook``
records which hooks IMRT created or updated, with an HMAC-SHA256 fingerprint of the secret they carry (never the
secret).

A hook counts as disabled when its ``alert_status`` is not ``executable`` or its ``disabled_until`` is in the
future (https://docs.gitlab.com/api/project_webhooks/#get-a-project-webhook; GitLab computes both in
``WebHooks::AutoDisabling``, app/models/concerns/web_hooks/auto_disabling.rb). Fixes:

* no hook with our URL: create one (``POST /projects/:id/hooks``);
* an enabled hook with our URL that IMRT did not record, or recorded with another secret, or without push events:
  edit it (``PUT /projects/:id/hooks/:hook_id`` with the URL, the token, ``push_events`` and
  ``enable_ssl_verification``, https://docs.gitlab.com/api/project_webhooks/#edit-a-project-webhook);
* only disabled hooks with our URL: replace them (create a new hook, then delete the disabled one). GitLab re-enables
  a disabled hook only when a delivery or a test request to it succeeds
  (https://docs.gitlab.com/user/project/integrations/webhooks/#re-enable-disabled-webhooks; in GitLab's source
  only ``WebHooks::LogExecutionService`` calls ``enable!``, on a successful delivery): editing it does not
  re-enable it, and the test endpoint is rate limited to five requests a minute and needs a commit to send
  (https://docs.gitlab.com/api/project_webhooks/#trigger-a-test-project-webhook), while a new hook starts enabled;
* further hooks with our URL are deleted, so that GitLab delivers each push once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from .gitlab import GitLabClient
from .schema import imrt_project_hook, imrt_project_hook_check

_FINGERPRINT_KEY = b"imrt-project-hook-secret-fingerprint-v1"


class WebhookAction(StrEnum):
    """What a project's hooks need (:func:`repair_for`)."""

    NONE = "none"  # a hook counts already
    CREATE = "create"  # no hook with our URL
    UPDATE = "update"  # an enabled hook with our URL that does not count: edited
    REPLACE = "replace"  # only disabled hooks with our URL: a new one, the disabled one deleted


CREATE, UPDATE, REPLACE, NONE = WebhookAction.CREATE, WebhookAction.UPDATE, WebhookAction.REPLACE, WebhookAction.NONE


def secret_fingerprint(secret: str) -> str:
    """HMAC-SHA256 of the secret (hex): tells two secrets apart without storing either."""
    return hmac.new(_FINGERPRINT_KEY, secret.encode(), hashlib.sha256).hexdigest()


def webhook_is_disabled(hook: Mapping, now: datetime) -> bool:
    if hook.get("alert_status", "executable") not in (None, "executable"):
        return True
    until = hook.get("disabled_until")
    if not until:
        return False
    try:
        return datetime.fromisoformat(str(until)) > now
    except ValueError:
        return True  # a date we cannot read: do not trust the hook


def webhook_is_current(hook: Mapping, url: str, recorded: Mapping[int, str], fingerprint: str, now: datetime) -> bool:
    """Our URL, push events, enabled, and recorded by IMRT with the current secret."""
    return (
        hook.get("url") == url
        and hook.get("push_events") is True
        and not webhook_is_disabled(hook, now)
        and hook.get("id") in recorded
        and hmac.compare_digest(recorded[hook["id"]], fingerprint)
    )


@dataclass(frozen=True)
class WebhookRepair:
    """What a project's hooks need: ``action`` on hook ``hook_id`` (the one to edit or to replace), then delete
    ``redundant``."""

    action: WebhookAction
    hook_id: int | None = None
    redundant: tuple[int, ...] = ()

    @property
    def replaced(self) -> tuple[int, ...]:
        """The disabled hook a replacement deletes once the new one exists."""
        return (self.hook_id,) if self.action == REPLACE and self.hook_id is not None else ()


def repair_for(
    hooks: Iterable[Mapping], url: str, recorded: Mapping[int, str], fingerprint: str, now: datetime
) -> WebhookRepair:
    ours = [hook for hook in hooks if hook.get("url") == url]
    current = [hook for hook in ours if webhook_is_current(hook, url, recorded, fingerprint, now)]
    enabled = [hook for hook in ours if not webhook_is_disabled(hook, now)]
    if current:
        action, kept = NONE, current[0]
    elif enabled:
        action, kept = UPDATE, enabled[0]
    elif ours:
        action, kept = REPLACE, ours[0]
    else:
        return WebhookRepair(CREATE)
    return WebhookRepair(action, kept["id"], tuple(hook["id"] for hook in ours if hook is not kept))


class WebhookRegistry:
    """``imrt_project_hook``: the hooks IMRT created or updated, and the fingerprint of the secret each carries."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def recorded(self, project_ids: Iterable[int] | None = None) -> dict[int, dict[int, str]]:
        """``{project_id: {hook_id: fingerprint}}``, for the given projects or all."""
        c = imrt_project_hook.c
        query = sa.select(c.project_id, c.hook_id, c.secret_fingerprint)
        if project_ids is not None:
            query = query.where(c.project_id.in_(list(project_ids)))
        found: dict[int, dict[int, str]] = {}
        with self.engine.connect() as conn:
            for project_id, hook_id, fingerprint in conn.execute(query):
                found.setdefault(project_id, {})[hook_id] = fingerprint
        return found

    def remember(self, project_id: int, hook_id: int, fingerprint: str) -> None:
        statement = pg_insert(imrt_project_hook).values(
            project_id=project_id, hook_id=hook_id, secret_fingerprint=fingerprint
        )
        with self.engine.begin() as conn:
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["project_id", "hook_id"],
                    set_={"secret_fingerprint": fingerprint, "updated_at": sa.func.now()},
                )
            )

    def forget_all_but(self, project_id: int, hook_ids: Iterable[int]) -> int:
        """Drop the records of the project's hooks that no longer exist."""
        c = imrt_project_hook.c
        with self.engine.begin() as conn:
            return conn.execute(
                sa.delete(imrt_project_hook).where(c.project_id == project_id, c.hook_id.not_in(list(hook_ids)))
            ).rowcount

    def checked_at(self) -> dict[int, datetime]:
        """When ``dispatch_webhooks`` last checked each project's hooks (``imrt_project_hook_check``)."""
        c = imrt_project_hook_check.c
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(c.project_id, c.checked_at)).all())

    def mark_checked(self, project_id: int) -> None:
        statement = pg_insert(imrt_project_hook_check).values(project_id=project_id)
        with self.engine.begin() as conn:
            conn.execute(
                statement.on_conflict_do_update(index_elements=["project_id"], set_={"checked_at": sa.func.now()})
            )

    def count_not_on(self, fingerprint: str) -> int:
        """Recorded hooks carrying another secret than the one with this fingerprint."""
        c = imrt_project_hook.c
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).where(c.secret_fingerprint != fingerprint)) or 0


class WebhookKeeper:
    """Creates, edits or replaces a project's hook so that it counts (see the module docstring)."""

    def __init__(self, gitlab: GitLabClient, registry: WebhookRegistry, url: str, secret: str):
        self.gitlab = gitlab
        self.registry = registry
        self.url = url
        self._secret = secret
        self.fingerprint = secret_fingerprint(secret)

    def has_working_webhook(
        self, hooks: Iterable[Mapping], recorded: Mapping[int, str], now: datetime | None = None
    ) -> bool:
        now = now or datetime.now(UTC)
        return any(webhook_is_current(hook, self.url, recorded, self.fingerprint, now) for hook in hooks)

    def repair(self, project_id: int) -> WebhookAction:
        """Give the project a working webhook; return what it took."""
        hooks = self.gitlab.hooks(project_id)
        recorded = self.registry.recorded([project_id]).get(project_id, {})
        fix = repair_for(hooks, self.url, recorded, self.fingerprint, datetime.now(UTC))
        kept = self._apply(project_id, fix)
        stale = fix.redundant + fix.replaced
        for hook_id in stale:
            self.gitlab.delete_hook(project_id, hook_id)
        remaining = {hook["id"] for hook in hooks} - set(stale) | {kept}
        self.registry.forget_all_but(project_id, remaining)
        self.registry.mark_checked(project_id)
        return fix.action

    def _apply(self, project_id: int, fix: WebhookRepair) -> int:
        """Create or edit the hook ``fix`` calls for and record it; the id of the hook that counts from now on."""
        if fix.action in (CREATE, REPLACE) or fix.hook_id is None:
            kept = self.gitlab.create_hook(project_id, self.url, self._secret)["id"]
        else:
            kept = fix.hook_id
            if fix.action == UPDATE:
                self.gitlab.update_hook(project_id, kept, self.url, self._secret)
        if fix.action != NONE:
            self.registry.remember(project_id, kept, self.fingerprint)
        return kept
