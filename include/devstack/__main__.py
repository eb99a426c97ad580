"""``python -m devstack run``: the item synchronization on one machine, with nothing but Python.

Starts an embedded PostgreSQL (Airflow's metadata and the ``imrt`` database), the item bank server with a demo
bank (or uses a real GitLab, see the README), and Airflow's API server, scheduler and DAG processor; runs a sync,
shows its progress and summary, and keeps the stack up until Ctrl-C. Data stays in the data directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import requests

from imrt_compat.task_contract import SYNC, UNITS, VERDICT
from imrt_sync import DAG_ID

from .airflow_stack import AirflowStack
from .postgres import ensure_database, start_embedded_postgres
from .project import REPO_ROOT, prepare_imrt_database, project_stack, sync_environment

DEMO_GROUP = "iat-demo"
ACTIVE_STATES = ("queued", "running")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the stack, run a sync, keep the stack up until Ctrl-C")
    run.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IMRT_DATA_DIR", REPO_ROOT / ".data")))
    run.add_argument("--api-port", type=int, default=int(os.environ.get("IMRT_API_PORT", "8080")))
    run.add_argument("--itembank-port", type=int, default=int(os.environ.get("IMRT_ITEMBANK_PORT", "8929")))
    run.add_argument("--demo-items", type=int, default=int(os.environ.get("IMRT_DEMO_ITEMS", "300")))
    run.add_argument("--parallelism", type=int, default=int(os.environ.get("IMRT_PARALLELISM", "4")))
    item = commands.add_parser("item", help="show an item's rows in the imrt database of a running stack")
    item.add_argument("item_id", type=int)
    item.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IMRT_DATA_DIR", REPO_ROOT / ".data")))
    return parser


def show_item(args: argparse.Namespace) -> int:
    """The item's ``item`` and ``item_git`` rows, as a person checking a push would look at them."""
    import sqlalchemy as sa

    url_file = args.data_dir.resolve() / "imrt-url"
    if not url_file.exists():
        raise SystemExit(f"no stack has run on {args.data_dir} (start one with: make run)")
    engine = sa.create_engine(url_file.read_text().strip())
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(
                    sa.text(
                        "SELECT i.id, i.workflow_status, i.updated_by, i.workflow_status_set_at, g.project_id, "
                        "g.current_commit_hash, g.current_commit_date, g.ingest_source, i.updated_at "
                        "FROM item i JOIN item_git g ON g.item_key = i.key WHERE i.id = :id"
                    ),
                    {"id": args.item_id},
                )
                .mappings()
                .first()
            )
    finally:
        engine.dispose()
    if row is None:
        print(f"item {args.item_id}: not in the imrt database")
        return 1
    for name, value in row.items():
        print(f"{name}: {value}")
    return 0


def say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def hold_single_instance_lock(data_dir: Path) -> TextIO:
    """The open, locked ``devstack.lock``, holding our pid; the lock lasts while the file stays open (the caller
    keeps it). Closed again when another stack holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as on_failure:
        handle = on_failure.enter_context(open(data_dir / "devstack.lock", "a+"))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise SystemExit(f"a local stack is already running on {data_dir} (pid {holder})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        on_failure.pop_all()  # kept open: the caller holds the lock
    return handle


def keep_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text)


def kept_secret(path: Path) -> str:
    """A random secret generated on the first start and kept (mode 600) in the data directory."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def item_bank_source(args, data_dir: Path, system_hook_url: str, webhook_secret: str):
    """The GitLab to sync: the one named by IMRT_GITLAB_* variables, or a local demo item bank server.

    The demo bank has the users a GitLab would: ``imrt-sync`` (Maintainer of the group: its token is the one IMRT
    uses), ``developer`` (Developer: clones and pushes like an item author) and the administrator ``root``; its
    system hook points at the local hook receiver, so projects created or deleted through the REST API reach IMRT.
    The tokens are kept (mode 600) in the data directory: ``itembank-<user>-token``.
    """
    if os.environ.get("IMRT_GITLAB_URL"):
        return None, {
            "url": os.environ["IMRT_GITLAB_URL"],
            "token": os.environ["IMRT_GITLAB_TOKEN"],
            "group": os.environ["IMRT_GITLAB_GROUP"],
        }
    from itembank_server import ItemBank, ItemBankServer, generate_bank
    from itembank_server.users import DEVELOPER, MAINTAINER
    from itembank_server.webhook_delivery import SystemHook

    bank = ItemBank(data_dir / "itembank")
    group = bank.create_group(DEMO_GROUP)
    if bank.count_projects(group["id"]) == 0:
        say(f"generating a demo item bank of {args.demo_items} items ...")
        generate_bank(bank, DEMO_GROUP, count=args.demo_items, seed=0)
    tokens = {}
    for username, role in (("imrt-sync", MAINTAINER), ("developer", DEVELOPER)):
        tokens[username] = kept_secret(data_dir / f"itembank-{username}-token")
        user = bank.ensure_user(username)
        bank.add_token(user["id"], tokens[username])
        if bank.member(group["id"], user["id"]) is None:
            bank.add_member(group["id"], user["id"], role)
    admin_token = kept_secret(data_dir / "itembank-root-token")
    system_hook = SystemHook(system_hook_url, token=webhook_secret, push_events=False)
    server = ItemBankServer(bank, "127.0.0.1", args.itembank_port, {admin_token}, system_hooks=[system_hook]).start()
    say(
        f"item bank server: {server.url} (group {DEMO_GROUP}; users imrt-sync, developer, root: tokens in "
        f"{data_dir}/itembank-<user>-token)"
    )
    return server, {"url": server.url, "token": tokens["imrt-sync"], "group": DEMO_GROUP}


