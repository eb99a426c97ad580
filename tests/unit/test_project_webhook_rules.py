"""Which project hooks count, and how a project's hooks are fixed (imrt_sync.project_webhooks), on hooks shaped as
GitLab documents them (https://docs.gitlab.com/api/project_webhooks/#get-a-project-webhook)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imrt_sync.project_webhooks import (
    CREATE,
    NONE,
    REPLACE,
    UPDATE,
    WebhookRepair,
    repair_for,
    secret_fingerprint,
    webhook_is_current,
    webhook_is_disabled,
)

URL = "https://imrt.example.org/webHook"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CURRENT = secret_fingerprint("new-secret")
PREVIOUS = secret_fingerprint("old-secret")


def hook(hook_id: int, url: str = URL, **changes) -> dict:
    return {
        "id": hook_id,
        "url": url,
        "push_events": True,
        "enable_ssl_verification": True,
        "alert_status": "executable",
        "disabled_until": None,
        **changes,
    }


def test_the_fingerprint_tells_secrets_apart_without_containing_them():
    assert CURRENT != PREVIOUS and len(CURRENT) == 64
    assert "new-secret" not in CURRENT and secret_fingerprint("new-secret") == CURRENT


@pytest.mark.parametrize(
    ("changes", "disabled"),
    [
        ({}, False),
        ({"alert_status": "temporarily_disabled", "disabled_until": (NOW + timedelta(minutes=5)).isoformat()}, True),
        ({"alert_status": "disabled"}, True),
        ({"disabled_until": "2026-03-01T12:05:00.000Z"}, True),
        ({"disabled_until": "2026-03-01T11:55:00.000Z"}, False),  # the temporary back-off is over
        ({"disabled_until": "not a date"}, True),
        ({"alert_status": None}, False),  # a GitLab without auto-disabling
    ],
)
def test_a_hook_is_disabled_when_gitlab_says_so_or_until_a_future_time(changes, disabled):
    entity = hook(1, **changes)
    if "alert_status" in changes and changes["alert_status"] is None:
        del entity["alert_status"]
    assert webhook_is_disabled(entity, NOW) is disabled


def test_only_our_url_with_push_events_enabled_and_the_current_secret_counts():
    recorded = {1: CURRENT}
    assert webhook_is_current(hook(1), URL, recorded, CURRENT, NOW)
    assert not webhook_is_current(hook(1, url=URL + "/"), URL, recorded, CURRENT, NOW)
    assert not webhook_is_current(hook(1, push_events=False), URL, recorded, CURRENT, NOW)
    assert not webhook_is_current(hook(1, alert_status="disabled"), URL, recorded, CURRENT, NOW)
    assert not webhook_is_current(hook(1), URL, {1: PREVIOUS}, CURRENT, NOW)  # still on the previous secret
    assert not webhook_is_current(hook(1), URL, {}, CURRENT, NOW)  # not created by IMRT: token unknown
    assert not webhook_is_current(hook(2), URL, recorded, CURRENT, NOW)


@pytest.mark.parametrize(
    ("hooks", "recorded", "expected"),
    [
        ([], {}, WebhookRepair(CREATE)),
        ([hook(1, url="https://ci.example.org/hook")], {}, WebhookRepair(CREATE)),  # other hooks are left alone
        ([hook(1)], {1: CURRENT}, WebhookRepair(NONE, 1)),
        ([hook(1)], {}, WebhookRepair(UPDATE, 1)),  # ours by URL, secret unknown
        ([hook(1)], {1: PREVIOUS}, WebhookRepair(UPDATE, 1)),  # rotation
        ([hook(1, push_events=False)], {1: CURRENT}, WebhookRepair(UPDATE, 1)),
        ([hook(1, alert_status="disabled")], {1: CURRENT}, WebhookRepair(REPLACE, 1)),
        ([hook(1, alert_status="disabled"), hook(2)], {1: CURRENT}, WebhookRepair(UPDATE, 2, (1,))),
        ([hook(1), hook(2)], {2: CURRENT}, WebhookRepair(NONE, 2, (1,))),  # one delivery per push
    ],
)
def test_what_a_projects_hooks_need(hooks, recorded, expected):
    assert repair_for(hooks, URL, recorded, CURRENT, NOW) == expected
