"""Group runs planned from the GraphQL sweep (imrt_sync.sweep), on the item bank server and PostgreSQL: what a run
costs GitLab when nothing changed, which projects it reads on their own, when it falls back to REST, and which
projects' hooks it checks. Request counts are the server's counters."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace

import pytest
import sqlalchemy as sa
from protocol_runs import run

from imrt_sync import pipeline
from imrt_sync.config import GitLabSettings, SyncSettings
from imrt_sync.schema_migrations import prepare_database
from imrt_sync.scope import GroupScope
from imrt_sync.webhook_events import EventLog, parse_event, triage
from itembank_server import ItemBank, ItemBankServer, bank_repos, generate_bank
from itembank_server.graphql_api import GITALY_ENDPOINT
from itembank_server.webhook_payloads import push_payload

TOKEN = "glpat-sweep-token"
GROUP = "iat-sweep"
WEBHOOK_URL = "https://imrt.example.org/webHook"
ITEMS = 120  # two pages of the sweep; 2 of them still being created (generate_bank's 2 %)
VERIFY_DAYS = 7
SLOW_PAGE_SECONDS = 8.0  # the server's GraphQL timeout: far more than a page takes here
GRAPHQL = "POST /api/graphql"
HOOKS_LIST = "GET /api/v4/projects/:id/hooks"
PROJECT_READ = "GET /api/v4/projects/:id"


@pytest.fixture
def bank_and_projects(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    projects = generate_bank(bank, GROUP, count=ITEMS, seed=23)
    yield bank, projects
    bank.close()


@pytest.fixture
def server(bank_and_projects):
    with ItemBankServer(bank_and_projects[0], tokens={TOKEN}, graphql_timeout=SLOW_PAGE_SECONDS) as server:
        yield server


def open_services(server, engine, cache, **settings):
    sync = SyncSettings(
        group=GROUP,
        webhook_url=WEBHOOK_URL,
        git_cache_dir=cache,
        concurrency=4,
        webhook_verify_days=VERIFY_DAYS,
        **settings,
    )
    gitlab = GitLabSettings(base_url=server.url, token=TOKEN, retries=1, backoff_factor=0.01, allow_http=True)
    return pipeline.Services.open(sync, gitlab, engine)


@pytest.fixture
def services(server, imrt_engine, tmp_path):
    prepare_database(imrt_engine)
    with open_services(server, imrt_engine, tmp_path / "git-cache") as services:
        yield services


@pytest.fixture
def synced(bank_and_projects, server, services, imrt_engine):
    """Every item synced and every project given its hook by a first run; the counters reset."""
    plan, verdict = run(services)
    assert verdict["status"] == "COMPLETED", verdict
    assert len(recorded_heads(imrt_engine)) == ITEMS
    server.reset_counters()
    return bank_and_projects


def recorded_heads(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT project_id, head_sha FROM imrt_project_head")).all())


def item_log_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM item_log"))


def next_rotation(engine) -> set[int]:
    """The projects whose hooks the next run's rotation checks: those checked VERIFY_DAYS or more days ago."""
    with engine.connect() as conn:
        return set(
            conn.scalars(
                sa.text(
                    "SELECT project_id FROM imrt_project_hook_check WHERE checked_at <= now() - make_interval(days => :d)"
                ),
                {"d": VERIFY_DAYS},
            )
        )


def checked_days_ago(engine, project_ids: list[int], days: int) -> None:
    """Date the last hook check of the projects back, as if it had been made ``days`` days ago."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE imrt_project_hook_check SET checked_at = now() - make_interval(days => :d) "
                "WHERE project_id = ANY(:ids)"
            ),
            {"d": days, "ids": project_ids},
        )


def being_created(bank: ItemBank, projects: list[dict]) -> list[dict]:
    return [p for p in projects if bank.read_file(p["id"], "item.json") is None]


def outside_rotation(bank: ItemBank, engine, projects: list[dict], count: int) -> list[dict]:
    """``count`` published items whose hook the next run's rotation does not check."""
    left_out = {p["id"] for p in being_created(bank, projects)} | next_rotation(engine)
    return [p for p in projects if p["id"] not in left_out][:count]


