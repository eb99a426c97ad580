"""The benchmark's planning case fills IMRT with what a full sync records for what planning reads: checked here
against a real full sync of a small generated bank, and planning over the fill finds nothing to do."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from devstack.bench.cases import GROUP, SEED, TOKEN
from devstack.bench.planning import fill_imrt, planning_bank, recorded_projects, timed_open_run
from devstack.bench.runners import Options, direct_run
from devstack.postgres import ensure_database
from devstack.project import prepare_imrt_database
from imrt_sync.project_webhooks import WebhookRegistry
from imrt_sync.store import ItemStore
from itembank_server import ItemBank, ItemBankServer, generate_bank

SIZE = 60  # one item still being created (2%)


def options(tmp_path) -> Options:
    return Options(
        data_dir=tmp_path,
        sizes=[],
        cases=[],
        modes=[],
        parallelism=2,
        concurrency=4,
        map_bound=256,
        batch_size=64,
        run_timeout=600,
    )


def planning_reads(url) -> dict:
    """Everything planning reads from IMRT (ItemStore and WebhookRegistry), hook ids aside."""
    engine = sa.create_engine(url)
    try:
        store = ItemStore(engine)
        return {
            "heads": store.recorded_heads(),
            "being_created": store.items_being_created(),
            "count": store.recorded_count(),
            "hooked": {pid: set(hooks.values()) for pid, hooks in WebhookRegistry(engine).recorded().items()},
            "item_blobs": store.recorded_item_blobs(),
            "hooks_checked": set(WebhookRegistry(engine).checked_at()),
        }
    finally:
        engine.dispose()


def new_database(pg_admin_url):
    url = ensure_database(pg_admin_url, f"imrt_{uuid.uuid4().hex[:12]}")
    prepare_imrt_database(url)
    return url


@pytest.fixture
def synced_bank(tmp_path, pg_admin_url):
    """A generated bank (shared objects, as the planning bank) after a real full sync, which created the hooks;
    the bank and the synced database."""
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    generate_bank(bank, GROUP, count=SIZE, seed=SEED, shared_objects=True)
    url = new_database(pg_admin_url)
    try:
        with ItemBankServer(bank, tokens={TOKEN}) as server:
            _, verdict, _ = direct_run(options(tmp_path), server.url, url, tmp_path / "git-cache", "a")
        assert verdict["status"] == "COMPLETED", verdict
        yield bank, url
    finally:
        bank.close()


def test_the_fill_is_what_a_full_sync_records_for_planning(synced_bank, pg_admin_url):
    bank, synced_url = synced_bank
    filled_url = new_database(pg_admin_url)
    fill_imrt(filled_url, recorded_projects(bank.root))
    synced, filled = planning_reads(synced_url), planning_reads(filled_url)
    assert synced["count"] == filled["count"] == SIZE
    assert len(synced["being_created"]) == 1
    assert filled == synced
    engine = sa.create_engine(filled_url)
    try:
        hooks = WebhookRegistry(engine).recorded()
    finally:
        engine.dispose()
    assert all(len(ids) == 1 for ids in hooks.values())
    assert {pid: next(iter(ids)) for pid, ids in hooks.items()} == {
        p["id"]: h["id"] for p in bank.projects(GROUP) for h in bank.hooks(p["id"])
    }


def test_planning_over_a_filled_planning_bank_finds_nothing_to_do(tmp_path, pg_admin_url):
    root = planning_bank(tmp_path, SIZE)
    url = new_database(pg_admin_url)
    fill_imrt(url, recorded_projects(root))
    bank = ItemBank(root)
    try:
        with ItemBankServer(bank, tokens={TOKEN}) as server:
            plan, _ = timed_open_run(options(tmp_path), server.url, url, tmp_path / "git-cache")
    finally:
        bank.close()
    assert plan["total_ids"] == SIZE
    assert plan["to_sync"] == [] and plan["to_delete"] == [] and plan["missing_webhook"] == []
    assert plan["verify_webhooks"] == []  # every hook checked by the sync the fill stands for
    assert plan["failed"] == {} and plan["unchanged"] == SIZE - len(plan["empty"])