def follow_runs(stack: AirflowStack, run_id: str) -> None:
    """Follow ``run_id`` until it has ended, and before it every run that is active ahead of it: unpausing may start
    the latest scheduled run, and with ``max_active_runs=1`` the new run waits for the active ones.

    Only the active runs are asked for (all pages, oldest ``run_after`` first), however many runs the data directory
    has seen: a running run is followed first, else the oldest queued one, until ``run_id`` itself has been followed.
    """
    while True:
        active = active_runs(stack)
        current = next_active(active) if any(r["dag_run_id"] == run_id for r in active) else None
        current = current or stack.dag_run(DAG_ID, run_id)  # run_id ended already: say how
        state = follow_run(stack, current["dag_run_id"], until_overtaken=True)
        if state is None:
            continue  # another run started first (e.g. the scheduled run made on unpausing): follow that one
        say(f"run {current['dag_run_id']} ({current['run_type']}) ended: {state}")
        print_summary(stack, current["dag_run_id"])
        if current["dag_run_id"] == run_id:
            return


def active_runs(stack: AirflowStack) -> list[dict]:
    """The DAG's queued and running runs, oldest ``run_after`` first (every page)."""
    return stack.dag_runs(DAG_ID, state=list(ACTIVE_STATES), order_by="run_after")


def next_active(active: list[dict]) -> dict | None:
    """The run that ends first: the running one (``max_active_runs=1``), else the oldest queued one."""
    return next((r for r in active if r["state"] == "running"), None) or (active[0] if active else None)


def follow_run(stack: AirflowStack, run_id: str, *, until_overtaken: bool = False) -> str | None:
    """Print progress (sync units done of total) until the run ends; return its state.

    ``until_overtaken``: return None as soon as the run is queued while another run is running (that one ends first).
    """
    last_said, last_state, sizes = 0.0, None, None
    while True:
        state = stack.dag_run(DAG_ID, run_id)["state"]
        if until_overtaken and state == "queued":
            running = next_active(active_runs(stack))
            if running is not None and running["state"] == "running" and running["dag_run_id"] != run_id:
                return None
        units = [ti for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == SYNC and ti["map_index"] >= 0]
        if units and sizes is None:
            sizes = unit_sizes(stack, run_id)
        done = [ti["map_index"] for ti in units if ti["state"] in ("success", "failed", "upstream_failed", "skipped")]
        if state != last_state or time.monotonic() - last_said >= 10:
            items_done = sum(sizes.get(index, 1) for index in done) if sizes else len(done)
            items_total = sum(sizes.values()) if sizes else len(units)
            say(f"run {run_id}: {state}, items done {items_done} of {items_total}")
            last_said, last_state = time.monotonic(), state
        if state in ("success", "failed"):
            return state
        time.sleep(2)


def unit_sizes(stack: AirflowStack, run_id: str) -> dict[int, int]:
    """Items per mapped ``sync`` instance, from the work units ``list_ids`` returned."""
    response = stack.api("GET", UNITS.rest_path(run_id))
    if response.status_code != 200:
        return {}
    units = UNITS.rest_value(response.json())
    return {index: len(unit["sync"]) + len(unit["delete"]) for index, unit in enumerate(units)}