def edited_item(bank: ItemBank, project_id: int, note: str) -> dict:
    document = json.loads(bank.read_file(project_id, "item.json"))
    document["note"] = note
    return {"item.json": document}


def record_push_event(bank: ItemBank, engine, project_id: int, before: str, after: str) -> None:
    """The push event GitLab's hook delivers for the push, recorded as the hook receiver records it."""
    project = bank.project(project_id)
    ref = f"refs/heads/{project['default_branch']}"
    payload = push_payload(
        bank.repo_path(project), project, bank.ensure_user("author"), before, after, ref, "http://gitlab.example.org"
    )
    event = parse_event("Push Hook", json.dumps(payload).encode(), f"uuid-{project_id}-{after[:8]}")
    EventLog(engine).record(event, triage(event, GroupScope(GROUP), ()))


def test_a_nothing_changed_run_costs_one_graphql_request_per_hundred_projects(synced, server, services, imrt_engine):
    bank, projects = synced
    rotation = next_rotation(imrt_engine)
    created = being_created(bank, projects)
    assert len(created) == 2

    plan, verdict = run(services)

    assert verdict["status"] == "COMPLETED", verdict
    assert plan["to_sync"] == [] and plan["unchanged"] == ITEMS and plan["to_delete"] == []
    assert plan["verify_webhooks"] == sorted(rotation)
    counters = server.counters()
    # One page per 100 projects and one query for the create branches (40 a query); nothing else at all.
    assert counters.get(HOOKS_LIST, 0) == len(rotation) == 0  # every hook was checked by the first run
    assert counters == {GRAPHQL: math.ceil(ITEMS / 100) + 1}


def test_a_changed_project_is_synced_and_its_hook_checked_only_without_a_delivery(synced, services, imrt_engine):
    bank, projects = synced
    delivered, silent, readme_only = outside_rotation(bank, imrt_engine, projects, 3)
    before = bank.head(delivered["id"])
    after = bank.push_commit(delivered["id"], files=edited_item(bank, delivered["id"], "delivered"))
    record_push_event(bank, imrt_engine, delivered["id"], before, after)
    bank.push_commit(silent["id"], files=edited_item(bank, silent["id"], "no hook delivery"))
    bank.push_commit(readme_only["id"], files={"README.md": "# only the readme\n"})
    log_rows = item_log_rows(imrt_engine)

    plan, verdict = run(services)

    assert verdict["status"] == "COMPLETED", verdict
    assert plan["to_sync"] == sorted([delivered["id"], silent["id"], readme_only["id"]])
    assert item_log_rows(imrt_engine) == log_rows + 2  # the README-only push writes no item row
    assert recorded_heads(imrt_engine)[readme_only["id"]] == bank.head(readme_only["id"])  # only its head
    checked = set(plan["verify_webhooks"])
    assert {silent["id"], readme_only["id"]} <= checked and delivered["id"] not in checked


def test_a_changed_project_whose_hook_is_gone_gets_it_back_and_the_exit_message_counts_it(
    synced, services, imrt_engine
):
    bank, projects = synced
    (broken,) = outside_rotation(bank, imrt_engine, projects, 1)
    for hook in services.gitlab.hooks(broken["id"]):
        services.gitlab.delete_hook(broken["id"], hook["id"])
    bank.push_commit(broken["id"], files=edited_item(bank, broken["id"], "pushed while the hook was gone"))

    plan, verdict = run(services)

    assert plan["to_sync"] == [broken["id"]] and broken["id"] in plan["verify_webhooks"]
    assert [hook["url"] for hook in services.gitlab.hooks(broken["id"])] == [WEBHOOK_URL]
    assert verdict["status"] == "COMPLETED", verdict
    assert "number of items requiring project webhook: 1," in verdict["message"]


def test_a_new_project_is_synced_and_gets_its_hook(synced, services):
    bank, _ = synced
    (new,) = generate_bank(bank, GROUP, count=1, seed=99, start_id=900000)

    plan, verdict = run(services)

    assert plan["to_sync"] == [new["id"]] and new["id"] in plan["verify_webhooks"]
    assert [hook["url"] for hook in services.gitlab.hooks(new["id"])] == [WEBHOOK_URL]
    assert verdict["status"] == "COMPLETED", verdict


