"""The ``item_synchronization`` DAG, which keeps the IMRT database in step with the GitLab item bank, and its twin
``item_synchronization_events``, which syncs the items of GitLab's hook events while a bank-wide run may be in
progress (the same tasks; :class:`Shape` says what differs).

A thin shell over the run protocol of ``imrt_sync.pipeline``: every task calls one pipeline function
(``open_run``, ``sync_unit``, ``dispatch_webhooks``, ``close_run``) with its run and services
(``imrt_compat.dag_tasks.task_run``: the settings it reads when it runs, one read of each variable per task; DAG
parsing does no I/O: the guardrails come from Airflow's configuration, see ``imrt_compat.guardrails``). A task gets
what other tasks published as its arguments, and publishes through the XComs named in
``imrt_compat.task_contract``: the wiring at the end of ``synchronization_dag`` shows every data edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import Param, dag, task

from imrt_compat import alerts, guardrails
from imrt_compat.assets import ITEM_DATA
from imrt_compat.task_contract import (
    DISPATCH_WEBHOOKS,
    HOOKS_OUTCOME,
    LIST_IDS,
    LISTING_FAILURE,
    PLAN,
    SUMMARY,
    SYNC,
    UNIT_OUTCOME,
)
from imrt_sync import DAG_ID, EVENTS_DAG_ID
from imrt_sync.config import ITEM_ID_LINE, RUN_MODES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from imrt_sync.contracts import ListingFailure, PlanView, UnitOutcome, WebhooksOutcome, WorkUnit

DOC_MD = """
# Item synchronization

Makes the `imrt` PostgreSQL database reflect the GitLab item bank: one GitLab project per item, `item.json`
at the root of its default branch. Replaces the legacy `itemSynchronizationJob` (`POST /sync`).

| task | what it does | legacy step |
|---|---|---|
| `list_ids` | lists the group's projects, compares each default-branch head with the head recorded at the item's last sync (`imrt_project_head`), plans the run | "getting item bank ids from source control" |
| `sync` (one per item, or per range of items above `imrt_map_bound`) | fetches the repository, reads `item.json` at the head and writes `item`, `item_git`, `item_log`, `item_attachment`, `item_form`, `stim_link` in one transaction under `project_lock`; deletes items whose project is confirmed gone (asked again just before) | the `item-update` / `item-delete` consumers |
| `dispatch_webhooks` | creates the project hook where it is missing, fixes it where it is disabled, lacks push events or the current secret | "number of items requiring project webhook" |
| `summary` | logs the legacy exit message; fails the run if any item failed | "Item Synchronization Process complete." |

**Data flow** (XComs): `list_ids` returns the work units `sync` is mapped over and publishes the `plan` (and
`jobExecutionId`; `listing_failure` instead when it cannot plan); each `sync` instance publishes its `unit_outcome`;
`dispatch_webhooks` reads the `plan` and publishes its `hooks_outcome`; `summary` reads all of them and publishes the
run's verdict as `outcome`. `dispatch_webhooks` and `summary` run whatever failed before them; what a failed task did
not publish reaches them as nothing: without a plan `dispatch_webhooks` fails at once, and `summary` says why the
run failed.

**Params**: `mode` (`incremental`: only new items and items whose head moved since their last sync; `full`: re-ingest
every item), `item_ids` (GitLab project ids: sync only these), `dry_run` (plan and log, write nothing, create no
hook).

**Real-time path**: pushes are synced by the DAG `item_synchronization_events`, whose runs (`webhook__…`) the
GitLab hook receiver (`/webHook`) starts, while a run of this DAG may be in progress (an item is written by one run
at a time: the item lock).

**Guardrails**: run and task timeouts, the `imrt_gitlab` pool for the tasks that call GitLab, a failure alert
with the exit message and this run's URL, the `imrt_item_data` asset updated by successful runs, and `imrt.*`
metrics: see docs/reliability.md in the repository.

