"""What the module-scoped fixtures of the real-stack end-to-end tests are made of: a served item bank, an imrt
database and a started Airflow stack running this repository's DAG and plugin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from devstack.airflow_stack import AirflowStack
from devstack.postgres import ensure_database
from devstack.project import prepare_imrt_database, project_stack, sync_environment
from imrt_sync import DAG_ID
from e2e_helpers import wait_until
from itembank_server import ItemBank, ItemBankServer, generate_bank

WEBHOOK_URL = "https://imrt.example.org/webHook"


def fresh_database(pg_admin_url, prefix: str) -> URL:
    """A new database named ``<prefix>_<random hex>``."""
    return ensure_database(pg_admin_url, f"{prefix}_{uuid.uuid4().hex[:10]}")


@contextmanager
def served_item_bank(
    root: Path, group: str, token: str, count: int, seed: int
) -> Iterator[tuple[ItemBank, list[dict], ItemBankServer]]:
    """A generated bank of ``count`` items in ``group``, served over HTTP to callers that present ``token``."""
    bank = ItemBank(root)
    try:
        bank.create_group(group)
        projects = generate_bank(bank, group, count=count, seed=seed)
        with ItemBankServer(bank, tokens={token}) as server:
            yield bank, projects, server
    finally:
        bank.close()


@contextmanager
def imrt_database(pg_admin_url, prefix: str) -> Iterator[Engine]:
    engine = sa.create_engine(fresh_database(pg_admin_url, prefix))
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def airflow_stack(
    pg_admin_url,
    root: Path,
    *,
    gitlab_url: str,
    gitlab_token: str,
    group: str,
    imrt_url,
    metadata_prefix: str,
    webhook_url: str = WEBHOOK_URL,
    webhook_secret: str = "",
    extra_env: dict[str, str] | None = None,
    **stack_options,
) -> Iterator[AirflowStack]:
    """A started stack, its metadata in a fresh database, that has parsed the DAG; stopped on exit. The imrt
    database is prepared first, as a new environment's deployment does (``prepare_imrt_database``).

    ``root`` holds the Airflow home and the git cache; ``stack_options`` go to ``AirflowStack`` (users, parallelism).
    """
    env = sync_environment(
        gitlab_url=gitlab_url, gitlab_token=gitlab_token, group=group, imrt_url=imrt_url,
        git_cache_dir=root / "git-cache", webhook_url=webhook_url, webhook_secret=webhook_secret,
    )
    env.update(extra_env or {})
    prepare_imrt_database(imrt_url)
    airflow = project_stack(root / "home", fresh_database(pg_admin_url, metadata_prefix), env, **stack_options)
    try:
        airflow.start()
        airflow.wait_for_dag(DAG_ID)
        yield airflow
    finally:
        airflow.stop()


def unpause_and_finish_scheduled_run(stack: AirflowStack, timeout: float) -> dict:
    """Unpausing starts the latest scheduled run: wait until it succeeds, so that no run is active after; return it."""
    stack.unpause(DAG_ID)
    scheduled = wait_until(
        lambda: stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "run_after"}).json()["dag_runs"],
        60, "the scheduled run",
    )[0]
    state = stack.wait_for_run(DAG_ID, scheduled["dag_run_id"], timeout=timeout)
    assert state == "success", f"the scheduled run {scheduled['dag_run_id']} ended {state}"
    return scheduled