def test_an_item_being_created_is_synced_when_its_create_branch_moves(synced, services, imrt_engine):
    bank, projects = synced
    created = being_created(bank, projects)[0]
    refs = bank_repos.list_refs(bank.repo_path(bank.project(created["id"])))
    branch = next(ref.removeprefix("refs/heads/") for ref in refs if ref.startswith("refs/heads/create_"))
    document = json.loads(bank.read_file(created["id"], "item.json", ref=f"refs/heads/{branch}"))
    bank.push_commit(created["id"], files={"item.json": {**document, "note": "drafted"}}, branch=branch)

    plan, verdict = run(services)

    assert plan["to_sync"] == [created["id"]]
    assert verdict["status"] == "COMPLETED", verdict


def test_a_project_whose_repository_fields_time_out_is_read_on_its_own_never_taken_as_unchanged(
    synced, server, services, imrt_engine
):
    bank, projects = synced
    # The last project of the first page (GitLab pages projects newest first): its repository's first Gitaly call
    # ends past the request's timeout, so its fields after that one are null with an error; the next page is a
    # new request. (Past the timeout in mid-page, the later projects' ids are null too: the run is listed via REST.)
    slow = sorted(projects, key=lambda project: project["id"], reverse=True)[99]
    bank.push_commit(slow["id"], files=edited_item(bank, slow["id"], "pushed while GitLab is slow"))
    server.faults.add(
        GITALY_ENDPOINT, "latency", seconds=SLOW_PAGE_SECONDS + 1, path_regex=rf"/{GROUP}/{slow['path']}\.git$", times=1
    )

    plan, verdict = run(services)

    assert slow["id"] in plan["to_sync"] and plan["failed"] == {}
    assert verdict["status"] == "COMPLETED", verdict
    assert server.counters()[PROJECT_READ] >= 1
    assert recorded_heads(imrt_engine)[slow["id"]] == bank.head(slow["id"])


def test_projects_the_sweep_cannot_name_list_the_run_through_rest_and_delete_nothing(
    synced, server, services, imrt_engine, caplog
):
    bank, projects = synced
    # Past the timeout in mid-page, every later project's id is null, so is the project (its id is non-null).
    slow = sorted(projects, key=lambda project: project["id"], reverse=True)[10]
    path = rf"/{GROUP}/{slow['path']}\.git$"
    server.faults.add(GITALY_ENDPOINT, "latency", seconds=SLOW_PAGE_SECONDS + 1, path_regex=path, times=1)
    heads = recorded_heads(imrt_engine)

    with caplog.at_level(logging.WARNING, logger="imrt_sync.pipeline.listing"):
        plan, verdict = run(services)

    assert verdict["status"] == "COMPLETED", verdict
    assert plan["to_delete"] == [] and plan["gone"] == [] and plan["total_ids"] == ITEMS
    assert recorded_heads(imrt_engine) == heads
    assert server.counters()[HOOKS_LIST] == ITEMS  # the REST listing: every project's hooks
    assert "listing the group through REST this run" in caplog.text and "Timeout on Project.id" in caplog.text


def test_a_sweep_gitlab_answers_with_500_falls_back_to_rest_and_deletes_nothing(
    synced, server, services, imrt_engine, caplog
):
    bank, projects = synced
    broken = projects[3]
    server.faults.add(GITALY_ENDPOINT, "status", status=500, path_regex=rf"/{GROUP}/{broken['path']}\.git$")
    heads = recorded_heads(imrt_engine)

    with caplog.at_level(logging.WARNING, logger="imrt_sync.pipeline.listing"):
        plan, verdict = run(services)

    assert verdict["status"] == "COMPLETED", verdict
    assert plan["to_delete"] == [] and plan["gone"] == [] and plan["total_ids"] == ITEMS
    assert recorded_heads(imrt_engine) == heads
    assert server.counters()[HOOKS_LIST] == ITEMS  # the REST listing: every project's hooks
    assert "listing the group through REST this run" in caplog.text
    assert "answered 500" in caplog.text


def test_gitlab_without_graphql_is_listed_through_rest(synced, server, services, caplog):
    server.faults.add(GRAPHQL, "status", status=404, body={"message": "404 Not Found"})

    with caplog.at_level(logging.WARNING, logger="imrt_sync.pipeline.listing"):
        plan, verdict = run(services)

    assert verdict["status"] == "COMPLETED", verdict
    assert plan["to_sync"] == [] and plan["total_ids"] == ITEMS
    assert server.counters()[HOOKS_LIST] == ITEMS  # the REST listing: every project's hooks
    assert "answered 404" in caplog.text