**Where to look**: each `sync` instance is named after its item id; its log has one `ITEM EVENT` line per item.
A failed run's `summary` log names every failed item and its error. Configuration: docs/configuration.md in the repository.
"""

EVENTS_DOC_MD = """
# Item synchronization: GitLab hook events

The real-time path. The GitLab hook receiver (`/webHook` on the API server) records every push and project event in
`imrt_webhook_event` and starts a run `webhook__<time>` of this DAG; the run takes every due pending event and syncs
those items with the same tasks as `item_synchronization` (`list_ids` → `sync` → `dispatch_webhooks` → `summary`),
closing the events as `synced` or counting a failed attempt.

Its runs do not wait for a run of `item_synchronization` (nightly, full, `POST /sync`), nor for each other (up to
4 at once): they may write at the same time, one item at a time (each item's read and write hold its item lock, so
the later reader writes the newer state). The receiver starts a run only when no run is about to take the due
events, so pushes that arrive while a run is queued or planning are taken by it. Not mirrored into the
Spring Batch tables, never a reason for `POST /sync` to answer 409. Unpaused when it first appears; pausing it holds
the events (they stay `pending`) until it is unpaused. A manual run takes the pending events, like the receiver's.
See docs/real-time-path.md in the repository.
"""

PARAMS = {
    "mode": Param(
        "incremental",
        type="string",
        enum=list(RUN_MODES),
        title="Mode",
        description="incremental: only items whose default-branch head changed; full: re-ingest every item.",
    ),
    # No "type" in "items": Airflow's trigger form renders such an array as a text box of one value per line and
    # sends the lines as strings (an array of integers would be a JSON editor: `200005` typed there is refused).
    # REST callers and POST /sync/{id} send integers. Both are checked here when a run is triggered; the tasks
    # turn the lines into ints (imrt_sync.config.item_ids_from).
    "item_ids": Param(
        None,
        type=["null", "array"],
        items={"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": ITEM_ID_LINE}]},
        title="Item bank ids",
        description="GitLab project ids to sync, one per line (e.g. 200005). Empty: the whole group.",
    ),
    "dry_run": Param(
        False,
        type="boolean",
        title="Dry run",
        description="Plan and log what would change; write nothing and create no hook.",
    ),
}

TIMEOUTS = guardrails.timeouts()
EVENTS_MAX_ACTIVE_RUNS = 4
GITLAB_POOL = guardrails.gitlab_pool()


@dataclass(frozen=True)
class Shape:
    """What differs between the two DAGs of this file; their tasks are the same."""

    dag_id: str
    schedule: str | None
    max_active_runs: int
    doc_md: str
    params: dict
    pool: str
    is_paused_upon_creation: bool | None


def synchronization_dag(shape: Shape):
    @dag(
        dag_id=shape.dag_id,
        schedule=shape.schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=shape.max_active_runs,
        is_paused_upon_creation=shape.is_paused_upon_creation,
        tags=["imrt", "item-bank", "gitlab"],
        doc_md=shape.doc_md,
        params=shape.params,
        dagrun_timeout=TIMEOUTS.run,
        on_failure_callback=[notifier for notifier in [alerts.failure_notifier()] if notifier],
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": 2.0,  # 3.x: the multiplier (30 s, then 60 s), capped by max_retry_delay
            "max_retry_delay": timedelta(minutes=10),
        },
    )
    def synchronization():
        @task(task_id=LIST_IDS, multiple_outputs=False, execution_timeout=TIMEOUTS.list_ids, pool=shape.pool)
        def list_ids() -> list[WorkUnit]:
            """Start and plan the run; return the work units ``sync`` is mapped over (the plan beside them)."""
            from imrt_compat import dag_tasks
            from imrt_sync import pipeline

            with dag_tasks.task_run(failed=dag_tasks.listing_failed) as task:
                planned = pipeline.open_run(task.run, task.engine, task.read_settings)
            return dag_tasks.report_planned(planned)

        @task(
            task_id=SYNC,
            map_index_template="{{ task.op_kwargs['unit']['label'] }}",
            multiple_outputs=False,
            execution_timeout=TIMEOUTS.sync,
            pool=shape.pool,
        )
        def sync(unit: WorkUnit) -> None:
            from imrt_compat import dag_tasks
            from imrt_sync import pipeline

            with dag_tasks.task_run() as task:
                outcome = pipeline.sync_unit(task.services, unit, task.params)
            dag_tasks.report_unit(outcome)

        @task(
            task_id=DISPATCH_WEBHOOKS,
            trigger_rule="all_done",
            multiple_outputs=False,
            execution_timeout=TIMEOUTS.dispatch_webhooks,
            pool=shape.pool,
        )
        def dispatch_webhooks(plan: PlanView | None) -> None:
            """Fix the hooks of the projects the plan found without one. Runs after failed ``sync`` instances too; with no
            plan (``list_ids`` failed) it fails at once, and ``summary`` says why."""
            from imrt_compat import dag_tasks
            from imrt_sync import pipeline

            plan = dag_tasks.required_plan(plan)
            with dag_tasks.task_run() as task:
                outcome = pipeline.dispatch_webhooks(task.services, plan, task.params)
            dag_tasks.report_webhooks(outcome)

        @task(
            task_id=SUMMARY,
            trigger_rule="all_done",
            multiple_outputs=False,
            execution_timeout=TIMEOUTS.summary,
            outlets=[ITEM_DATA],
        )
        def summary(
            plan: PlanView | None,
            units: list[WorkUnit] | None,
            listing_failure: ListingFailure | None,
            unit_outcomes: Sequence[UnitOutcome] | None,
            hooks: WebhooksOutcome | None,
            outlet_events=None,
        ) -> None:
            """Close the run (``pipeline.close_run``) with what the other tasks published (None where a task published
            nothing) and publish its verdict, which the failure alert reads. Returns nothing, so no ``return_value``."""
            from imrt_compat import dag_tasks
            from imrt_sync import pipeline

            results = dag_tasks.run_results(plan, units, listing_failure, unit_outcomes, hooks)
            with dag_tasks.task_run() as task:
                verdict = pipeline.close_run(task.services, task.run, results)
                dag_tasks.report_metrics(task, verdict)
            outlet_events[ITEM_DATA].extra = dag_tasks.item_data_extra(task.run, verdict)  # emitted only on success
            dag_tasks.report_verdict(verdict)

        # The data edges: each argument is what a task published (task_contract: None where it published nothing).
        listed = list_ids()  # its return value: the work units
        plan = PLAN.arg(listed)
        synced = sync.expand(unit=listed)
        hooks = dispatch_webhooks(plan=plan)
        synced >> hooks  # the hooks once the items are in (an order, not data)
        summary(
            plan=plan,
            units=listed,
            listing_failure=LISTING_FAILURE.arg(listed),
            unit_outcomes=UNIT_OUTCOME.arg(synced),
            hooks=HOOKS_OUTCOME.arg(hooks),
        )

    return synchronization()


item_synchronization = synchronization_dag(
    Shape(DAG_ID, "0 9 * * *", 1, DOC_MD, PARAMS, GITLAB_POOL, is_paused_upon_creation=None)
)
# Pushes are synced while a bank-wide run is in progress: another DAG, outside the bank-wide runs' GitLab pool (the
# executor's slots beyond that pool are theirs: docs/configuration.md, gitlab_pool), unpaused when created so that
# hook events flow without an operator's step. A few runs at once, so that a push does not wait for a slow run (an
# item retrying); the receiver starts a run only when none is about to claim the due events, so a burst of pushes is
# still taken by one or two runs.
item_synchronization_events = synchronization_dag(
    Shape(
        EVENTS_DAG_ID,
        None,
        EVENTS_MAX_ACTIVE_RUNS,
        EVENTS_DOC_MD,
        {},
        "default_pool",
        is_paused_upon_creation=False,
    )
)
