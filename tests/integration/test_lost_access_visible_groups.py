"""Lost access where the group stays visible: nothing is deleted, every kind of run fails naming lost access.

GitLab keeps showing an internal group to every signed-in user and a public one to everyone, while their private
projects answer 404 and drop out of the listings for a user who is not a member
(https://docs.gitlab.com/user/public_access/); a private group is shown to a user who is a member of one of its
projects only. Each case: the sync user (a Maintainer of the group) syncs the bank, then loses its membership
through GitLab's members API; a targeted run (a push's hook event, ``POST /sync/{id}``), an incremental run, a full
run and a delete step planned before the loss all delete nothing. With the membership back, a run completes and a
project really deleted meanwhile goes.
"""

from __future__ import annotations

import protocol_runs
import pytest
import sqlalchemy as sa
from sync_users import SYNC_USERNAME, add_sync_user, remove_sync_user, restore_sync_user

from imrt_sync import pipeline
from imrt_sync.config import GitLabSettings, RunParams, SyncSettings
from imrt_sync.contracts import PlanView, RunContext, RunResults, Verdict
from imrt_sync.gitlab import GitLabClient
from imrt_sync.gitrepo import GitAccess
from imrt_sync.schema_migrations import prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank
from itembank_server.users import REPORTER

TOKEN = "glpat-visible-groups-admin"
SYNC_TOKEN = "glpat-visible-groups-sync"
GROUP = "iat-visible"
WEBHOOK_URL = "https://imrt.example.org/webHook"
LOST_ACCESS = (
    f"GitLab does not show that the sync user can see every project of group {GROUP} ({SYNC_USERNAME} is not a member "
    f"of group {GROUP}); a user who lost membership gets the same 404 for a live project (lost access?)"
)


def build_bank(root, group_visibility: str) -> tuple[ItemBank, list[dict], list[dict]]:
    """Four private item projects and two as visible as the group, in a group of ``group_visibility``."""
    bank = ItemBank(root)
    bank.create_group(GROUP, visibility=group_visibility)
    add_sync_user(bank, GROUP, SYNC_TOKEN)
    private = generate_bank(bank, GROUP, count=4, seed=31)
    visible = generate_bank(bank, GROUP, count=2, seed=32, start_id=300000, visibility=group_visibility)
    return bank, private, visible


@pytest.fixture(params=["internal", "public", "private"])
def bank(request, tmp_path):
    bank, private, visible = build_bank(tmp_path / "bank", request.param)
    yield bank, private, visible
    bank.close()


@pytest.fixture
def services(bank, imrt_engine, tmp_path):
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        settings = SyncSettings(group=GROUP, webhook_url=WEBHOOK_URL, git_cache_dir=tmp_path / "cache", concurrency=4)
        gitlab_settings = GitLabSettings(
            base_url=server.url, token=SYNC_TOKEN, retries=1, backoff_factor=0.01, allow_http=True
        )
        prepare_database(imrt_engine)
        with GitLabClient(gitlab_settings) as gitlab:
            yield pipeline.Services(settings, gitlab, imrt_engine, GitAccess(SYNC_TOKEN, 60, origin=server.url))


def run(services, **params) -> tuple[PlanView | None, Verdict]:
    """A run, or, when list_ids refuses to plan, its verdict as close_run records it."""
    try:
        return protocol_runs.run(services, **params)
    except pipeline.RunRefused as refused:
        context = RunContext("manual__visible-refused", RunParams(**params))
        results = RunResults(None, listing_error=pipeline.describe_listing_failure(refused))
        return None, pipeline.close_run(services, context, results)


def recorded(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT project_id FROM item_git")))


@pytest.fixture
def synced(bank, services, imrt_engine):
    _, private, visible = bank
    plan, verdict = run(services)
    assert verdict["status"] == "COMPLETED", verdict["message"]
    assert recorded(imrt_engine) == {p["id"] for p in private + visible}
    return bank


def test_lost_membership_deletes_nothing_in_any_kind_of_run(synced, services, imrt_engine):
    bank, private, visible = synced
    everything = recorded(imrt_engine)
    remove_sync_user(bank, GROUP)

    pushed = private[0]["id"]  # a push's hook event, or POST /sync/{id}: a targeted run
    for params in ({"item_ids": (pushed,)}, {}, {"mode": "full"}):
        plan, verdict = run(services, **params)
        assert verdict["status"] == "FAILED", (params, verdict["message"])
        assert recorded(imrt_engine) == everything, params
        if plan is None:  # a private group is not readable any more: the listing itself is refused
            assert "is not readable with the configured token" in verdict["message"]
            assert verdict["message"].endswith("deleted nothing")
            continue
        assert "number of items deleted from IMRT: 0" in verdict["message"]
        assert plan["to_delete"] == []
        assert LOST_ACCESS in verdict["message"]
        assert f"project {pushed}: missing from the item bank listing, not deleted" in verdict["message"]

    restore_sync_user(bank, GROUP)
    bank.delete_project(private[1]["id"])
    plan, verdict = run(services)
    assert verdict["status"] == "COMPLETED", verdict["message"]
    assert recorded(imrt_engine) == everything - {private[1]["id"]}


def test_access_lost_after_planning_keeps_the_item_at_delete_time(synced, services, imrt_engine):
    bank, private, _ = synced
    doomed = private[2]["id"]
    bank.delete_project(doomed)
    plan, units = pipeline.list_ids(services, RunParams(item_ids=(doomed,)))
    assert plan["to_delete"] == [doomed]
    remove_sync_user(bank, GROUP)
    fresh = pipeline.Services(services.settings, services.gitlab, services.engine, services.git_access)
    [outcome] = [pipeline.sync_unit(fresh, unit, RunParams(item_ids=(doomed,))) for unit in units]
    assert outcome["failed"] == {str(doomed): f"project {doomed}: {LOST_ACCESS}; not deleted"}
    assert outcome["transient"] is False
    assert doomed in recorded(imrt_engine)


def test_a_member_of_some_projects_only_sees_the_group_but_deletes_nothing(synced, services, imrt_engine):
    bank, private, visible = synced
    everything = recorded(imrt_engine)
    remove_sync_user(bank, GROUP)
    sync_user = bank.user(SYNC_USERNAME)
    bank.add_project_member(private[3]["id"], sync_user["id"], REPORTER)
    plan, verdict = run(services)
    assert plan is not None, verdict["message"]  # GitLab shows the group to a member of one of its projects
    assert plan["to_delete"] == [] and verdict["status"] == "FAILED"
    assert LOST_ACCESS in verdict["message"]
    assert recorded(imrt_engine) == everything


def test_a_guest_of_the_group_is_no_proof_of_access(synced, services, imrt_engine):
    bank, private, _ = synced
    remove_sync_user(bank, GROUP)
    restore_sync_user(bank, GROUP, access_level=10)
    bank.delete_project(private[0]["id"])
    plan, verdict = run(services, item_ids=(private[0]["id"],))
    assert plan is not None and plan["to_delete"] == []
    assert f"{SYNC_USERNAME} has access level 10 in group {GROUP}, below Reporter (20)" in verdict["message"]
    assert private[0]["id"] in recorded(imrt_engine)
