"""Every kind of trigger but the hook events (the pushes start those): the legacy ``POST /sync`` and
``POST /sync/{projectId}``, and the REST API's ``POST /api/v2/dags/{dag_id}/dagRuns`` with ``mode`` full or
incremental and with ``item_ids``.

The legacy routes answer 409 while a bank-wide run (of ``item_synchronization``) is queued or running; the hook
events' runs are another DAG's and do not count. They open the soak (:mod:`devstack.soak.schedule`): the first call
of each first waits (at most ``IDLE_WAIT`` s, polling) for a moment without a bank-wide run, so that each is seen to
start one; later calls ask at once and a 409 is recorded as refused. REST triggers always queue a run
(``max_active_runs=1``, runs start in the order they were queued); to keep the queue short, so that quiescence stays
short, a REST trigger is chosen only while fewer than ``MAX_QUEUED`` bank-wide runs are queued
(:func:`queue_has_room`, a condition of the schedule).
"""

from __future__ import annotations

import contextlib

import requests

from imrt_sync import DAG_ID

from .journal import DONE, REFUSED, SKIPPED, Entry
from .waiting import DeadlinePassed, poll_until
from .world import World

IDLE_WAIT = 60.0
MAX_QUEUED = 2


def legacy_post(world: World, kind: str, path: str, project_id: int | None = None) -> Entry:
    if kind not in world.journal.counts():
        with contextlib.suppress(DeadlinePassed):  # ask anyway: a 409 is an answer too
            poll_until(lambda: not bank_wide(world.active_runs()), min(IDLE_WAIT, max(world.remaining(), 1)), "no run")
    airflow = world.stack.airflow
    response = requests.post(f"{airflow.url}{path}", headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=60)
    if response.status_code == 200:
        execution = response.json()["jobExecutionId"]
        return world.journal.record(kind, DONE, f"POST {path} -> 200, legacy__{execution}", project_id)
    return world.journal.record(
        kind, REFUSED, f"POST {path} -> {response.status_code} {response.text[:80]}", project_id
    )


def sync_all(world: World) -> Entry:
    return legacy_post(world, "sync_all", "/sync")


def sync_item(world: World) -> Entry:
    project = world.pick(world.projects_in_scope())
    if project is None:
        return world.journal.record("sync_item", SKIPPED, "no project")
    return legacy_post(world, "sync_item", f"/sync/{project['id']}", project["id"])


def bank_wide(runs: list[dict]) -> list[dict]:
    """The runs of ``item_synchronization`` among ``runs`` (not the hook events')."""
    return [run for run in runs if run["dag_id"] == DAG_ID]


def queue_has_room(world: World) -> bool:
    return sum(run["state"] == "queued" for run in bank_wide(world.active_runs(max_age=1.0))) < MAX_QUEUED


def rest_trigger(world: World, kind: str, conf: dict, project_id: tuple[int, ...] | None = None) -> Entry:
    run_id = world.stack.airflow.trigger(DAG_ID, conf=conf)
    return world.journal.record(kind, DONE, f"{run_id} conf {conf}", project_id)


def dagrun_full(world: World) -> Entry:
    return rest_trigger(world, "dagrun_full", {"mode": "full"})


def dagrun_incremental(world: World) -> Entry:
    return rest_trigger(world, "dagrun_incremental", {"mode": "incremental"})


def dagrun_item_ids(world: World) -> Entry:
    """Some projects of the bank, sometimes with one that was just deleted or moved out (the ids are GitLab's)."""
    projects = world.projects_in_scope() + world.outside_projects()
    if not projects:
        return world.journal.record("dagrun_item_ids", SKIPPED, "no project")
    chosen = world.rng.sample(projects, k=min(len(projects), world.rng.randint(1, 3)))
    ids = sorted(p["id"] for p in chosen)
    mode = world.rng.choice(("incremental", "full"))
    return rest_trigger(world, "dagrun_item_ids", {"mode": mode, "item_ids": ids}, tuple(ids))