def print_summary(stack: AirflowStack, run_id: str) -> None:
    response = stack.api("GET", VERDICT.rest_path(run_id))
    if response.status_code == 200:
        verdict = VERDICT.rest_value(response.json())
        say(f"exit status: {verdict['status']}")
        say(f"exit message: {verdict['message']}")


def start_sync_as_the_runbook_does(stack: AirflowStack) -> str:
    """``curl -i -X POST .../sync`` with a token; a 409 (a run is active, e.g. the scheduled one) is waited out."""
    token = stack.token("admin")
    while True:
        response = requests.post(f"{stack.url}/sync", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        if response.status_code == 200:
            body = response.json()
            say(f"POST /sync -> 200 {json.dumps(body)}")
            return f"legacy__{body['jobExecutionId']}"
        if response.status_code != 409:
            raise SystemExit(f"POST /sync answered {response.status_code}: {response.text}")
        active = next_active(active_runs(stack))
        say(f"POST /sync -> 409 (a run is active): waiting for {active['dag_run_id'] if active else 'it'}")
        if active:
            follow_run(stack, active["dag_run_id"], until_overtaken=True)


def execution_row(imrt_url, run_id: str) -> dict:
    import sqlalchemy as sa

    engine = sa.create_engine(imrt_url)
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(
                    sa.text(
                        "SELECT job_execution_id, job_instance_id, start_time, end_time, status, exit_message "
                        "FROM batch_job_execution WHERE job_execution_id = :id"
                    ),
                    {"id": int(run_id.removeprefix("legacy__"))},
                )
                .mappings()
                .one()
            )
        return {k: str(v) for k, v in row.items()}
    finally:
        engine.dispose()


def count_items(imrt_url) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(imrt_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM item")) if sa.inspect(conn).has_table("item") else 0
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> int:
    data_dir = args.data_dir.resolve()
    lock = hold_single_instance_lock(data_dir)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    say(f"data directory: {data_dir}")
    admin_url = start_embedded_postgres(data_dir / "pgdata")
    metadata_url = ensure_database(admin_url, "airflow")
    imrt_url = ensure_database(admin_url, "imrt")
    created = prepare_imrt_database(imrt_url)
    say(
        f"imrt database: legacy tables {'created' if created else 'present'}; "
        "own tables migrated to the newest revision"
    )
    receiver = os.environ.get("IMRT_WEBHOOK_URL", f"http://127.0.0.1:{args.api_port}/webHook")
    webhook_secret = os.environ.get("IMRT_WEBHOOK_SECRET") or kept_secret(data_dir / "webhook-secret")
    server, gitlab = item_bank_source(args, data_dir, receiver.removesuffix("/webHook") + "/systemHook", webhook_secret)
    keep_private(data_dir / "imrt-url", imrt_url.render_as_string(hide_password=False))
    env = sync_environment(
        gitlab_url=gitlab["url"],
        gitlab_token=gitlab["token"],
        group=gitlab["group"],
        imrt_url=imrt_url,
        git_cache_dir=data_dir / "git-cache",
        webhook_url=receiver,
        webhook_secret=webhook_secret,
    )
    stack = project_stack(data_dir / "airflow", metadata_url, env, api_port=args.api_port, parallelism=args.parallelism)
    try:
        say("starting Airflow (api-server, scheduler, dag-processor) ...")
        stack.start()
        stack.wait_for_dag(DAG_ID)
        stack.unpause(DAG_ID)
        run_id = start_sync_as_the_runbook_does(stack)
        follow_runs(stack, run_id)
        say(f"imrt database: {count_items(imrt_url)} items")
        say(f"batch_job_execution: {execution_row(imrt_url, run_id)}")
        say(f"Airflow UI: {stack.url}  (login: admin / {stack.password('admin')})")
        say(f"task logs: {stack.logs_dir}/dag_id={DAG_ID}/run_id={run_id}/")
        say(
            f"GitLab hook receiver: {stack.url}/webHook  (X-Gitlab-Token: the secret in {data_dir / 'webhook-secret'}"
            " unless IMRT_WEBHOOK_SECRET is set)"
        )
        if server is not None:
            say(
                "push a change as an item author does: docs/real-time-path.md, "
                "'Try it: push a change and watch it arrive'; "
                f"then: python -m devstack item <item id> --data-dir {data_dir}"
            )
        say("the stack stays up; press Ctrl-C to stop it (data is kept)")
        stop.wait()
    finally:
        say("stopping ...")
        stack.stop()
        if server is not None:
            server.stop()
        lock.close()
    say("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return show_item(args) if args.command == "item" else run(args)


if __name__ == "__main__":
    sys.exit(main())
