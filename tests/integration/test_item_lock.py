"""The item lock: runs of both DAGs (bank-wide and hook events) may sync the same item at once; each item's read of the
repository and its write hold the item's lock, so the run that takes it second reads what the first wrote, and the
newer state is the one left (imrt_sync.store.ItemStore.item_lock, pipeline.sync_unit). On the item bank server and
PostgreSQL; a sync waiting for the lock is seen in pg_stat_activity, never guessed with a sleep."""

from __future__ import annotations

import json
import threading
import time

import pytest
import sqlalchemy as sa
from protocol_runs import run

from imrt_sync import pipeline
from imrt_sync.config import GitLabSettings, RunParams, SyncSettings
from imrt_sync.schema_migrations import prepare_database
from imrt_sync.store import ItemStore, ProjectLockedError
from itembank_server import ItemBank, ItemBankServer, generate_bank

TOKEN = "glpat-item-lock-token"
GROUP = "iat-lock"
ITEMS = 3


@pytest.fixture
def bank(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    projects = generate_bank(bank, GROUP, count=ITEMS, seed=11)
    yield bank, projects
    bank.close()


@pytest.fixture
def settings(bank, tmp_path):
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        sync = SyncSettings(
            group=GROUP, webhook_url="https://imrt.example.org/webHook", git_cache_dir=tmp_path / "git", concurrency=2
        )
        yield sync, GitLabSettings(base_url=server.url, token=TOKEN, retries=1, backoff_factor=0.01, allow_http=True)


@pytest.fixture
def synced(settings, imrt_engine, bank):
    """The bank synced once; the services of that first run's settings."""
    prepare_database(imrt_engine)
    with pipeline.Services.open(*settings, imrt_engine) as services:
        run(services, mode="full")
        yield services


def edit(bank: ItemBank, project_id: int, note: str) -> str:
    document = json.loads(bank.read_file(project_id, "item.json"))
    document["note"] = note
    return bank.push_commit(project_id, files={"item.json": document}, message=note)


def recorded_commit(engine: sa.Engine, project_id: int) -> str:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT current_commit_hash FROM item_git WHERE project_id = :p"), {"p": project_id})


def backends_asking_for_an_advisory_lock(engine: sa.Engine) -> set[int]:
    """The database sessions whose last statement asked for an advisory lock (holding it, or refused it)."""
    query = sa.text("SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_try_advisory_lock%'")
    with engine.connect() as conn:
        return set(conn.scalars(query))


def wait_for_another_lock_attempt(engine: sa.Engine, known: set[int]) -> None:
    deadline = time.monotonic() + 30
    while not backends_asking_for_an_advisory_lock(engine) - known:
        assert time.monotonic() < deadline, "no sync asked for the item lock within 30 s"


def unit(project: dict) -> dict:
    return {"label": project["path"], "sync": [project["id"]], "delete": []}


def test_a_sync_waits_for_the_item_lock_and_then_writes_the_state_it_reads_after_the_holder(synced, bank, imrt_engine):
    """The sync starts while another run holds the item; a push lands while it waits; once the lock is released it
    reads the repository and records the pushed commit. Without the lock it would have read and written the
    state before the push."""
    services, (bank, projects) = synced, bank
    project = projects[0]
    outcomes: list[dict] = []
    with ItemStore(imrt_engine).item_lock(project["id"]):
        holding = backends_asking_for_an_advisory_lock(imrt_engine)
        waiting = threading.Thread(
            target=lambda: outcomes.append(pipeline.sync_unit(services, unit(project), RunParams(item_ids=())))
        )
        waiting.start()
        wait_for_another_lock_attempt(imrt_engine, holding)
        assert outcomes == []  # still waiting
        pushed = edit(bank, project["id"], "pushed while the sync waited")
    waiting.join(timeout=60)
    assert not waiting.is_alive()
    assert outcomes[0]["failed"] == {} and outcomes[0]["events"] == {str(project["id"]): "ITEM_UPDATED"}
    assert recorded_commit(imrt_engine, project["id"]) == pushed


def test_two_runs_syncing_the_same_items_at_once_leave_the_bank_state(synced, bank, imrt_engine, at_once):
    """Two full syncs of every item released together, with a push made before: both succeed item by item (no
    lock error, no duplicate row), and each item ends at its repository's head."""
    services, (bank, projects) = synced, bank
    pushed = {p["id"]: edit(bank, p["id"], "before two runs") for p in projects}
    everything = {"label": "all", "sync": [p["id"] for p in projects], "delete": []}

    def full_sync(engine: sa.Engine) -> dict:
        with pipeline.Services.open(services.settings, services.gitlab.settings, engine) as own:
            return pipeline.sync_unit(own, everything, RunParams(mode="full"))

    outcomes = at_once(2, full_sync)
    assert [outcome["failed"] for outcome in outcomes] == [{}, {}]
    assert {pid: recorded_commit(imrt_engine, pid) for pid in pushed} == pushed
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item_git")) == ITEMS


def test_the_lock_is_per_item_bounded_and_released_when_the_block_fails(imrt_engine):
    prepare_database(imrt_engine)
    holder, impatient = ItemStore(imrt_engine), ItemStore(imrt_engine, lock_wait_seconds=0.5)
    with holder.item_lock(7):
        refused = pytest.raises(ProjectLockedError, match=r"project 7 is being synced by another run \(item lock\)")
        with refused, impatient.item_lock(7):
            pytest.fail("took a lock another connection holds")
        with impatient.item_lock(8):  # another item is free
            pass
    with pytest.raises(RuntimeError, match="the sync failed"), holder.item_lock(7):
        raise RuntimeError("the sync failed")
    with impatient.item_lock(7):  # released by the failed block
        pass
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")) == 0
