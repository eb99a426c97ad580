"""GitLab hook requests read and triaged (imrt_sync.webhook_events), with GitLab's documented payload shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imrt_compat.settings import DEFAULTS, SettingsError, parse_event_retry_policy
from imrt_sync.config import EventRetryPolicy
from imrt_sync.scope import GroupScope
from imrt_sync.webhook_events import (
    MAX_BODY_BYTES,
    OTHER_BRANCH,
    OUTSIDE_GROUP,
    EventRejected,
    WebhookEvent,
    parse_event,
    sanitized,
    token_accepted,
    token_matches,
    triage,
    webhook_run_id,
)

PAYLOADS = Path(__file__).parents[1] / "fixtures" / "gitlab_webhooks"


def payload(name: str, **changes) -> dict:
    document = json.loads((PAYLOADS / f"{name}.json").read_text())
    document.update(changes)
    return document


def body(document) -> bytes:
    return json.dumps(document).encode()


def test_push_event_is_read_from_gitlabs_documented_payload():
    event = parse_event("Push Hook", body(payload("push")), "6a2a4c8f-uuid")
    assert event == WebhookEvent(
        "push",
        15,
        "mike/diaspora",
        ref="refs/heads/master",
        commit_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        default_branch="master",
        gitlab_event_uuid="6a2a4c8f-uuid",
    )


def test_system_hook_project_create_and_destroy_are_read():
    created = parse_event("System Hook", body(payload("project_create")))
    destroyed = parse_event("System Hook", body(payload("project_destroy")))
    assert (created.event_type, created.project_id, created.project_path) == ("project_create", 74, "jsmith/storecloud")
    assert (destroyed.event_type, destroyed.project_id, destroyed.project_path) == (
        "project_destroy",
        73,
        "jsmith/underscore",
    )


def test_a_system_hook_push_is_a_push():
    event = parse_event("System Hook", body(payload("push")))
    assert event.event_type == "push" and event.project_id == 15


def test_a_deleted_branch_push_keeps_the_after_sha_when_there_is_no_checkout_sha():
    event = parse_event("Push Hook", body(payload("push", checkout_sha=None, after="0" * 40)))
    assert event.commit_sha == "0" * 40


def test_other_documented_system_events_are_read_but_not_acted_on():
    event = parse_event("System Hook", body({"event_name": "user_create", "user_id": 41}))
    assert event.event_type == "user_create" and event.project_id is None
    assert triage(event, GroupScope("mike"), []).status == "ignored"


@pytest.mark.parametrize(
    ("header", "raw", "status", "says"),
    [
        ("Push Hook", b"{not json", 400, "not JSON"),
        ("Push Hook", b"\xff\xfe", 400, "not JSON"),
        ("Push Hook", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deep"),
        ("Push Hook", b'{"project_id": ' + b"9" * 5000 + b"}", 400, "not JSON we take"),
        ("Push Hook", b"[1, 2]", 400, "not a JSON object"),
        ("Issue Hook", body(payload("push")), 400, "unsupported X-Gitlab-Event 'Issue Hook'"),
        (None, body(payload("push")), 400, "unsupported X-Gitlab-Event None"),
        ("Push Hook", body(payload("push", object_kind="build", event_name=None)), 400, "unsupported event 'build'"),
        ("System Hook", body({"event_name": "pipeline_bananas"}), 400, "unsupported event 'pipeline_bananas'"),
        ("Push Hook", body(payload("push", project_id="15")), 400, "project_id must be a positive integer"),
        ("Push Hook", body(payload("push", project_id=-1)), 400, "project_id must be a positive integer"),
        ("Push Hook", body(payload("push", project_id=2**70)), 400, "project_id must be a positive integer"),
        ("Push Hook", body(payload("push", project_id=16)), 400, "project_id and project.id differ"),
        ("Push Hook", body(payload("push", project=None)), 400, "without a project object"),
        ("Push Hook", body(payload("push", ref=None)), 400, "ref must be a non-empty string"),
        ("System Hook", body(payload("project_create", path_with_namespace=7)), 400, "path_with_namespace"),
        ("Push Hook", b" " * (MAX_BODY_BYTES + 1), 413, "larger than"),
    ],
)
def test_malformed_requests_are_rejected_with_a_clear_4xx(header, raw, status, says):
    with pytest.raises(EventRejected) as caught:
        parse_event(header, raw)
    assert caught.value.status_code == status
    assert says in caught.value.detail


def test_push_to_the_default_branch_of_a_group_project_is_acted_on():
    event = parse_event("Push Hook", body(payload("push")))
    assert triage(event, GroupScope("mike"), []).status == "pending"


@pytest.mark.parametrize(
    ("changes", "group", "ignored", "reason"),
    [
        ({"ref": "refs/heads/feature"}, "mike", [], "not to the default branch master"),
        ({"ref": "refs/tags/v1"}, "mike", [], "not to the default branch master"),
        ({}, "iat-prod", [], "not in the group iat-prod and its subgroups"),
        (
            {},
            "mik",
            [],
            "not in the group mik and its subgroups",
        ),  # no prefix match (the legacy service matched prefixes)
        ({}, "mike", ["diaspora"], "imrt_ignore_projects"),
    ],
)
def test_pushes_elsewhere_are_ignored_with_the_reason(changes, group, ignored, reason):
    event = parse_event("Push Hook", body(payload("push", **changes)))
    triaged = triage(event, GroupScope(group), ignored)
    assert triaged.status == "ignored"
    assert reason in triaged.detail


def test_project_events_outside_the_group_are_ignored():
    event = parse_event("System Hook", body(payload("project_create")))
    assert triage(event, GroupScope("jsmith"), []).status == "pending"
    assert triage(event, GroupScope("jsmith/sub"), []).status == "ignored"


def test_a_nested_group_is_matched_on_the_full_namespace():
    document = payload("push")
    document["project"] = {**document["project"], "path_with_namespace": "sbac/iat-prod/200123"}
    event = parse_event("Push Hook", body(document))
    assert triage(event, GroupScope("sbac/iat-prod"), []).status == "pending"
    assert triage(event, GroupScope("iat-prod"), []).status == "ignored"


def test_a_push_to_a_subgroup_project_is_acted_on_unless_subgroups_are_left_out():
    document = payload("push")
    document["project"] = {**document["project"], "path_with_namespace": "mike/grade-3/math/200123"}
    event = parse_event("Push Hook", body(document))
    assert triage(event, GroupScope("mike"), []).status == "pending"
    triaged = triage(event, GroupScope("mike", include_subgroups=False), [])
    assert (triaged.status, triaged.reason) == ("ignored", OUTSIDE_GROUP)
    assert "not in the group mike" in triaged.detail


@pytest.mark.parametrize("look_alike", ["mike-old/200123", "mikey/200123", "mike.archive/sub/200123"])
def test_a_look_alike_group_is_not_a_subgroup(look_alike):
    document = payload("push")
    document["project"] = {**document["project"], "path_with_namespace": look_alike}
    event = parse_event("Push Hook", body(document))
    assert triage(event, GroupScope("mike"), []).status == "ignored"


def test_token_comparison():
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret ", "s3cret")
    assert not token_matches(None, "s3cret")
    assert not token_matches("", "")  # no secret configured: nothing gets in
    assert not token_matches("anything", "")


def test_event_runs_are_named_after_when_they_were_started():
    started = datetime(2026, 12, 8, 3, 4, 5, 678901, tzinfo=UTC)
    assert webhook_run_id(started) == "webhook__2026-12-08T03:04:05.678901+00:00"


def test_during_a_rotation_both_secrets_are_accepted_and_nothing_else():
    assert token_accepted("new-secret", "new-secret", "old-secret")
    assert token_accepted("old-secret", "new-secret", "old-secret")
    assert not token_accepted("other", "new-secret", "old-secret")
    assert not token_accepted("old-secret", "new-secret", "")  # rotation over: the old secret is refused
    assert not token_accepted("", "new-secret", "")
    assert not token_accepted(None, "new-secret", "old-secret")


def test_control_characters_never_reach_the_table_or_the_log():
    assert sanitized("iat/\x1b[31mred\x00\x7f\x85\u009b") == "iat/\ufffd[31mred\ufffd\ufffd\ufffd\ufffd"
    assert sanitized("iat-prod/200123 é ✓") == "iat-prod/200123 é ✓"
    document = payload("push", ref="refs/heads/mas\rter\nFAKE LOG LINE")
    document["project"] = {**document["project"], "path_with_namespace": "mike/dia\x1bspora\x9b"}
    event = parse_event("Push Hook", body(document), "uuid\x00\n")
    assert event.ref == "refs/heads/mas\ufffdter\ufffdFAKE LOG LINE"
    assert event.project_path == "mike/dia\ufffdspora\ufffd"
    assert event.gitlab_event_uuid == "uuid\ufffd\ufffd"
    triaged = triage(event, GroupScope("mike"), [])
    assert triaged.status == "ignored" and triaged.reason == OTHER_BRANCH
    assert not any(ch in triaged.detail for ch in "\r\n\x1b\x9b")


def test_ignored_verdicts_carry_a_countable_reason():
    event = parse_event("Push Hook", body(payload("push")))
    assert triage(event, GroupScope("elsewhere"), []).reason == OUTSIDE_GROUP
    assert triage(event, GroupScope("mike"), []).reason == ""


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"base_seconds": 0}, "imrt_webhook_retry_base_seconds must be > 0"),
        ({"base_seconds": float("nan")}, "imrt_webhook_retry_base_seconds must be > 0"),
        ({"base_seconds": 10, "max_seconds": 5}, "imrt_webhook_retry_max_seconds (5) must be >="),
        ({"max_seconds": float("inf")}, "imrt_webhook_retry_max_seconds"),
        ({"max_attempts": 0}, "imrt_webhook_max_attempts must be between 1 and 100"),
        ({"max_attempts": 101}, "imrt_webhook_max_attempts must be between 1 and 100"),
        ({"retention_days": 0}, "imrt_webhook_retention_days must be >= 1"),
    ],
)
def test_retry_settings_are_validated(changes, says):
    with pytest.raises(ValueError) as caught:
        EventRetryPolicy(**changes)
    assert says in str(caught.value)


def test_retry_settings_are_read_from_the_variables_and_a_bad_one_is_named():
    values = {name: DEFAULTS[name] for name in DEFAULTS if name.startswith("imrt_webhook_")}
    assert parse_event_retry_policy(values) == EventRetryPolicy(60, 3600, 5, 30)
    small = {**values, "imrt_webhook_retry_base_seconds": "0.5", "imrt_webhook_retry_max_seconds": " 4 "}
    assert parse_event_retry_policy(small) == EventRetryPolicy(0.5, 4, 5, 30)
    with pytest.raises(SettingsError, match="imrt_webhook_max_attempts must be int, not 'many'"):
        parse_event_retry_policy({**values, "imrt_webhook_max_attempts": "many"})
    with pytest.raises(SettingsError, match="imrt_webhook_retention_days must be >= 1"):
        parse_event_retry_policy({**values, "imrt_webhook_retention_days": "-3"})


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        ("elsewhere/200123", "mike/200123", "pending"),  # into the item bank
        ("mike/200123", "elsewhere/200123", "pending"),  # out of it: the run confirms and deletes
        ("mike/200123", "mike/grade-3/200123", "pending"),  # into a subgroup: still in the item bank
        ("elsewhere/200123", "other/200123", "ignored"),
    ],
)
def test_a_project_transfer_is_acted_on_when_it_enters_or_leaves_the_item_bank(old, new, status):
    document = {
        "event_name": "project_transfer",
        "project_id": 74,
        "path_with_namespace": new,
        "old_path_with_namespace": old,
        "path": "200123",
        "name": "200123",
    }
    event = parse_event("System Hook", body(document))
    assert (event.project_id, event.project_path, event.old_project_path) == (74, new, old)
    assert triage(event, GroupScope("mike"), []).status == status
