"""Data safety and the real-time path end to end: real ``git push`` -> the item bank server's push hook -> the real
API server's /webHook -> a ``webhook__`` run -> the imrt rows; a sync user that loses access to the group; back-off.

The group is **internal** and its item projects private: after the sync user is taken out of the group, GitLab still
shows it the group (internal groups are visible to every signed-in user) while every project answers 404 and drops
out of the listing, the answer that a readable group once made IMRT take for "gone". The stack syncs as
``imrt-sync``, a Maintainer member of the group with its own token; the item bank's admin
``root`` token controls the test (members API, project deletion); ``dev`` pushes with the git CLI as a Developer
(still a member when the sync user is taken out). The project hooks the first sync creates point at the stack's own
``/webHook``, so deliveries are the server's, not hand-made requests.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import wait_until
from stack_fixtures import RealStack, unpause_and_finish_scheduled_run

from devstack.git_env import isolated_git_env
from imrt_sync import DAG_ID, EVENTS_DAG_ID
from itembank_server.users import DEVELOPER, MAINTAINER

pytestmark = pytest.mark.e2e

GROUP = "iat-safety"
ROOT_TOKEN = "glpat-safety-root-" + uuid.uuid4().hex
SYNC_TOKEN = "glpat-safety-sync-" + uuid.uuid4().hex
DEV_TOKEN = "glpat-safety-dev-" + uuid.uuid4().hex
SECRET = "whsec-safety-" + uuid.uuid4().hex
BANK_SIZE = 12
PUSHES = 50
LATENCY_ITEMS = 5
# Small retry settings (Airflow variables imrt_webhook_*; sweeper period [imrt] webhook_sweep_seconds).
RETRY_BASE_SECONDS, RETRY_MAX_SECONDS, MAX_ATTEMPTS, SWEEP_SECONDS = 2, 8, 3, 1
LOST_ACCESS = (
    f"GitLab does not show that the sync user can see every project of group {GROUP} (imrt-sync is not a member of "
    f"group {GROUP}); a user who lost membership gets the same 404 for a live project (lost access?)"
)
STACK = RealStack(
    name="safety",
    group=GROUP,
    token=ROOT_TOKEN,
    bank_size=BANK_SIZE,
    seed=12,
    sync_token=SYNC_TOKEN,
    group_visibility="internal",
    webhook_secret=SECRET,
    hooks_to_self=True,
    extra_env={
        "AIRFLOW_VAR_IMRT_WEBHOOK_RETRY_BASE_SECONDS": str(RETRY_BASE_SECONDS),
        "AIRFLOW_VAR_IMRT_WEBHOOK_RETRY_MAX_SECONDS": str(RETRY_MAX_SECONDS),
        "AIRFLOW_VAR_IMRT_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "AIRFLOW__IMRT__WEBHOOK_SWEEP_SECONDS": str(SWEEP_SECONDS),
    },
)


@pytest.fixture(scope="module")
def users(item_bank) -> dict[str, dict]:
    """The sync user (Maintainer) and a developer, members of the group, each with its own token."""
    found = {}
    for username, token, level in (("imrt-sync", SYNC_TOKEN, MAINTAINER), ("dev", DEV_TOKEN, DEVELOPER)):
        user = item_bank.bank.create_user(username)
        item_bank.bank.add_token(user["id"], token)
        item_bank.bank.add_member(GROUP, user["id"], level)
        found[username] = user
    return found


@pytest.fixture(scope="module")
def synced(users, stack, item_bank):
    """The first full sync (as the sync user), which also creates the project hooks pointing at the stack's /webHook."""
    run = unpause_and_finish_scheduled_run(stack, timeout=300)
    bank, projects, _ = item_bank
    hook_url = f"{stack.url}/webHook"
    assert all([h["url"] for h in bank.hooks(p["id"])] == [hook_url] for p in projects)
    return run


@pytest.fixture(scope="module")
def root_api(item_bank):
    _, _, server = item_bank
    session = requests.Session()
    session.headers["PRIVATE-TOKEN"] = ROOT_TOKEN
    session.base = f"{server.url}/api/v4"
    yield session
    session.close()


# --------------------------------------------------------------------------------------------------- git as dev


def git_env(home: Path) -> dict[str, str]:
    """A git client isolated from user config, sending the developer's token as GitLab expects (basic auth)."""
    return {
        **isolated_git_env(home, DEV_TOKEN),
        "GIT_AUTHOR_NAME": "Dev D",
        "GIT_AUTHOR_EMAIL": "dev@example.org",
        "GIT_COMMITTER_NAME": "Dev D",
        "GIT_COMMITTER_EMAIL": "dev@example.org",
    }


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"git {args[0]} failed ({result.returncode}): {result.stderr}"
    return result.stdout.strip()


