"""Deleting an item only when its project is confirmed gone, against the item bank server and PostgreSQL.

The runs here go through the run protocol as the DAG's tasks do (open_run, one sync_unit per unit,
dispatch_webhooks, close_run), or call its steps one by one. IMRT reads the bank as a sync user who is a Maintainer of
the (private) group, as in production; lost access is that user taken out of the group through GitLab's members API.
GitLab's answers for a project transferred away or a failing repository come from the server's fault injection,
shaped like GitLab's own.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import requests
import sqlalchemy as sa
from protocol_runs import run
from sync_users import add_sync_user, remove_sync_user

from imrt_sync import pipeline
from imrt_sync.config import GitLabSettings, RunParams, SyncSettings
from imrt_sync.contracts import RunResults, no_webhooks
from imrt_sync.gitlab import GitLabClient
from imrt_sync.gitrepo import GitAccess
from imrt_sync.schema_migrations import prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank

TOKEN = "glpat-deletion-safety-token"  # the administrator's: the test's own control calls
SYNC_TOKEN = "glpat-deletion-safety-sync-user"
GROUP = "iat-safety"
WEBHOOK_URL = "https://imrt.example.org/webHook"
ITEMS = 8
LOST_ACCESS = (
    f"GitLab group {GROUP} is not readable with the configured token (404 Group Not Found): "
    "lost access, wrong token or renamed group"
)
NOT_A_MEMBER = (
    f"GitLab does not show that the sync user can see every project of group {GROUP} (imrt-sync is not a member of "
    f"group {GROUP}); a user who lost membership gets the same 404 for a live project (lost access?)"
)


@pytest.fixture
def bank(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    add_sync_user(bank, GROUP, SYNC_TOKEN)
    projects = generate_bank(bank, GROUP, count=ITEMS, seed=11)
    yield bank, projects
    bank.close()


@pytest.fixture
def server(bank):
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def services(server, imrt_engine, tmp_path):
    settings = SyncSettings(group=GROUP, webhook_url=WEBHOOK_URL, git_cache_dir=tmp_path / "git-cache", concurrency=4)
    gitlab_settings = GitLabSettings(
        base_url=server.url, token=SYNC_TOKEN, retries=2, backoff_factor=0.01, allow_http=True
    )
    prepare_database(imrt_engine)
    with GitLabClient(gitlab_settings) as gitlab:  # git access as the DAG builds it: the client's retry settings
        yield pipeline.Services(settings, gitlab, imrt_engine, GitAccess.for_gitlab(gitlab_settings, 60))


def recorded(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT project_id FROM item_git")))


def item_count(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM item"))


@pytest.fixture
def synced(bank, services, imrt_engine):
    """The bank after a first full run: every item in IMRT."""
    plan, verdict = run(services)
    assert verdict["status"] == "COMPLETED", verdict
    assert recorded(imrt_engine) == {p["id"] for p in bank[1]}
    return bank


def project_answers_404(server, project_id: int, times: int | None = None) -> None:
    server.faults.add(
        "GET /api/v4/projects/:id",
        "status",
        status=404,
        body={"message": "404 Project Not Found"},
        path_regex=rf"/projects/{project_id}$",
        times=times,
    )


def test_a_targeted_run_deletes_an_item_only_when_its_project_is_really_gone(synced, server, services, imrt_engine):
    bank, projects = synced
    flaky, gone = projects[0], projects[1]

    # A 404 at listing time that GitLab no longer gives at delete time: the item is kept.
    project_answers_404(server, flaky["id"], times=1)
    plan, verdict = run(services, item_ids=(flaky["id"],))
    assert plan["to_delete"] == [flaky["id"]]
    assert flaky["id"] in recorded(imrt_engine)
    assert verdict["status"] == "COMPLETED" and verdict["message"].endswith("number of items deleted from IMRT: 0")

    # Really destroyed, with the group readable: deleted.
    bank.delete_project(gone["id"])
    plan, verdict = run(services, item_ids=(gone["id"],))
    assert plan["to_delete"] == [gone["id"]]
    assert recorded(imrt_engine) == {p["id"] for p in projects} - {gone["id"]}
    assert item_count(imrt_engine) == ITEMS - 1
    assert verdict["status"] == "COMPLETED" and verdict["message"].endswith("number of items deleted from IMRT: 1")


def test_lost_access_to_the_group_deletes_nothing_and_fails_the_listing_naming_the_cause(
    synced, server, services, imrt_engine
):
    bank, projects = synced
    target = projects[2]
    remove_sync_user(bank, GROUP)
    for params in ({"item_ids": (target["id"],)}, {}, {"mode": "full"}):  # targeted (push, /sync/N) and group runs
        with pytest.raises(pipeline.RunRefused) as refused:
            pipeline.list_ids(services, RunParams(**params))
        assert str(refused.value) == f"{LOST_ACCESS}; deleted nothing"
    assert recorded(imrt_engine) == {p["id"] for p in projects}

    verdict = pipeline.summarize(RunResults(None, listing_error=pipeline.describe_listing_failure(refused.value)))
    assert verdict["status"] == "FAILED"
    assert verdict["message"] == f"Listing the item bank failed: {LOST_ACCESS}; deleted nothing"


def test_access_lost_between_listing_and_delete_fails_the_delete_step_and_keeps_the_item(
    synced, bank, server, services, imrt_engine
):
    _, projects = synced
    target = projects[3]
    bank[0].delete_project(target["id"])
    run_params = RunParams(item_ids=(target["id"],))
    plan, units = pipeline.list_ids(services, run_params)
    assert plan["to_delete"] == [target["id"]]

    remove_sync_user(bank[0], GROUP)  # before the sync task runs
    outcomes = [pipeline.sync_unit(services, unit, run_params) for unit in units]
    assert outcomes[0]["failed"] == {str(target["id"]): f"project {target['id']}: {NOT_A_MEMBER}; not deleted"}
    assert outcomes[0]["transient"] is False  # retrying will not give access back
    assert target["id"] in recorded(imrt_engine)
    verdict = pipeline.summarize(RunResults(plan, units, outcomes, no_webhooks()))
    assert verdict["status"] == "FAILED" and NOT_A_MEMBER in verdict["message"]


def test_a_project_transferred_out_of_the_group_is_deleted(synced, server, services, imrt_engine):
    _, projects = synced
    moved = projects[4]
    entity = requests.get(f"{server.url}/api/v4/projects/{moved['id']}", headers={"PRIVATE-TOKEN": TOKEN}).json()
    elsewhere = {**entity["namespace"], "id": 999, "path": "iat-retired", "full_path": "iat-retired"}
    # GitLab's answer after a transfer: 200, the project in its new namespace (GET /projects/:id follows the id).
    server.faults.add(
        "GET /api/v4/projects/:id",
        "status",
        status=200,
        path_regex=rf"/projects/{moved['id']}$",
        body={**entity, "namespace": elsewhere, "path_with_namespace": f"iat-retired/{moved['path']}"},
    )
    plan, verdict = run(services, item_ids=(moved["id"],))
    assert plan["to_delete"] == [moved["id"]]
    assert moved["id"] not in recorded(imrt_engine)
    assert verdict["status"] == "COMPLETED" and verdict["message"].endswith("number of items deleted from IMRT: 1")


def test_an_archived_project_stays_and_keeps_syncing(synced, services, imrt_engine):
    bank, projects = synced
    archived = projects[5]
    bank.set_archived(archived["id"])
    head = edit_item_json(bank, archived["id"], "archived later")
    plan, verdict = run(services)
    assert plan["to_sync"] == [archived["id"]] and plan["to_delete"] == []
    assert verdict["status"] == "COMPLETED"
    with imrt_engine.connect() as conn:
        stored = conn.scalar(
            sa.text("SELECT current_commit_hash FROM item_git WHERE project_id = :p"), {"p": archived["id"]}
        )
    assert stored == head


def edit_item_json(bank: ItemBank, project_id: int, note: str) -> str:
    """Commit a change to the project's item.json; return the commit."""
    document = json.loads(bank.read_file(project_id, "item.json"))
    document["note"] = note
    return bank.push_commit(project_id, files={"item.json": document}, message=note)


