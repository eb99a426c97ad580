"""The sweep's pure parts: reading a project node, and which projects' hooks a sweep run checks."""

from __future__ import annotations

import pytest

from imrt_sync.config import SyncSettings
from imrt_sync.planning import webhooks_to_verify
from imrt_sync.sweep import SweepUnavailable, SweptProject, project_id

LISTED = range(1, 15)


def swept(**changes) -> SweptProject:
    fields = {
        "project_id": 7,
        "path": "item-7",
        "namespace": "iat",
        "default_branch": "master",
        "head": "a" * 40,
        "has_item_file": True,
        "answered": True,
    }
    return SweptProject(**{**fields, **changes})


def test_only_a_fully_answered_project_with_a_head_and_item_json_is_settled():
    assert swept().settled
    for unknown in ({"answered": False}, {"default_branch": None}, {"head": None}, {"has_item_file": False}):
        assert not swept(**unknown).settled, unknown


def test_a_project_global_id_gives_its_id_and_anything_else_is_refused():
    assert project_id("gid://gitlab/Project/42") == 42
    for bad in ("gid://gitlab/Group/42", "42", None, "gid://gitlab/Project/4x"):
        with pytest.raises(SweepUnavailable):
            project_id(bad)


def test_hooks_checked_are_the_new_the_changed_without_delivery_and_the_rotation_slot():
    checked = webhooks_to_verify(
        LISTED, {3: "c3", 4: "c4"}, hooked=set(LISTED) - {2}, delivered={4}, full=False, rotation_days=7, day=12
    )
    assert checked == (2, 3, 5, 12)  # 2 new, 3 changed without delivery, 5 and 12 on slot 12 % 7


def test_every_hook_is_checked_in_a_full_run_or_with_a_rotation_of_zero_days():
    for full, days in ((True, 7), (False, 0)):
        checked = webhooks_to_verify(
            LISTED, {}, hooked=set(LISTED), delivered=set(), full=full, rotation_days=days, day=3
        )
        assert checked == tuple(LISTED)


def test_over_a_rotation_every_hook_is_checked_once():
    days = 5
    checked = [
        pid
        for day in range(100, 100 + days)
        for pid in webhooks_to_verify(
            LISTED, {}, hooked=set(LISTED), delivered=set(), full=False, rotation_days=days, day=day
        )
    ]
    assert sorted(checked) == list(LISTED)


def test_the_listing_setting_and_the_rotation_are_checked():
    with pytest.raises(ValueError, match="imrt_gitlab_listing must be graphql or rest"):
        SyncSettings(group="iat", webhook_url="https://imrt.example.org/webHook", listing="soap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="imrt_webhook_verify_days"):
        SyncSettings(group="iat", webhook_url="https://imrt.example.org/webHook", webhook_verify_days=-1)
