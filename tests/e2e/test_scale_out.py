"""Scale-out: the DAG and the plugin under a distributed executor, EdgeExecutor with two edge workers.

Each worker is an ``airflow edge worker`` process with its own AIRFLOW_HOME, task log folder and item git cache,
no metadata database and no broker: it fetches jobs and pushes task logs over HTTP through the edge API that the
edge3 plugin mounts on the API server. A REST-triggered full sync of a 500-item bank must run ``sync`` instances on
both workers, and their logs must be readable through the REST API (docs/deployment.md, "Executors: when to use which").
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from stack_fixtures import RealStack

from devstack.project import worker_git_cache
from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

TOKEN = "glpat-scale-out-e2e-token"
BANK_SIZE = 500
MAP_BOUND = 12  # 500 items -> 12 units of at most 42 items: few task instances, work for both workers
RUN_TIMEOUT = 600
STACK = RealStack(
    name="scale",
    group="iat-scale",
    token=TOKEN,
    bank_size=BANK_SIZE,
    seed=17,
    webhook_secret="scale-out-e2e-webhook-secret",
    extra_env={"AIRFLOW_VAR_IMRT_MAP_BOUND": str(MAP_BOUND), "AIRFLOW_VAR_IMRT_BATCH_SIZE": "1"},
    options={"executor": "EdgeExecutor", "workers": 2, "worker_env": worker_git_cache},
)


@pytest.fixture(scope="module")
def full_run(stack):
    """A REST-triggered full sync, waited for: its id, final state and wall time.

    It is triggered while the DAG is paused, with ``run_after`` two days back, so that it starts before the run of
    the latest 09:00 slot that unpausing creates (queued runs start in ``run_after`` order, one at a time).
    """
    run_after = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    response = stack.api(
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "run_after": run_after, "conf": {"mode": "full"}},
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    began = time.monotonic()
    stack.unpause(DAG_ID)
    state = stack.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    seconds = time.monotonic() - began
    print(f"\nfull sync of {BANK_SIZE} items under EdgeExecutor (2 workers): {state} in {seconds:.1f} s")
    return run_id, state


@pytest.fixture(scope="module")
def scheduled_run(stack, full_run):
    """The 09:00 run that unpausing created, waited for (so that no task is running when the stack stops)."""
    runs = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"run_type": "scheduled"}).json()["dag_runs"]
    assert len(runs) == 1, runs
    run_id = runs[0]["dag_run_id"]
    return run_id, stack.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)


@pytest.fixture(scope="module")
def sync_instances(stack, full_run):
    run_id, _ = full_run
    return [ti for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "sync"]


def count(imrt, sql: str) -> int:
    with imrt.connect() as conn:
        return conn.scalar(sa.text(sql))


def task_log_files(logs_dir: Path, run_id: str, map_index: int) -> list[Path]:
    """The attempt logs of a ``sync`` instance under a base log folder ([logging] log_filename_template)."""
    return sorted(
        (logs_dir / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=sync" / f"map_index={map_index}").glob(
            "attempt=*.log"
        )
    )


def test_edge_workers_are_registered_with_the_api_server(stack):
    assert stack.edge_worker_states().keys() == {worker.hostname for worker in stack.edge_workers.values()}
    assert len(stack.edge_workers) == 2
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in stack.component_environment("edge-worker-1")


def test_full_sync_succeeds_and_writes_every_item(full_run, imrt):
    _, state = full_run
    assert state == "success"
    assert count(imrt, "SELECT count(*) FROM item") == BANK_SIZE


def test_sync_is_mapped_over_a_bounded_number_of_units(sync_instances):
    assert len(sync_instances) == MAP_BOUND
    assert {ti["state"] for ti in sync_instances} == {"success"}


def test_sync_instances_ran_on_both_workers(stack, sync_instances):
    assert {ti["hostname"] for ti in sync_instances} == {w.hostname for w in stack.edge_workers.values()}


def test_each_worker_keeps_its_task_logs_and_git_cache_in_its_own_directory(stack, full_run, sync_instances, item_bank):
    run_id, _ = full_run
    _, projects, _ = item_bank
    cached: dict[str, set[str]] = {}
    for worker in stack.edge_workers.values():
        others = [w for w in stack.edge_workers.values() if w is not worker]
        for ti in (ti for ti in sync_instances if ti["hostname"] == worker.hostname):
            assert task_log_files(worker.logs_dir, run_id, ti["map_index"]), ti
            assert not any(task_log_files(other.logs_dir, run_id, ti["map_index"]) for other in others), ti
        cached[worker.hostname] = {path.name for path in (worker.home / "git-cache").glob("*.git")}
        assert cached[worker.hostname], f"{worker.hostname} cached no repository"
    assert set.union(*cached.values()) == {f"{p['id']}.git" for p in projects}


def test_the_scheduled_run_after_it_found_nothing_to_sync(stack, full_run, scheduled_run):
    full = stack.dag_run(DAG_ID, full_run[0])
    scheduled_id, state = scheduled_run
    assert state == "success"
    started = datetime.fromisoformat(stack.dag_run(DAG_ID, scheduled_id)["start_date"])
    assert started >= datetime.fromisoformat(full["end_date"])
    mapped = [
        ti for ti in stack.task_instances(DAG_ID, scheduled_id) if ti["task_id"] == "sync" and ti["map_index"] >= 0
    ]
    assert mapped == []


def test_a_sync_log_of_each_worker_is_readable_through_the_rest_api(stack, full_run, sync_instances):
    run_id, _ = full_run
    for worker in stack.edge_workers.values():
        ti = next(ti for ti in sync_instances if ti["hostname"] == worker.hostname)
        text = stack.task_log(DAG_ID, run_id, "sync", try_number=ti["try_number"], map_index=ti["map_index"])
        assert "ITEM EVENT type: ITEM_CREATED key: " in text, f"{worker.hostname} map_index={ti['map_index']}:\n{text}"
        assert TOKEN not in text