@pytest.mark.parametrize("failing", ["ref advertisement", "hooks list"])
def test_a_project_that_keeps_failing_is_reported_and_skipped_and_nothing_is_deleted_that_run(
    synced, server, services, imrt_engine, failing
):
    bank, projects = synced
    # The REST listing's per-project reads failing (the sweep reads neither; a sweep failing falls back to them).
    services = dataclasses.replace(services, settings=dataclasses.replace(services.settings, listing="rest"))
    broken, edited, gone = projects[0], projects[1], projects[2]
    head = edit_item_json(bank, edited["id"], "edited")
    bank.delete_project(gone["id"])
    if failing == "ref advertisement":
        server.faults.add("git info/refs", "status", status=503, path_regex=rf"/{broken['path']}\.git/info/refs")
        error = "GitFetchError: git ls-remote"
    else:
        server.faults.add(
            "GET /api/v4/projects/:id/hooks", "status", status=500, path_regex=rf"/projects/{broken['id']}/hooks"
        )
        error = f"GitLabError: GitLab GET /api/v4/projects/{broken['id']}/hooks answered 500"

    plan, verdict = run(services)
    assert list(plan["failed"]) == [str(broken["id"])]
    assert plan["to_sync"] == [edited["id"]] and plan["to_delete"] == [] and plan["gone"] == [gone["id"]]
    assert gone["id"] in recorded(imrt_engine)  # not deleted this run
    with imrt_engine.connect() as conn:
        assert (
            conn.scalar(sa.text("SELECT current_commit_hash FROM item_git WHERE project_id = :p"), {"p": edited["id"]})
            == head
        )  # the others synced
    assert verdict["status"] == "FAILED" and verdict["skip_count"] == 1
    message = verdict["message"]
    assert f"Failed item bank ids: {broken['id']}. " in message
    assert f"project {broken['id']} ({broken['path']}): {error}" in message
    assert "1 listed projects could not be read" in message and "deleted none of the 1 items" in message

    server.faults.clear()  # the next run reads every project: it deletes the gone item
    plan, verdict = run(services)
    assert plan["to_delete"] == [gone["id"]] and verdict["status"] == "COMPLETED"
    assert gone["id"] not in recorded(imrt_engine)