class Checkout:
    """A clone of one item's project, edited and pushed with the git CLI."""

    def __init__(self, server, project: dict, workdir: Path):
        self.project = project
        self.env = git_env(workdir)
        self.path = workdir / str(project["path"])
        git(
            "clone",
            "--quiet",
            f"{server.url}/{project['path_with_namespace']}.git",
            str(self.path),
            cwd=workdir,
            env=self.env,
        )

    def push_status(self, status: str) -> str:
        """Set ``workflow.workflowStatusCode`` in item.json, commit, ``git push``; return the pushed sha."""
        item_file = self.path / "item.json"
        document = json.loads(item_file.read_text())
        document["workflow"] = {"workflowStatusCode": status}
        item_file.write_text(json.dumps(document, indent=2))
        git("commit", "--quiet", "-am", status, cwd=self.path, env=self.env)
        git("push", "--quiet", "origin", "HEAD", cwd=self.path, env=self.env)
        return git("rev-parse", "HEAD", cwd=self.path, env=self.env)


# ---------------------------------------------------------------------------------------------- reading state


def heads(imrt) -> dict[int, str]:
    with imrt.connect() as conn:
        return dict(conn.execute(sa.text("SELECT project_id, current_commit_hash FROM item_git")).all())


def item_row(imrt, project: dict) -> dict | None:
    with imrt.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM item WHERE id = :i"), {"i": int(project["path"])}).mappings().first()
    return dict(row) if row else None


def item_ids(imrt) -> set[int]:
    with imrt.connect() as conn:
        return set(conn.scalars(sa.text("SELECT id FROM item")))


def events_for(imrt, shas) -> list[dict]:
    with imrt.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text("SELECT * FROM imrt_webhook_event WHERE commit_sha = ANY(:s) ORDER BY id"), {"s": list(shas)}
            ).mappings()
        ]


def runs(stack, dag_id: str = DAG_ID) -> list[dict]:
    """The DAG's newest 100 runs, oldest first."""
    newest = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 100})
    return newest.json()["dag_runs"][::-1]


def webhook_runs(stack) -> list[dict]:
    return runs(stack, EVENTS_DAG_ID)


def no_active_run(stack) -> bool:
    return not [r for r in runs(stack) + webhook_runs(stack) if r["state"] in ("queued", "running")]


def xcom(stack, dag_id: str, run_id: str, task_id: str, key: str):
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
    response = stack.api("GET", path)
    assert response.status_code == 200, response.text
    value = response.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def task_start(stack, run_id: str, task_id: str) -> datetime:
    """When the task of the hook events run started."""
    [ti] = [t for t in stack.task_instances(EVENTS_DAG_ID, run_id) if t["task_id"] == task_id]
    return datetime.fromisoformat(ti["start_date"])


def attempt_runs(stack, started: list[dict]) -> list[dict]:
    """The runs that took an attempt of the events: they failed. A run started while another was already running
    but had not yet claimed the events finds nothing due: it must succeed having planned nothing."""
    attempts = []
    for run in started:
        state = stack.wait_for_run(EVENTS_DAG_ID, run["dag_run_id"], 120)
        if state == "failed":
            attempts.append(run)
        else:
            assert state == "success", run
            assert xcom(stack, EVENTS_DAG_ID, run["dag_run_id"], "list_ids", "plan")["total_ids"] == 0, run
    return attempts


def remove_sync_user(root_api, bank, users) -> None:
    group_id = bank.group(GROUP)["id"]
    response = root_api.delete(f"{root_api.base}/groups/{group_id}/members/{users['imrt-sync']['id']}", timeout=10)
    assert response.status_code == 204, response.text


def restore_sync_user(root_api, bank, users) -> None:
    group_id = bank.group(GROUP)["id"]
    response = root_api.post(
        f"{root_api.base}/groups/{group_id}/members",
        data={"user_id": users["imrt-sync"]["id"], "access_level": MAINTAINER},
        timeout=10,
    )
    assert response.status_code == 201, response.text


