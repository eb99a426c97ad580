"""Load: the first sync of a 2,000-item bank while GitLab sends 5 push events a second (issue 7).

Every push is answered, recorded and synced (each pushed item ends at its last pushed commit), and the nightly run
ends in a true state with its Spring Batch row, all through the real API server, scheduler and DAG processor.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from e2e_helpers import wait_until
from stack_fixtures import RealStack

from imrt_sync import DAG_ID, EVENTS_DAG_ID
from itembank_server import ItemBank

pytestmark = pytest.mark.e2e

GROUP = "iat-load"
TOKEN = "glpat-load-token"
SECRET = "whsec-load-" + uuid.uuid4().hex
BANK_SIZE = 2000
PUSHES_PER_SECOND = 5
PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "gitlab_webhooks"
STACK = RealStack(
    name="load",
    group=GROUP,
    token=TOKEN,
    bank_size=BANK_SIZE,
    seed=21,
    webhook_secret=SECRET,
    extra_env={"AIRFLOW__IMRT__WEBHOOK_SWEEP_SECONDS": "5"},
)


class Pusher:
    """Commits to random items and sends their push events, PUSHES_PER_SECOND a second, until stopped."""

    def __init__(self, stack, bank: ItemBank, projects: list[dict]):
        self.stack, self.bank, self.projects = stack, bank, projects
        self.rng = random.Random(7)
        self.stopped = threading.Event()
        self.answers: list[tuple[int, dict]] = []
        self.last_sha: dict[int, str] = {}
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pusher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=60)

    def _run(self) -> None:
        session = requests.Session()
        number = 0
        started = time.monotonic()
        while not self.stopped.is_set():
            project = self.rng.choice(self.projects)
            try:
                self._push(session, project, number)
            except Exception as exc:
                self.errors.append(f"push {number} to {project['id']}: {exc!r}")
            number += 1
            # Paced by the clock (push k goes out at k / rate seconds), not by fixed sleeps.
            self.stopped.wait(max(0.0, started + number / PUSHES_PER_SECOND - time.monotonic()))

    def _push(self, session: requests.Session, project: dict, number: int) -> None:
        document = json.loads(self.bank.read_file(project["id"], "item.json"))
        document["workflow"] = {"workflowStatusCode": f"Load {number}"}
        sha = self.bank.push_commit(project["id"], files={"item.json": document}, message=f"load {number}")
        payload = json.loads((PAYLOADS / "push.json").read_text())
        payload.update(
            project_id=project["id"],
            after=sha,
            checkout_sha=sha,
            ref=f"refs/heads/{project['default_branch']}",
            project={
                **payload["project"],
                "id": project["id"],
                "path_with_namespace": project["path_with_namespace"],
                "default_branch": project["default_branch"],
            },
        )
        response = session.post(
            f"{self.stack.url}/webHook",
            json=payload,
            timeout=30,
            headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET},
        )
        self.answers.append((response.status_code, response.json()))
        self.last_sha[project["id"]] = sha


def test_a_2000_item_sync_with_5_pushes_a_second_loses_nothing(stack, item_bank, imrt):
    bank, projects, _ = item_bank
    stack.unpause(DAG_ID)  # starts the latest scheduled (nightly) run: the first full sync
    nightly = wait_until(lambda: [r for r in runs(stack) if r["run_type"] == "scheduled"], 60, "the nightly run")[0]
    published = [p for p in projects if bank.read_file(p["id"], "item.json") is not None]  # not the ones being created
    with Pusher(stack, bank, published) as pusher:
        state = stack.wait_for_run(DAG_ID, nightly["dag_run_id"], timeout=1500)
    assert state == "success"
    assert pusher.errors == []
    assert len(pusher.answers) >= 50, "the sync ended before the load was on"
    assert {status for status, _ in pusher.answers} == {200}
    event_ids = [body["event"] for _, body in pusher.answers]
    assert {body["status"] for _, body in pusher.answers} == {"pending"}

    def all_closed():
        rows = events(imrt, event_ids)
        return rows if len(rows) == len(event_ids) and all(r["status"] in ("synced", "failed") for r in rows) else None

    closed = wait_until(all_closed, 600, f"{len(event_ids)} push events to be synced")
    assert {r["status"] for r in closed} == {"synced"}
    with imrt.connect() as conn:
        heads = dict(conn.execute(sa.text("SELECT project_id, current_commit_hash FROM item_git")).all())
        assert len(heads) == BANK_SIZE
        mismatched = {pid: sha for pid, sha in pusher.last_sha.items() if heads.get(pid) != sha}
        assert mismatched == {}
        row = conn.execute(
            sa.text(
                "SELECT e.status, e.exit_code, e.end_time FROM batch_job_execution e"
                " JOIN batch_job_execution_context c USING (job_execution_id) WHERE c.short_context LIKE :run"
            ),
            {"run": f"%{nightly['dag_run_id']}%"},
        ).one()
        assert (row.status, row.exit_code) == ("COMPLETED", "COMPLETED") and row.end_time is not None
        assert conn.scalar(sa.text("SELECT count(*) FROM batch_job_execution WHERE end_time IS NULL")) == 0
    event_runs = {r["run_id"] for r in closed}
    assert len(event_runs) < len(event_ids) / 5  # coalesced, not a run per push
    assert [stack.wait_for_run(EVENTS_DAG_ID, run_id, timeout=300) for run_id in sorted(event_runs)] == [
        "success"
    ] * len(event_runs)


def runs(stack) -> list[dict]:
    return stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"]


def events(imrt, ids: list[int]) -> list[dict]:
    with imrt.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text("SELECT * FROM imrt_webhook_event WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids}
            ).mappings()
        ]