def test_the_guard_of_a_targeted_run_counts_every_item_in_item_git(synced, services, imrt_engine):
    bank, projects = synced
    doomed = projects[:6]  # 6 of 8 items: above max(5, 10% of 8)
    for project in doomed:
        bank.delete_project(project["id"])
    plan, verdict = run(services, item_ids=tuple(p["id"] for p in doomed))
    assert plan["to_delete"] == [] and "6 of 8 items would be deleted" in plan["deletion_blocked"]
    assert recorded(imrt_engine) == {p["id"] for p in projects}
    assert verdict["status"] == "FAILED"


@pytest.mark.parametrize("keyset", [True, False], ids=["keyset pages", "offset pages as GitLab lists a group"])
def test_projects_deleted_and_created_during_a_listing_without_totals_delete_nothing_wrongly(
    tmp_path, imrt_engine, keyset
):
    """GitLab stops counting above 10,000 projects (lowered to 50 here): no X-Total to check the listing against.
    While the second page is in flight, a project of the first page and an item of the second are deleted and a
    project is created. Offset pages then shift: the item that was first on page 2 is never listed, and the plan
    wants to delete it; the delete-time question to GitLab keeps it. Only the really deleted item goes."""
    from concurrent.futures import ThreadPoolExecutor

    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    padding = [bank.create_project(GROUP, f"pad-{n:03d}") for n in range(95)]  # empty: listed, never synced
    items = generate_bank(bank, GROUP, count=12, seed=5)  # positions 95-106: across the page boundary at 100
    bank.create_project(GROUP, "pad-last")
    shifted, deleted = items[5], items[9]  # first of page 2 before the shift; on page 2
    with ItemBankServer(bank, tokens={TOKEN}, count_limit=50, keyset_group_projects=keyset) as server:
        settings = SyncSettings(  # the REST listing's pages (the sweep's are test_sweep's)
            group=GROUP, webhook_url=WEBHOOK_URL, git_cache_dir=tmp_path / "cache", concurrency=4, listing="rest"
        )
        gitlab_settings = GitLabSettings(
            base_url=server.url, token=TOKEN, retries=2, backoff_factor=0.01, allow_http=True
        )
        prepare_database(imrt_engine)
        with GitLabClient(gitlab_settings) as gitlab:
            services = pipeline.Services(settings, gitlab, imrt_engine, GitAccess(TOKEN, 60, origin=server.url))
            plan, verdict = run(services)
            assert verdict["status"] == "COMPLETED" and recorded(imrt_engine) == {p["id"] for p in items}

            listing = "GET /api/v4/groups/:id/projects"
            server.reset_counters()
            server.faults.add(listing, "latency", seconds=2)
            with ThreadPoolExecutor(max_workers=1) as pool:
                planned = pool.submit(pipeline.list_ids, services, RunParams())
                wait_for(lambda: server.counters().get(listing, 0) >= 2, "the second listing page")
                bank.delete_project(padding[0]["id"])
                bank.delete_project(deleted["id"])
                bank.create_project(GROUP, "created-meanwhile")
                planned = planned.result()
            server.faults.clear()
            expected_plan = [deleted["id"]] if keyset else sorted([shifted["id"], deleted["id"]])
            plan, units = planned
            assert plan["to_delete"] == expected_plan
            outcomes = [pipeline.sync_unit(services, unit, RunParams()) for unit in units]
            verdict = pipeline.summarize(RunResults(plan, units, outcomes, no_webhooks()))
    assert recorded(imrt_engine) == {p["id"] for p in items} - {deleted["id"]}
    assert plan["failed"] == {}  # a project gone since the listing is no read failure
    assert "number of items deleted from IMRT: 1" in verdict["message"]
    bank.close()


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_project_listed_but_404_by_id_is_contradictory_and_kept(synced, server, services, imrt_engine):
    """The measured case: GET /projects/:id answers 404 for a project the group's listing still shows. With the sync
    user's access proven, a targeted run (a push, POST /sync/{id}) still deletes nothing: it lists the group after
    the 404, finds the project there, and fails the item saying so."""
    _, projects = synced
    target = projects[5]
    project_answers_404(server, target["id"])
    plan, verdict = run(services, item_ids=(target["id"],))
    assert plan["to_delete"] == [target["id"]]  # planned on the 404, then checked at delete time
    assert target["id"] in recorded(imrt_engine)
    assert verdict["status"] == "FAILED"
    assert (
        f"project {target['id']}: GitLab lists project {target['id']} in the group {GROUP} and its subgroups but "
        "answers 404 for it by id: contradictory answers; not deleted"
    ) in verdict["message"]
    assert "number of items deleted from IMRT: 0" in verdict["message"]


def test_a_listed_project_that_answers_404_when_read_is_not_deleted_that_run(synced, server, services, imrt_engine):
    _, projects = synced
    target = projects[6]
    # The REST listing's hooks read (the sweep reads no hooks while listing).
    services = dataclasses.replace(services, settings=dataclasses.replace(services.settings, listing="rest"))
    server.faults.add(
        "GET /api/v4/projects/:id/hooks",
        "status",
        status=404,
        body={"message": "404 Project Not Found"},
        path_regex=rf"/projects/{target['id']}/hooks",
    )
    for params in ({}, {"mode": "full"}):
        plan, verdict = run(services, **params)
        assert plan["to_delete"] == [] and target["id"] in recorded(imrt_engine)
        assert verdict["status"] == "FAILED"
        assert (
            f"project {target['id']} ({target['path']}): listed by GitLab, then not found when read"
            in plan["failed"][str(target["id"])]
        )
    server.faults.clear()
    plan, verdict = run(services)
    assert verdict["status"] == "COMPLETED", verdict["message"]
    assert target["id"] in recorded(imrt_engine)
