"""The first runs on an ``imrt`` database the legacy service left: cut-over from legacy 0.1.46.

The database is built as legacy 0.1.46 left it for the bank: its legacy tables only (no table of this service, no
``imrt_alembic_version``), rows by the legacy rules (written by this service's writer, which follows them, then
stripped of everything of ours), ``workflow_status_set_at`` as the legacy rule set it (a date that the rule of this
service would not compute, so that any rewrite shows), and project hooks that legacy created without a secret. Items
live in the group and in a subgroup, as legacy synced them. The bank then moves on while the service is switched:
one item gets a new ``item.json`` commit, one a README-only commit. Then the deployment's migration and the first
scheduled (incremental) run, after a dry run as docs/deployment.md's cut-over procedure has it.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from protocol_runs import run
from sync_users import add_sync_user

from imrt_sync import pipeline
from imrt_sync.config import GitLabSettings, RunParams, SyncSettings
from imrt_sync.gitlab import GitLabClient
from imrt_sync.gitrepo import GitAccess
from imrt_sync.schema import OWN_TABLES
from imrt_sync.schema_migrations import current_revision, prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank

TOKEN = "glpat-cut-over-admin"
SYNC_TOKEN = "glpat-cut-over-sync-user"
GROUP = "iat-cutover"
SUBGROUP = f"{GROUP}/grade-3"
WEBHOOK_URL = "https://imrt.example.org/webHook"
SECRET = "cut-over-hook-secret"
LEGACY_STATUS_DATE = "2018-05-01 12:00:00+00"
ROW_TABLES = ("item", "item_git", "item_log", "stim_link", "item_attachment", "item_form")


@pytest.fixture
def bank(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(SUBGROUP)
    add_sync_user(bank, GROUP, SYNC_TOKEN)
    projects = generate_bank(bank, GROUP, count=6, seed=21) + generate_bank(
        bank, SUBGROUP, count=3, seed=22, start_id=300000
    )
    yield bank, projects
    bank.close()


@pytest.fixture
def services(bank, imrt_engine, tmp_path):
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        settings = SyncSettings(
            group=GROUP,
            webhook_url=WEBHOOK_URL,
            webhook_secret=SECRET,
            git_cache_dir=tmp_path / "git-cache",
            concurrency=4,
        )
        gitlab_settings = GitLabSettings(
            base_url=server.url, token=SYNC_TOKEN, retries=2, backoff_factor=0.01, allow_http=True
        )
        with GitLabClient(gitlab_settings) as gitlab:
            yield pipeline.Services(settings, gitlab, imrt_engine, GitAccess(SYNC_TOKEN, 60, origin=server.url))


def leave_as_legacy(services, bank: ItemBank, projects: list[dict]) -> None:
    """The database and the hooks as legacy 0.1.46 left them (see the module docstring)."""
    engine = services.engine
    prepare_database(engine)
    planned = pipeline.list_ids(services, RunParams(mode="full"))
    for unit in planned[1]:
        outcome = pipeline.sync_unit(services, unit, RunParams(mode="full"))
        assert outcome["failed"] == {}, outcome
    with engine.begin() as conn:
        for table in (*OWN_TABLES, "imrt_alembic_version"):
            conn.execute(sa.text(f'DROP TABLE "{getattr(table, "name", table)}"'))
        conn.execute(
            sa.text(
                "DELETE FROM batch_job_execution_context; DELETE FROM batch_step_execution_context; "
                "DELETE FROM batch_job_execution_params; DELETE FROM batch_step_execution; "
                "DELETE FROM batch_job_execution; DELETE FROM batch_job_instance"
            )
        )
        conn.execute(sa.text("UPDATE item SET workflow_status_set_at = :legacy"), {"legacy": LEGACY_STATUS_DATE})
    for project in projects:  # legacy's ProjectHook: the URL and push events, no secret token
        bank.add_hook(project["id"], WEBHOOK_URL, push_events=True)


def rows(engine, item_keys: set[int]) -> dict[str, list[dict]]:
    """Every legacy row of the given items, by table, in a stable order."""
    found: dict[str, list[dict]] = {}
    with engine.connect() as conn:
        for name in ROW_TABLES:
            key = "item_key_stim" if name == "stim_link" else ("key" if name == "item" else "item_key")
            column = "item_key" if name == "stim_link" else key
            result = conn.execute(
                sa.text(f"SELECT * FROM {name} WHERE {column} = ANY(:keys)"), {"keys": sorted(item_keys)}
            )
            found[name] = sorted((dict(row) for row in result.mappings()), key=lambda r: json.dumps(r, default=str))
    return found


def item_keys(engine, project_ids) -> dict[int, int]:
    with engine.connect() as conn:
        result = conn.execute(
            sa.text("SELECT project_id, item_key FROM item_git WHERE project_id = ANY(:ids)"),
            {"ids": list(project_ids)},
        )
        return dict(result.all())


def edit_item_json(bank: ItemBank, project_id: int) -> str:
    document = json.loads(bank.read_file(project_id, "item.json"))
    document["note"] = "edited after the legacy service stopped"
    return bank.push_commit(project_id, files={"item.json": document}, message="edit after cut-over")


def test_the_first_scheduled_run_adopts_the_legacy_rows_and_deletes_nothing(bank, services, imrt_engine):
    bank, projects = bank
    leave_as_legacy(services, bank, projects)
    assert current_revision(imrt_engine) is None
    edited, readme_only = projects[0], projects[1]
    in_subgroup = [p for p in projects if p["namespace"]["full_path"] == SUBGROUP]
    assert len(in_subgroup) == 3
    new_commit = edit_item_json(bank, edited["id"])
    bank.push_commit(readme_only["id"], files={"README.md": "# not the item\n"}, message="README only")
    untouched_ids = {p["id"] for p in projects} - {edited["id"]}
    keys = item_keys(imrt_engine, untouched_ids)
    before = rows(imrt_engine, set(keys.values()))
    assert len(keys) == len(untouched_ids)

    created = prepare_database(imrt_engine)  # the deployment's migration: our tables, nothing legacy
    assert created == [] and current_revision(imrt_engine) is not None

    plan, verdict = run(services, "scheduled", dry_run=True)
    assert plan["to_delete"] == [] and plan["gone"] == []
    assert rows(imrt_engine, set(keys.values())) == before
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM imrt_project_head")) == 0
    assert all(hook["token"] is None for p in projects for hook in bank.hooks(p["id"]))

    plan, verdict = run(services, "scheduled")
    assert verdict["status"] == "COMPLETED", verdict["message"]
    assert plan["total_ids"] == len(projects) and plan["to_delete"] == []
    assert verdict["message"] == (
        f"Total item bank ids: {len(projects)}, number of items requiring project webhook: {len(projects)}, "
        f"number of items deleted from IMRT: 0, number of items adopted unchanged from the legacy service: "
        f"{len(untouched_ids)}"
    )
    assert rows(imrt_engine, set(keys.values())) == before  # item, item_log, workflow_status_set_at untouched
    with imrt_engine.connect() as conn:
        heads = dict(conn.execute(sa.text("SELECT project_id, head_sha FROM imrt_project_head")).all())
        edited_row = conn.execute(
            sa.text(
                "SELECT g.current_commit_hash, i.workflow_status_set_at FROM item_git g JOIN item i ON i.key = g.item_key "
                "WHERE g.project_id = :p"
            ),
            {"p": edited["id"]},
        ).one()
    assert heads == {p["id"]: bank.head(p["id"]) for p in projects}
    assert edited_row.current_commit_hash == new_commit
    for project in projects:  # the legacy hook now carries the secret: pushes reach IMRT
        assert [(hook["url"], hook["token"]) for hook in bank.hooks(project["id"])] == [(WEBHOOK_URL, SECRET)]

    plan, verdict = run(services, "scheduled")
    assert verdict["message"] == (
        f"Total item bank ids: {len(projects)}, number of items requiring project webhook: 0, "
        "number of items deleted from IMRT: 0"
    )
    assert plan["to_sync"] == []
