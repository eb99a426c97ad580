"""The ``item_synchronization`` DAG: keeps the IMRT database in step with the GitLab item bank.

A thin shell over the run protocol of ``imrt_sync.pipeline``: every task calls one pipeline function
(``open_run``, ``sync_unit``, ``dispatch_webhooks``, ``close_run``) with the settings it reads when it runs (one
read of each variable per task; DAG parsing does no I/O: the guardrails come from Airflow's configuration, see
``imrt_compat.guardrails``) and reports through XCom (``imrt_compat.dag_tasks``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import Param, dag, task

from imrt_compat import alerts, guardrails, metrics
from imrt_compat.assets import ITEM_DATA
from imrt_sync import DAG_ID
from imrt_sync.config import ITEM_ID_LINE

if TYPE_CHECKING:
    from imrt_sync.contracts import WorkUnit

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

**Params**: `mode` (`incremental`: only new items and items whose head moved since their last sync; `full`: re-ingest
every item), `item_ids` (GitLab project ids: sync only these), `dry_run` (plan and log, write nothing, create no
hook).

**Real-time path**: runs named `webhook__…` are started by the GitLab hook receiver (`/webHook`); each takes every
pending event recorded in `imrt_webhook_event` and syncs those items. They are not mirrored into Spring Batch.

**Guardrails**: run and task timeouts, the `imrt_gitlab` pool for the tasks that call GitLab, a failure alert
with the exit message and this run's URL, the `imrt_item_data` asset updated by successful runs, and `imrt.*`
metrics: see docs/reliability.md in the repository.

**Where to look**: each `sync` instance is named after its item id; its log has one `ITEM EVENT` line per item.
A failed run's `summary` log names every failed item and its error. Configuration: docs/configuration.md in the repository.
"""

PARAMS = {
    "mode": Param(
        "incremental",
        type="string",
        enum=["incremental", "full"],
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
GITLAB_POOL = guardrails.gitlab_pool()


@dag(
    dag_id=DAG_ID,
    schedule="0 9 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["imrt", "item-bank", "gitlab"],
    doc_md=DOC_MD,
    params=PARAMS,
    dagrun_timeout=TIMEOUTS.run,
    on_failure_callback=[notifier for notifier in [alerts.failure_notifier()] if notifier],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,  # 3.x: the multiplier (30 s, then 60 s), capped by max_retry_delay
        "max_retry_delay": timedelta(minutes=10),
    },
)
def item_synchronization():
    @task(multiple_outputs=False, execution_timeout=TIMEOUTS.list_ids, pool=GITLAB_POOL)
    def list_ids(ti=None, params=None, run_id=None) -> list[WorkUnit]:
        """Start and plan the run; return the work units the ``sync`` task is mapped over."""
        from imrt_compat import dag_tasks, settings
        from imrt_sync import pipeline

        values = settings.read_variables()
        run = dag_tasks.run_context(params, run_id)
        try:
            with dag_tasks.task_database(values) as engine:
                planned = pipeline.open_run(run, engine, dag_tasks.settings_reader(values))
        except Exception as exc:
            dag_tasks.listing_failed(exc)
        ti.xcom_push(key="plan", value=planned["plan"])
        if planned["job_execution_id"] is not None:
            ti.xcom_push(key="jobExecutionId", value=planned["job_execution_id"])
        return planned["units"]

    @task(
        map_index_template="{{ task.op_kwargs['unit']['label'] }}",
        multiple_outputs=False,
        execution_timeout=TIMEOUTS.sync,
        pool=GITLAB_POOL,
    )
    def sync(unit: WorkUnit, params=None, run_id=None) -> None:
        from imrt_compat import dag_tasks, settings
        from imrt_sync import pipeline

        run = dag_tasks.run_context(params, run_id)
        with dag_tasks.task_services(settings.read_variables()) as services:
            outcome = pipeline.sync_unit(services, unit, run.params)
        dag_tasks.report_unit(outcome)

    @task(
        trigger_rule="all_done", multiple_outputs=False, execution_timeout=TIMEOUTS.dispatch_webhooks, pool=GITLAB_POOL
    )
    def dispatch_webhooks(ti=None, params=None, run_id=None) -> None:
        """Fix the hooks of the projects the plan found without one. The plan is pulled here, not passed as an
        argument: after a failed ``list_ids`` Airflow would fail the argument's resolution (``XComNotFound``, before
        this body runs) and retry it twice before ``summary`` could say why the run failed."""
        from imrt_compat import dag_tasks, settings
        from imrt_sync import pipeline

        plan = ti.xcom_pull(task_ids="list_ids", key="plan")
        if plan is None:
            dag_tasks.fail_task("list_ids did not produce a plan: nothing to do", transient=False)
        run = dag_tasks.run_context(params, run_id)
        with dag_tasks.task_services(settings.read_variables()) as services:
            outcome = pipeline.dispatch_webhooks(services, plan, run.params)
        dag_tasks.report_hooks(outcome)

    @task(trigger_rule="all_done", multiple_outputs=False, execution_timeout=TIMEOUTS.summary, outlets=[ITEM_DATA])
    def summary(ti=None, params=None, run_id=None, outlet_events=None) -> None:
        """Close the run (``pipeline.close_run``) and publish its verdict as the XCom ``outcome``, which the failure
        alert reads. Returns nothing, so no ``return_value`` XCom."""
        from imrt_compat import dag_tasks, settings
        from imrt_sync import pipeline

        run = dag_tasks.run_context(params, run_id)
        with dag_tasks.task_services(settings.read_variables()) as services:
            verdict = pipeline.close_run(services, run, dag_tasks.pull_results(ti))
            metrics.report_run(verdict, run.started_at, pendulum.now("UTC"))
            metrics.report_backlog(*pipeline.webhook_backlog(services.engine))
        outlet_events[ITEM_DATA].extra = {
            "run_id": run_id,
            "dry_run": run.params.dry_run,
            "synced": verdict["synced_count"],
            "deleted": verdict["deleted_count"],
            "failed": verdict["failed_count"],
        }  # emitted only when summary succeeds, i.e. the run completed
        dag_tasks.report(verdict, verdict["message"] if verdict["status"] != "COMPLETED" else None)

    synced = sync.expand(unit=list_ids())
    synced >> dispatch_webhooks() >> summary()


item_synchronization()
