"""Quiescence and the final run: the stack made whole (faults off, the sync user back in the group, the scheduler
up), then polled with a deadline until no run is queued or running and no hook event is open (pending, due or in
back-off, or claimed); then one incremental run through the REST API, and the same wait again.

An open hook event is one IMRT still owes a run: ``pending`` (due now or after its back-off) or ``claimed`` by a run.
Events left open at the end are counted as "left due".
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from imrt_compat.task_contract import VERDICT
from imrt_sync import DAG_ID, EVENTS_DAG_ID
from itembank_server.users import MAINTAINER

from .stack import GROUP, SYNC_USER
from .waiting import DeadlinePassed, poll_until
from .world import ACTIVE_RUN_STATES, World

EVENT_COUNTS = sa.text(
    "SELECT count(*) FILTER (WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now()))"
    " AS due, count(*) FILTER (WHERE status = 'pending' AND next_attempt_at > now()) AS backing_off,"
    " count(*) FILTER (WHERE status = 'claimed') AS claimed, count(*) FILTER (WHERE status = 'synced') AS synced,"
    " count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER (WHERE status = 'ignored') AS ignored"
    " FROM imrt_webhook_event"
)


@dataclass
class Quiet:
    settle_seconds: float | None = None  # None: the deadline passed first
    final_run: str = ""
    final_state: str = ""
    final_message: str = ""
    events: dict[str, int] = field(default_factory=dict)
    active_runs: list[str] = field(default_factory=list)
    runs: Counter = field(default_factory=Counter)  # (kind, state) -> runs
    slowest: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind -> (longest queue, longest run) s

    @property
    def events_left_due(self) -> int:
        return sum(self.events.get(status, 0) for status in ("due", "backing_off", "claimed"))


def event_counts(world: World) -> dict[str, int]:
    with world.stack.imrt.connect() as conn:
        return dict(conn.execute(EVENT_COUNTS).mappings().one())


def restore_everything(world: World) -> list[str]:
    """Faults off, the sync user a Maintainer of the group, the scheduler running; what had to be done."""
    done = []
    if world.stack.server.faults.list():
        world.stack.server.faults.clear()
        done.append("cleared faults")
    group_id, user_id = world.group(GROUP)["id"], world.stack.users[SYNC_USER]["id"]
    if world.bank.member(group_id, user_id) is None:
        answer = world.rest.add_member(group_id, user_id, MAINTAINER)
        done.append(f"restored {SYNC_USER}: {answer.status}")
    if world.stack.airflow.processes["scheduler"].poll() is not None:
        world.stack.airflow.restart("scheduler")
        done.append("started the scheduler")
    return done


def is_quiet(world: World) -> bool:
    counts = event_counts(world)
    open_events = counts["due"] + counts["backing_off"] + counts["claimed"]
    return not world.active_runs() and open_events == 0


def settle(world: World, timeout: float) -> float | None:
    """Seconds until quiet, or None when ``timeout`` passed first."""
    began = time.monotonic()
    try:
        poll_until(lambda: is_quiet(world), timeout, "no active run and no open hook event", period=1.0)
    except DeadlinePassed:
        return None
    return time.monotonic() - began


def verdict_message(world: World, run_id: str) -> str:
    response = world.stack.airflow.api("GET", VERDICT.rest_path(run_id))
    if response.status_code != 200:
        return f"(no summary outcome: {response.status_code})"
    verdict = VERDICT.rest_value(response.json())
    return verdict.get("message", "") if isinstance(verdict, dict) else str(verdict)


def all_runs(world: World) -> list[dict]:
    """Every run of both DAGs."""
    return world.stack.airflow.dag_runs(DAG_ID) + world.stack.airflow.dag_runs(EVENTS_DAG_ID)


def run_kind(run_id: str) -> str:
    return run_id.split("__", 1)[0] if "__" in run_id else "other"


def seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def slowest_runs(runs: list[dict]) -> dict[str, tuple[float, float]]:
    """Per kind of run, the longest wait in the queue and the longest run."""
    found: dict[str, tuple[float, float]] = {}
    for run in runs:
        kind = run_kind(run["dag_run_id"])
        queued = seconds_between(run.get("queued_at"), run.get("start_date"))
        ran = seconds_between(run.get("start_date"), run.get("end_date"))
        longest_queue, longest_run = found.get(kind, (0.0, 0.0))
        found[kind] = (max(longest_queue, queued), max(longest_run, ran))
    return found


def quiesce(world: World, timeout: float, say) -> Quiet:
    quiet = Quiet()
    for step in restore_everything(world):
        say(f"quiescence: {step}")
    quiet.settle_seconds = settle(world, timeout)
    settled = quiet.settle_seconds
    say(
        f"quiescence: quiet after {settled:.0f} s"
        if settled is not None
        else f"quiescence: NOT quiet after {timeout:.0f} s"
    )
    quiet.final_run = world.stack.airflow.trigger(DAG_ID, conf={"mode": "incremental"})
    try:
        quiet.final_state = world.stack.airflow.wait_for_run(DAG_ID, quiet.final_run, timeout=timeout)
    except TimeoutError as error:
        quiet.final_state = f"not ended: {error}"[:300]
    quiet.final_message = verdict_message(world, quiet.final_run)
    say(f"final incremental run {quiet.final_run}: {quiet.final_state}")
    settle(world, 60)
    quiet.events = event_counts(world)
    runs = all_runs(world)
    quiet.active_runs = [r["dag_run_id"] for r in runs if r["state"] in ACTIVE_RUN_STATES]
    quiet.runs = Counter((run_kind(r["dag_run_id"]), r["state"]) for r in runs)
    quiet.slowest = slowest_runs(runs)
    return quiet
