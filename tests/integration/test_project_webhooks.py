"""Project hook bookkeeping (imrt_sync.project_webhooks, pipeline.dispatch_webhooks) against the GitLab-compatible
item bank server and a real PostgreSQL database.

The tests marked NEEDS_PUT edit a hook (``PUT /projects/:id/hooks/:hook_id``,
https://docs.gitlab.com/api/project_webhooks/#edit-a-project-webhook), which the item bank server gains in a
parallel change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from imrt_sync.config import GitLabSettings, RunParams, SyncSettings
from imrt_sync.contracts import PlanView
from imrt_sync.gitlab import GitLabClient
from imrt_sync.gitrepo import GitAccess
from imrt_sync.pipeline import Services, dispatch_webhooks
from imrt_sync.planning import Plan
from imrt_sync.project_webhooks import CREATE, NONE, UPDATE, WebhookKeeper, WebhookRegistry, secret_fingerprint
from imrt_sync.schema_migrations import prepare_database

TOKEN = "glpat-project-hooks-token"
GROUP = "iat-hooks"
URL = "https://imrt.example.org/webHook"
SECRET = "whsec-current-4d9a1f"
PREVIOUS = "whsec-previous-77c0b2"
BANK = {GROUP: [str(400000 + n) for n in range(6)]}


@pytest.fixture
def gitlab(server):
    with GitLabClient(
        GitLabSettings(
            base_url=server.url, token=TOKEN, read_timeout=5, retries=2, backoff_factor=0.01, allow_http=True
        )
    ) as client:
        yield client


@pytest.fixture
def registry(imrt_engine):
    prepare_database(imrt_engine)
    return WebhookRegistry(imrt_engine)


def project_ids(bank) -> list[int]:
    return [project["id"] for project in bank.projects(GROUP)]


def stored_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(sa.text("SELECT * FROM imrt_project_hook ORDER BY project_id, hook_id")).mappings()
        ]


@pytest.fixture
def project(bank):
    """A project of the bank with no hooks, given back without hooks."""
    [pid, *_] = project_ids(bank)
    bank.remove_hooks(pid)
    yield pid
    bank.remove_hooks(pid)


def test_a_project_without_the_hook_gets_one_recorded_with_a_fingerprint_not_the_secret(
    gitlab, registry, bank, project, imrt_engine
):
    other = bank.add_hook(project, "https://ci.example.org/hook", token="ci-secret")
    keeper = WebhookKeeper(gitlab, registry, URL, SECRET)
    assert not keeper.has_working_webhook(gitlab.hooks(project), registry.recorded([project]).get(project, {}))
    assert keeper.repair(project) == CREATE
    created = [h for h in bank.hooks(project) if h["url"] == URL]
    assert [(h["token"], h["push_events"], h["enable_ssl_verification"]) for h in created] == [(SECRET, True, True)]
    assert [h["id"] for h in bank.hooks(project) if h["url"] != URL] == [other["id"]]  # other hooks untouched
    assert keeper.has_working_webhook(gitlab.hooks(project), registry.recorded([project])[project])
    [row] = stored_rows(imrt_engine)
    assert (row["project_id"], row["hook_id"], row["secret_fingerprint"]) == (
        project,
        created[0]["id"],
        secret_fingerprint(SECRET),
    )
    assert SECRET not in str(row) and row["created_at"] <= row["updated_at"]
    assert keeper.repair(project) == NONE  # nothing more to do
    assert len(bank.hooks(project)) == 2


def test_a_duplicate_hook_with_our_url_is_removed_while_the_recorded_one_is_kept(gitlab, registry, bank, project):
    keeper = WebhookKeeper(gitlab, registry, URL, SECRET)
    keeper.repair(project)
    [kept] = bank.hooks(project)
    duplicate = bank.add_hook(project, URL, token="unknown")
    assert keeper.repair(project) == NONE
    assert [h["id"] for h in bank.hooks(project)] == [kept["id"]]
    assert registry.recorded([project]) == {project: {kept["id"]: secret_fingerprint(SECRET)}}
    assert gitlab.delete_hook(project, duplicate["id"]) is False  # already gone: not an error


def test_records_of_hooks_deleted_in_gitlab_are_dropped(gitlab, registry, bank, project):
    keeper = WebhookKeeper(gitlab, registry, URL, SECRET)
    keeper.repair(project)
    bank.remove_hooks(project)  # someone deleted it in GitLab
    assert keeper.repair(project) == CREATE
    [hook] = bank.hooks(project)
    assert registry.recorded([project]) == {project: {hook["id"]: secret_fingerprint(SECRET)}}


def test_an_unrecorded_hook_with_our_url_is_edited_to_carry_the_secret_NEEDS_PUT(gitlab, registry, bank, project):
    legacy = bank.add_hook(project, URL, token=None, push_events=False)  # made by the legacy service, say
    keeper = WebhookKeeper(gitlab, registry, URL, SECRET)
    assert keeper.repair(project) == UPDATE
    [hook] = bank.hooks(project)
    assert (hook["id"], hook["token"], hook["push_events"]) == (legacy["id"], SECRET, True)
    assert registry.recorded([project]) == {project: {legacy["id"]: secret_fingerprint(SECRET)}}


def test_a_secret_rotation_edits_every_hook_and_counts_those_left_NEEDS_PUT(
    gitlab, registry, bank, imrt_engine, tmp_path
):
    ids = project_ids(bank)
    for pid in ids:
        bank.remove_hooks(pid)
    old = services(gitlab, imrt_engine, tmp_path, PREVIOUS)
    first = dispatch_webhooks(old, needing_hooks(ids), RunParams())
    assert (sorted(first["created"]), first["failed"], first["on_other_secret"]) == (sorted(ids), {}, 0)

    rotated = services(gitlab, imrt_engine, tmp_path, SECRET)
    keeper = WebhookKeeper(gitlab, registry, URL, SECRET)
    assert not any(keeper.has_working_webhook(gitlab.hooks(pid), registry.recorded([pid]).get(pid, {})) for pid in ids)
    assert registry.count_not_on(secret_fingerprint(SECRET)) == len(ids)  # all still on the previous secret
    partial = dispatch_webhooks(rotated, needing_hooks(ids[:2]), RunParams())
    assert (sorted(partial["updated"]), partial["on_other_secret"]) == (sorted(ids[:2]), len(ids) - 2)
    rest = dispatch_webhooks(rotated, needing_hooks(ids[2:]), RunParams())
    assert (sorted(rest["updated"]), rest["created"], rest["on_other_secret"]) == (sorted(ids[2:]), [], 0)
    assert {h["token"] for pid in ids for h in bank.hooks(pid)} == {SECRET}
    assert all(len(bank.hooks(pid)) == 1 for pid in ids)
    for pid in ids:
        bank.remove_hooks(pid)


def test_a_dry_run_changes_nothing(gitlab, bank, imrt_engine, tmp_path, project):
    hooks_of = services(gitlab, imrt_engine, tmp_path, SECRET)
    outcome = dispatch_webhooks(hooks_of, needing_hooks([project]), RunParams(dry_run=True))
    assert outcome["created"] == [] and bank.hooks(project) == []


def test_a_failing_gitlab_is_reported_per_project_without_the_secret(gitlab, server, imrt_engine, tmp_path, project):
    server.faults.add("POST /api/v4/projects/:id/hooks", "status", status=500)
    hooks_of = services(gitlab, imrt_engine, tmp_path, SECRET)
    outcome = dispatch_webhooks(hooks_of, needing_hooks([project]), RunParams())
    assert list(outcome["failed"]) == [str(project)] and "answered 500" in outcome["failed"][str(project)]
    assert outcome["transient"] and SECRET not in str(outcome)
    assert stored_rows(imrt_engine) == []


def needing_hooks(project_ids: list[int]) -> PlanView:
    """A plan in which these projects lack a working hook."""
    return Plan(len(project_ids), (), (), (), (), tuple(project_ids)).as_dict()


def services(gitlab: GitLabClient, engine, tmp_path: Path, secret: str) -> Services:
    prepare_database(engine)
    settings = SyncSettings(group=GROUP, webhook_url=URL, webhook_secret=secret, git_cache_dir=tmp_path, concurrency=3)
    return Services(settings, gitlab, engine, GitAccess(TOKEN, 30, origin=gitlab.origin))