def test_the_rest_listing_setting_never_asks_graphql(synced, server, imrt_engine, tmp_path):
    with open_services(server, imrt_engine, tmp_path / "cache", listing="rest") as services:
        plan, verdict = run(services)

    assert verdict["status"] == "COMPLETED", verdict
    assert plan["to_sync"] == [] and plan["verify_webhooks"] == []
    counters = server.counters()
    assert GRAPHQL not in counters and counters[HOOKS_LIST] == ITEMS


def test_a_project_missing_from_the_sweep_is_deleted_only_once_proven_gone(synced, services, imrt_engine):
    bank, projects = synced
    gone = outside_rotation(bank, imrt_engine, projects, 1)[0]
    bank.delete_project(gone["id"])

    plan, verdict = run(services)

    assert plan["gone"] == [gone["id"]] and plan["to_delete"] == [gone["id"]]
    assert gone["id"] not in recorded_heads(imrt_engine)
    assert verdict["message"].endswith("number of items deleted from IMRT: 1")


def test_a_run_checks_the_hooks_due_and_they_are_not_due_again_for_a_week(synced, services, imrt_engine):
    """The weekly rotation: right after the first run checked every hook none is due; hooks last checked a week
    ago are checked by the next run, and then not again."""
    bank, projects = synced
    assert next_rotation(imrt_engine) == set()
    week_old = [p["id"] for p in projects[:5]]
    checked_days_ago(imrt_engine, week_old, VERIFY_DAYS)
    plan, _ = run(services)
    assert plan["verify_webhooks"] == sorted(week_old)
    plan, _ = run(services)
    assert plan["verify_webhooks"] == [] and next_rotation(imrt_engine) == set()


def test_a_spread_rotation_checks_the_hooks_checked_longest_ago_each_run(synced, services, imrt_engine):
    spread = replace(services, settings=replace(services.settings, webhook_verify_spread=True))
    share = math.ceil(ITEMS / VERIFY_DAYS)
    first, _ = run(spread)
    second, _ = run(spread)
    assert len(first["verify_webhooks"]) == len(second["verify_webhooks"]) == share
    assert not set(first["verify_webhooks"]) & set(second["verify_webhooks"])


@pytest.fixture
def server_without_commit(bank_and_projects):
    with ItemBankServer(bank_and_projects[0], tokens={TOKEN}, graphql_repository_commit=False) as server:
        yield server


def test_a_gitlab_without_repository_commit_is_swept_by_the_item_json_blob(
    bank_and_projects, server_without_commit, imrt_engine, tmp_path
):
    bank, projects = bank_and_projects
    server = server_without_commit
    prepare_database(imrt_engine)
    with open_services(server, imrt_engine, tmp_path / "git-cache") as services:
        plan, verdict = run(services)  # nothing recorded: every project read on its own, then its blob recorded
        assert verdict["status"] == "COMPLETED", verdict
        with imrt_engine.connect() as conn:
            blobs = dict(conn.execute(sa.text("SELECT project_id, item_blob_oid FROM imrt_project_head")).all())
        published = [p for p in projects if p not in being_created(bank, projects)]
        project = bank.project(published[0]["id"])
        assert blobs[project["id"]] == bank_repos.blob_ids(bank.repo_path(project), "HEAD", ["item.json"])[0][1]

        edited, readme_only = published[1], published[2]
        bank.push_commit(edited["id"], files=edited_item(bank, edited["id"], "edited"))
        bank.push_commit(readme_only["id"], files={"README.md": "# only the readme\n"})
        server.reset_counters()
        plan, verdict = run(services)

    assert verdict["status"] == "COMPLETED", verdict
    assert plan["to_sync"] == [edited["id"]]  # the README-only push leaves item.json's blob as it was
    counters = server.counters()
    assert counters[GRAPHQL] == 1 + math.ceil(ITEMS / 100)
    assert counters[PROJECT_READ] == len(being_created(bank, projects)) + 2  # + the edited one, then its sync