class HeadWatcher:
    """Polls ``item_git`` and records when each (project, sha) was first seen there."""

    def __init__(self, imrt, period: float = 0.1):
        self.imrt, self.period = imrt, period
        self.first_seen: dict[tuple[int, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> HeadWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._look()  # what appeared since the last poll: the caller saw it before stopping the watcher

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._look()

    def _look(self) -> None:
        now = time.monotonic()
        for key in heads(self.imrt).items():
            self.first_seen.setdefault(key, now)


# ------------------------------------------------------------------------------------------------------ tests


def test_real_git_pushes_reach_the_rows_through_the_servers_hooks(
    stack, synced, item_bank, imrt, tmp_path, record_property
):
    bank, projects, server = item_bank
    checkouts = [Checkout(server, project, tmp_path) for project in projects[:LATENCY_ITEMS]]
    pushed: list[tuple[int, str, str, float]] = []  # (project id, sha, status, when git push returned)
    with HeadWatcher(imrt) as watcher:
        for number in range(PUSHES):
            checkout = checkouts[number % LATENCY_ITEMS]
            status = f"Review {number}"
            sha = checkout.push_status(status)
            pushed.append((checkout.project["id"], sha, status, time.monotonic()))
        last = {pid: (sha, status) for pid, sha, status, _ in pushed}
        wait_until(
            lambda: all(heads(imrt).get(pid) == sha for pid, (sha, _) in last.items()),
            600,
            "every item at its last pushed sha",
        )
    for checkout in checkouts:
        sha, status = last[checkout.project["id"]]
        assert item_row(imrt, checkout.project)["workflow_status"] == status
        assert bank.head(checkout.project["id"]) == sha
    recorded = wait_until(  # the rows are written by the sync tasks, the events closed by the run's summary after
        lambda: (
            (found := events_for(imrt, [sha for _, sha, _, _ in pushed]))
            and all(e["status"] in ("synced", "failed") for e in found)
            and found
        ),
        120,
        "the push events to be closed",
    )
    assert len(recorded) == PUSHES  # one delivery per push reached the receiver, none lost
    assert {e["status"] for e in recorded} == {"synced"}
    assert all(e["run_id"].startswith("webhook__") for e in recorded)

    def push_deliveries():
        found = [
            d
            for p in projects[:LATENCY_ITEMS]
            for d in server.hooks.deliveries(project_id=p["id"])
            if d["trigger"] == "push_hooks"
        ]
        return found if len(found) >= PUSHES else None

    deliveries = wait_until(push_deliveries, 60, "the server's record of every push hook delivery")
    assert len(deliveries) == PUSHES and {d["response_status"] for d in deliveries} == {200}

    latencies = []
    for index, (pid, _, _, returned) in enumerate(pushed):
        # A push absorbed by a later one of the same item never shows alone: its content is live once a later sha is.
        later = [sha for p, sha, _, _ in pushed[index:] if p == pid]
        seen = min(watcher.first_seen[(pid, sha)] for sha in later if (pid, sha) in watcher.first_seen)
        latencies.append(max(0.0, seen - returned))
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[18]
    record_property("push_to_row_p50_seconds", round(p50, 2))
    record_property("push_to_row_p95_seconds", round(p95, 2))
    print(
        f"push-to-row latency over {PUSHES} git pushes to {LATENCY_ITEMS} items: p50 {p50:.2f} s, p95 {p95:.2f} s, "
        f"max {max(latencies):.2f} s; {len({e['run_id'] for e in recorded})} webhook runs"
    )


def test_a_sync_user_without_access_deletes_nothing_and_says_why(
    stack, synced, item_bank, users, imrt, root_api, tmp_path
):
    bank, projects, server = item_bank
    wait_until(lambda: no_active_run(stack), 300, "no active run")
    rows_before, heads_before = item_ids(imrt), heads(imrt)
    assert len(rows_before) == BANK_SIZE
    runs_before = {r["dag_run_id"] for r in webhook_runs(stack)}
    remove_sync_user(root_api, bank, users)
    try:
        pushed = Checkout(server, projects[6], tmp_path).push_status("Pushed without access")
        [event] = wait_until(
            lambda: [e for e in events_for(imrt, [pushed]) if e["status"] == "failed"],
            300,
            "the push event to fail for good",
        )
        assert event["attempts"] == MAX_ATTEMPTS
        assert LOST_ACCESS in event["detail"], event["detail"]
        tried = attempt_runs(stack, [r for r in webhook_runs(stack) if r["dag_run_id"] not in runs_before])
        assert len(tried) == MAX_ATTEMPTS, tried
        for run in tried:  # the group answers, its projects do not: each run plans, then withholds the deletion
            plan = xcom(stack, EVENTS_DAG_ID, run["dag_run_id"], "list_ids", "plan")
            assert plan["to_delete"] == [] and LOST_ACCESS in plan["failed"][str(projects[6]["id"])], plan
        wait_until(lambda: no_active_run(stack), 300, "no active run")

        admin_token = stack.token("admin")
        started = requests.post(
            f"{stack.url}/sync/{projects[6]['id']}", headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        )
        assert started.status_code == 200, started.text
        execution_id = started.json()["jobExecutionId"]
        assert stack.wait_for_run(DAG_ID, f"legacy__{execution_id}", 300) == "failed"
        with imrt.connect() as conn:
            row = conn.execute(
                sa.text("SELECT status, exit_message FROM batch_job_execution WHERE job_execution_id = :i"),
                {"i": execution_id},
            ).one()
        assert row.status == "FAILED" and LOST_ACCESS in row.exit_message, row

        full_run = stack.trigger(DAG_ID, conf={"mode": "full"})
        assert stack.wait_for_run(DAG_ID, full_run, 300) == "failed"
        assert LOST_ACCESS in xcom(stack, DAG_ID, full_run, "summary", "outcome")["message"]
        assert item_ids(imrt) == rows_before  # nothing deleted by any of the refused runs
        assert heads(imrt) == heads_before
    finally:
        restore_sync_user(root_api, bank, users)

    recovered = stack.trigger(DAG_ID, conf={"mode": "full"})
    assert stack.wait_for_run(DAG_ID, recovered, 300) == "success"
    assert heads(imrt)[projects[6]["id"]] == pushed
    assert item_ids(imrt) == rows_before

    doomed = projects[7]
    deleted = root_api.delete(f"{root_api.base}/projects/{doomed['id']}", timeout=10)
    assert deleted.status_code == 202, deleted.text
    after_delete = stack.trigger(DAG_ID, conf={"mode": "full"})
    assert stack.wait_for_run(DAG_ID, after_delete, 300) == "success"
    assert item_ids(imrt) == rows_before - {int(doomed["path"])}
    assert doomed["id"] not in heads(imrt)


def test_events_back_off_and_stop_while_access_is_lost_then_a_new_push_recovers(
    stack, synced, item_bank, users, imrt, root_api, tmp_path
):
    """One push event, no access: MAX_ATTEMPTS (3) webhook__ runs take an attempt, spaced by at least the back-off,
    and at most K = 2 * MAX_ATTEMPTS (6) webhook__ runs start (each attempt's run, plus at most one empty run that
    the sweeper starts while that run is running but has not yet claimed the event) in T = the time until the event
    fails plus a quiet window of 2 * RETRY_MAX_SECONDS + 4 sweeps (20 s)."""
    bank, projects, server = item_bank
    wait_until(lambda: no_active_run(stack), 300, "no active run")
    checkout = Checkout(server, projects[8], tmp_path)
    before = {r["dag_run_id"] for r in webhook_runs(stack)}
    remove_sync_user(root_api, bank, users)
    try:
        sha = checkout.push_status("Backing off")
        [event] = wait_until(
            lambda: [e for e in events_for(imrt, [sha]) if e["status"] == "failed"],
            300,
            "the push event to fail for good",
        )
        quiet_window = 2 * RETRY_MAX_SECONDS + 4 * SWEEP_SECONDS
        deadline = time.monotonic() + quiet_window
        while time.monotonic() < deadline:  # an observation window: nothing may start in it
            started = [r for r in webhook_runs(stack) if r["dag_run_id"] not in before]
            assert len(started) <= 2 * MAX_ATTEMPTS, [r["dag_run_id"] for r in started]
            time.sleep(SWEEP_SECONDS)
        tried = attempt_runs(stack, started)
        assert len(tried) == event["attempts"] == MAX_ATTEMPTS
        for attempt, (earlier, later) in enumerate(itertools.pairwise(tried), start=1):
            delay = min(RETRY_BASE_SECONDS * 2 ** (attempt - 1), RETRY_MAX_SECONDS)
            # The back-off holds when the event is claimed, by the later run's list_ids (a run may be queued
            # earlier, while the previous one runs: max_active_runs=1 keeps it waiting).
            closed_no_earlier_than = task_start(stack, earlier["dag_run_id"], "summary")
            claimed_no_earlier_than = task_start(stack, later["dag_run_id"], "list_ids")
            spacing = (claimed_no_earlier_than - closed_no_earlier_than).total_seconds()
            assert spacing >= delay - 0.05, (attempt, earlier, later)
        assert heads(imrt)[projects[8]["id"]] != sha
    finally:
        restore_sync_user(root_api, bank, users)

    recovered_sha = checkout.push_status("Recovered")
    [recovered] = wait_until(
        lambda: [e for e in events_for(imrt, [recovered_sha]) if e["status"] == "synced"],
        300,
        "the new push event to be synced",
    )
    assert heads(imrt)[projects[8]["id"]] == recovered_sha
    assert item_row(imrt, projects[8])["workflow_status"] == "Recovered"
    # The failed event says why it failed: GitLab did not show that the sync user sees the whole group.
    assert LOST_ACCESS in (event["detail"] or ""), event["detail"]
