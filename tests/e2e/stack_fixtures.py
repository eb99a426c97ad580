"""What the module-scoped fixtures of the real-stack end-to-end tests are made of: a served item bank, an imrt
database and a started Airflow stack running this repository's DAG and plugin.

A module that runs the real stack declares ``STACK = RealStack(...)``; the fixtures ``item_bank``, ``imrt``,
``stack_root`` and ``stack`` of tests/e2e/conftest.py build it, once per module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from e2e_helpers import wait_until
from sqlalchemy.engine import URL, Engine

from devstack.airflow_stack import AirflowStack, free_port
from devstack.postgres import ensure_database
from devstack.project import prepare_imrt_database, project_stack, sync_environment
from imrt_sync import DAG_ID
from itembank_server import ItemBank, ItemBankServer, generate_bank

WEBHOOK_URL = "https://imrt.example.org/webHook"


@dataclass(frozen=True)
class RealStack:
    """One module's real stack: the item bank it serves and how Airflow runs against it.

    ``name`` names its databases (``imrt_<name>_…``, ``airflow_<name>_…``). The bank is ``bank_size`` items of
    ``group`` generated from ``seed``, served to ``token``; the stack syncs with ``sync_token`` (``token`` when
    empty); the group has ``group_visibility`` and its projects are private. ``hooks_to_self`` points the project hooks at the stack's own /webHook (on a port chosen at start)
    instead of ``webhook_url``. ``options`` go to ``AirflowStack`` (users, executor, workers, auth_manager, …).
    """

    name: str
    group: str
    token: str
    bank_size: int
    seed: int
    group_visibility: str = "private"
    sync_token: str = ""
    webhook_url: str = WEBHOOK_URL
    webhook_secret: str = ""
    hooks_to_self: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)
    parallelism: int = 4
    options: Mapping[str, Any] = field(default_factory=dict)


class ServedBank(NamedTuple):
    bank: ItemBank
    projects: list[dict]
    server: ItemBankServer


def fresh_database(pg_admin_url, prefix: str) -> URL:
    """A new database named ``<prefix>_<random hex>``."""
    return ensure_database(pg_admin_url, f"{prefix}_{uuid.uuid4().hex[:10]}")


@contextmanager
def served_item_bank(
    root: Path, group: str, token: str, count: int, seed: int, group_visibility: str = "private"
) -> Iterator[ServedBank]:
    """A generated bank of ``count`` private items in ``group``, served over HTTP to callers that present ``token``."""
    bank = ItemBank(root)
    try:
        bank.create_group(group, visibility=group_visibility)
        projects = generate_bank(bank, group, count=count, seed=seed)
        with ItemBankServer(bank, tokens={token}) as server:
            yield ServedBank(bank, projects, server)
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
        gitlab_url=gitlab_url,
        gitlab_token=gitlab_token,
        group=group,
        imrt_url=imrt_url,
        git_cache_dir=root / "git-cache",
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
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


@contextmanager
def started_stack(spec: RealStack, pg_admin_url, root: Path, served: ServedBank, imrt_url) -> Iterator[AirflowStack]:
    """``spec``'s stack against ``served`` and the database at ``imrt_url``; its start and stop times printed."""
    webhook_url, options = spec.webhook_url, dict(spec.options)
    if spec.hooks_to_self:
        options["api_port"] = free_port()
        webhook_url = f"http://127.0.0.1:{options['api_port']}/webHook"
    with airflow_stack(
        pg_admin_url,
        root,
        gitlab_url=served.server.url,
        gitlab_token=spec.sync_token or spec.token,
        group=spec.group,
        imrt_url=imrt_url,
        metadata_prefix=f"airflow_{spec.name}",
        webhook_url=webhook_url,
        webhook_secret=spec.webhook_secret,
        extra_env=dict(spec.extra_env),
        parallelism=spec.parallelism,
        **options,
    ) as airflow:
        print(f"\n{spec.name}: AirflowStack.start() {airflow.start_seconds:.1f} s {airflow.timings}")
        yield airflow
    print(f"\n{spec.name}: AirflowStack.stop() {airflow.timings['stop']:.1f} s")


def unpause_and_finish_scheduled_run(stack: AirflowStack, timeout: float) -> dict:
    """Unpausing starts the latest scheduled run: wait until it succeeds, so that no run is active after; return it."""
    stack.unpause(DAG_ID)
    scheduled = wait_until(
        lambda: stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "run_after"}).json()["dag_runs"],
        60,
        "the scheduled run",
    )[0]
    state = stack.wait_for_run(DAG_ID, scheduled["dag_run_id"], timeout=timeout)
    assert state == "success", f"the scheduled run {scheduled['dag_run_id']} ended {state}"
    return scheduled
