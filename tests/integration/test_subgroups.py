"""Items in subgroups, as legacy 0.1.46 synced them, decided by namespace (not by a path prefix).

The bank: the group, a subgroup with items, and a look-alike group whose path starts with the group's (legacy's
``startsWith`` matched it; the namespace rule does not). Projects move between the group and its subgroup (never
"transferred out"), and out to the look-alike group (transferred out: deleted).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from protocol_runs import run
from sync_users import add_sync_user

from imrt_sync import pipeline
from imrt_sync.config import GitLabSettings, SyncSettings
from imrt_sync.gitlab import GitLabClient
from imrt_sync.gitrepo import GitAccess
from imrt_sync.schema_migrations import prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank

TOKEN = "glpat-subgroups-admin"
SYNC_TOKEN = "glpat-subgroups-sync"
GROUP = "iat-sub"
SUBGROUP = f"{GROUP}/grade-5/math"
LOOK_ALIKE = "iat-sub-old"
WEBHOOK_URL = "https://imrt.example.org/webHook"
SECRET = "subgroup-hook-secret"


@pytest.fixture
def bank(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(SUBGROUP)
    bank.create_group(LOOK_ALIKE)
    add_sync_user(bank, GROUP, SYNC_TOKEN)
    bank.add_member(LOOK_ALIKE, bank.user("imrt-sync")["id"], 40)  # it may see the look-alike's projects too
    top = generate_bank(bank, GROUP, count=3, seed=41)
    nested = generate_bank(bank, SUBGROUP, count=3, seed=42, start_id=300000)
    other = generate_bank(bank, LOOK_ALIKE, count=2, seed=43, start_id=400000)
    yield bank, top, nested, other
    bank.close()


@pytest.fixture
def server(bank):
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def services_for(server, imrt_engine, tmp_path):
    """``services_for(include_subgroups)``: the services of a run over a migrated imrt database."""
    prepare_database(imrt_engine)
    clients: list[GitLabClient] = []

    def make(include_subgroups: bool = True) -> pipeline.Services:
        settings = SyncSettings(
            group=GROUP,
            webhook_url=WEBHOOK_URL,
            webhook_secret=SECRET,
            concurrency=4,
            include_subgroups=include_subgroups,
            git_cache_dir=tmp_path / "cache",
        )
        gitlab = GitLabClient(
            GitLabSettings(base_url=server.url, token=SYNC_TOKEN, retries=1, backoff_factor=0.01, allow_http=True)
        )
        clients.append(gitlab)
        return pipeline.Services(settings, gitlab, imrt_engine, GitAccess(SYNC_TOKEN, 60, origin=server.url))

    yield make
    for client in clients:
        client.close()


def recorded(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT project_id FROM item_git")))


def ids(*project_lists) -> set[int]:
    return {p["id"] for projects in project_lists for p in projects}


def test_subgroup_items_are_synced_and_hooked_and_look_alike_groups_are_not(bank, services_for, imrt_engine):
    bank, top, nested, other = bank
    services = services_for()
    plan, verdict = run(services)
    assert verdict["status"] == "COMPLETED", verdict["message"]
    assert recorded(imrt_engine) == ids(top, nested)
    for project in top + nested:
        assert [(h["url"], h["token"]) for h in bank.hooks(project["id"])] == [(WEBHOOK_URL, SECRET)]
    for project in other:
        assert bank.hooks(project["id"]) == []


def test_moves_between_the_group_and_its_subgroups_keep_the_item(bank, services_for, imrt_engine):
    bank, top, nested, other = bank
    services = services_for()
    run(services)
    down, up = top[0], nested[0]
    bank.transfer_project(down["id"], SUBGROUP)
    bank.transfer_project(up["id"], GROUP)
    for params in ({"item_ids": (down["id"], up["id"])}, {}, {"mode": "full"}):
        plan, verdict = run(services, **params)
        assert plan["to_delete"] == [] and verdict["status"] == "COMPLETED", (params, verdict["message"])
        assert recorded(imrt_engine) == ids(top, nested), params

    gone_out = nested[1]  # to the look-alike group: out of the item bank, GitLab says where it went
    bank.transfer_project(gone_out["id"], LOOK_ALIKE)
    plan, verdict = run(services)
    assert plan["to_delete"] == [gone_out["id"]]
    assert verdict["message"].endswith("number of items deleted from IMRT: 1"), verdict["message"]
    assert recorded(imrt_engine) == ids(top, nested) - {gone_out["id"]}


def test_without_subgroups_only_the_group_is_the_item_bank(bank, services_for, imrt_engine):
    bank, top, nested, other = bank
    services = services_for(include_subgroups=False)
    plan, verdict = run(services)
    assert verdict["status"] == "COMPLETED", verdict["message"]
    assert plan["total_ids"] == len(top)
    assert recorded(imrt_engine) == ids(top)
