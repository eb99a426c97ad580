"""The sweep's pure parts: reading a project node, and which projects' hooks a sweep run checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imrt_sync.config import SyncSettings
from imrt_sync.planning import HookRotation, webhooks_to_verify
from imrt_sync.sweep import SweepUnavailable, SweptProject, project_id

LISTED = range(1, 15)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def swept(**changes) -> SweptProject:
    fields = {
        "project_id": 7,
        "path": "item-7",
        "full_path": "iat/item-7",
        "namespace": "iat",
        "default_branch": "master",
        "head": "a" * 40,
        "item_blob": "b" * 40,
        "answered": True,
    }
    return SweptProject(**{**fields, **changes})


def test_only_a_fully_answered_project_with_a_default_branch_holding_item_json_is_settled():
    assert swept().settled and swept(head=None).settled  # without a head: compared by item.json's blob
    for unknown in ({"answered": False}, {"default_branch": None}, {"item_blob": None}):
        assert not swept(**unknown).settled, unknown


def test_a_project_global_id_gives_its_id_and_anything_else_is_refused():
    assert project_id("gid://gitlab/Project/42") == 42
    for bad in ("gid://gitlab/Group/42", "42", None, "gid://gitlab/Project/4x"):
        with pytest.raises(SweepUnavailable):
            project_id(bad)


def checked(*, changed=(), hooked=frozenset(LISTED), delivered=frozenset(), checked_at=None, full=False, days=7, **how):
    rotation = HookRotation(days, how.get("spread", False), how.get("now", T0))
    return webhooks_to_verify(
        LISTED,
        changed,
        hooked=hooked,
        delivered=delivered,
        checked_at=checked_at or {},
        full=full,
        rotation=rotation,
    )


def test_hooks_checked_are_the_new_the_changed_without_delivery_and_the_due():
    at = {pid: T0 - timedelta(days=1) for pid in LISTED if pid not in (9, 11)}  # 9, 11: never checked
    at[5] = T0 - timedelta(days=7)  # a week ago: due
    chosen = checked(changed={3: "c3", 4: "c4"}, hooked=set(LISTED) - {2}, delivered={4}, checked_at=at)
    assert chosen == (2, 3, 5, 9, 11)  # 2 new, 3 changed without delivery, 5 due, 9 and 11 never checked


def test_every_hook_is_checked_in_a_full_run_or_with_a_rotation_of_zero_days():
    assert checked(full=True) == checked(days=0) == tuple(LISTED)


def test_hooks_checked_together_come_due_together_a_week_later():
    """A weekly run: after a run checked every hook, six daily runs check none, the seventh all of them."""
    at = dict.fromkeys(LISTED, T0)
    daily = [checked(checked_at=at, now=T0 + timedelta(days=day)) for day in range(1, 8)]
    assert daily == [()] * 6 + [tuple(LISTED)]


def test_spread_runs_that_record_their_checks_check_every_hook_once_in_the_rotation():
    days, at, seen = 5, {}, []
    for run in range(days):
        chosen = checked(checked_at=at, days=days, spread=True)
        assert len(chosen) == 3  # ceil(14 / 5)
        seen += chosen
        at.update(dict.fromkeys(chosen, T0 + timedelta(days=run)))
    assert set(seen) == set(LISTED)  # 15 checks for 14 hooks: the last run checks one of the first again


def test_the_listing_setting_and_the_rotation_are_checked():
    with pytest.raises(ValueError, match="imrt_gitlab_listing must be graphql or rest"):
        SyncSettings(group="iat", webhook_url="https://imrt.example.org/webHook", listing="soap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="imrt_webhook_verify_days"):
        SyncSettings(group="iat", webhook_url="https://imrt.example.org/webHook", webhook_verify_days=-1)
