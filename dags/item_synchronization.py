"""The ``item_synchronization`` DAG: keeps the IMRT database in step with the GitLab item bank.

A thin shell over ``imrt_sync.pipeline``: every task reads its settings when it runs (one read of each variable
per task; DAG parsing does no I/O: the guardrails come from Airflow's configuration, see ``imrt_compat.guardrails``),
calls one pipeline function and reports through XCom.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from imrt_compat import alerts, guardrails, metrics
from imrt_compat.assets import ITEM_DATA

if TYPE_CHECKING:
    from collections.abc import Mapping

    from imrt_sync.config import RunParams

DOC_MD = """
# Item synchronization

Makes the `imrt` PostgreSQL database reflect the GitLab item bank: one GitLab project per item, `item.json`
at the root of its default branch. Replaces the legacy `itemSynchronizationJob` (`POST /sync`).

| task | what it does | legacy step |
|---|---|---|
| `list_ids` | lists the group's projects, compares each default-branch head with `item_git`, plans the run | "getting item bank ids from source control" |
| `sync` (one per item, or per range of items above `imrt_map_bound`) | fetches the repository, reads `item.json` at the head and writes `item`, `item_git`, `item_log`, `item_attachment`, `item_form`, `stim_link` in one transaction under `project_lock`; deletes items whose project is confirmed gone (asked again just before) | the `item-update` / `item-delete` consumers |
| `dispatch_webhooks` | creates the project hook where it is missing, fixes it where it is disabled, lacks push events or the current secret | "number of items requiring project webhook" |
| `summary` | logs the legacy exit message; fails the run if any item failed | "Item Synchronization Process complete." |

**Params**: `mode` (`incremental`: only items whose head moved; `full`: re-ingest every item),
`item_ids` (GitLab project ids: sync only these), `dry_run` (plan and log, write nothing, create no hook).

**Real-time path**: runs named `webhook__…` are started by the GitLab hook receiver (`/webHook`); each takes every
pending event recorded in `imrt_webhook_event` and syncs those items. They are not mirrored into Spring Batch.

**Guardrails**: run and task timeouts, the `imrt_gitlab` pool for the tasks that call GitLab, a failure alert
with the exit message and this run's URL, the `imrt_item_data` asset updated by successful runs, and `imrt.*`
metrics: see "Guardrails, alerts and metrics" in the README.

**Where to look**: each `sync` instance is named after its item id; its log has one `ITEM EVENT` line per item.
A failed run's `summary` log names every failed item and its error. Configuration: the repository README.
"""

PARAMS = {
    "mode": Param(
        "incremental",
        type="string",
        enum=["incremental", "full"],
        title="Mode",
        description="incremental: only items whose default-branch head changed; full: re-ingest every item.",
    ),
    "item_ids": Param(
        None,
        type=["null", "array"],
        items={"type": "integer", "minimum": 1},
        title="Item bank ids",
        description="GitLab project ids to sync (one per line). Empty: the whole group.",
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

LEGACY_START = "Item Synchronization Process starting.  Job execution id: %s"
LEGACY_COMPLETE = "Item Synchronization Process complete.  Job execution id: %s, exit status code: %s, exit message: %s"


def _variables() -> Mapping[str, str]:
    """This task's snapshot of the ``imrt_*`` variables: each is read once, whatever the task asks for."""
    from imrt_sync import airflow_settings

    return airflow_settings.read_variables()


@contextmanager
def _services(values: Mapping[str, str]):
    from imrt_sync import airflow_settings
    from imrt_sync.gitlab import GitLabClient
    from imrt_sync.gitrepo import GitAccess
    from imrt_sync.pipeline import Services

    settings = airflow_settings.sync_settings(values)
    gitlab_settings = airflow_settings.gitlab_settings(values)
    engine = airflow_settings.imrt_engine(values)
    with GitLabClient(gitlab_settings) as gitlab:
        try:
            access = GitAccess.for_gitlab(gitlab_settings, settings.git_timeout)
            yield Services(settings, gitlab, engine, access)
        finally:
            engine.dispose()


def _run_params(params) -> RunParams:
    from imrt_sync.config import RunParams

    try:
        return RunParams.from_mapping(dict(params))
    except (TypeError, ValueError) as exc:
        raise AirflowFailException(f"invalid params: {exc}") from None


def _report(outcome: dict, failure: str | None, *, transient: bool = False) -> dict:
    """Publish the outcome (also when the task then fails), then fail the task if anything failed."""
    get_current_context()["ti"].xcom_push(key="outcome", value=outcome)
    if failure and transient:
        raise RuntimeError(failure)
    if failure:
        raise AirflowFailException(failure)
    return outcome


def _claim_events(run_id: str, run_params: RunParams, values: Mapping[str, str]) -> RunParams:
    """Claim the hook events before reading the other settings: a run that fails after this costs its events an
    attempt (back-off, then ``failed``) instead of leaving them due for the next run at once."""
    from imrt_sync import airflow_settings, pipeline
    from imrt_sync.migrate import require_current_schema

    engine = airflow_settings.imrt_engine(values)
    try:
        require_current_schema(engine)
        return pipeline.claim_events(engine, run_id, run_params)
    finally:
        engine.dispose()


def _run_start():
    """The run's start: a task that starts after the run was abandoned must not reopen its execution."""
    return get_current_context()["dag_run"].start_date


def _report_metrics(verdict: dict, engine) -> None:
    from imrt_sync import pipeline

    metrics.report_run(verdict, _run_start(), pendulum.now("UTC"))
    metrics.report_backlog(*pipeline.webhook_backlog(engine))


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dag(
    dag_id="item_synchronization",
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
    def list_ids(ti=None, params=None, run_id=None) -> list[dict]:
        """Plan the run; return the work units the ``sync`` task is mapped over."""
        from imrt_sync import pipeline
        from imrt_sync.airflow_settings import SettingsError
        from imrt_sync.batch import BatchMirror
        from imrt_sync.migrate import SchemaNotReady, require_current_schema

        run_params = _run_params(params)
        values = _variables()
        try:
            if run_params.webhook_events:  # the real-time path: recorded in imrt_webhook_event, not Spring Batch
                run_params = _claim_events(run_id, run_params, values)
            with _services(values) as services:
                require_current_schema(services.engine)
                if not run_params.webhook_events:
                    execution = BatchMirror(services.engine).mark_started(run_id, _run_start())
                    ti.xcom_push(key="jobExecutionId", value=execution.job_execution_id)
                    pipeline.log.info(LEGACY_START, execution.job_execution_id)
                planned = pipeline.list_ids(services, run_params)
        except Exception as exc:
            # summary names the cause in the exit message; a permanent refusal is not worth Airflow's retries
            ti.xcom_push(key="outcome", value={"error": pipeline.describe_listing_failure(exc)})
            if isinstance(exc, (pipeline.RunRefused, SettingsError, SchemaNotReady)):
                raise AirflowFailException(str(exc)) from None
            raise
        ti.xcom_push(key="plan", value=planned["plan"])
        return planned["units"]

    @task(map_index_template="{{ task.op_kwargs['unit']['label'] }}", multiple_outputs=False,
          execution_timeout=TIMEOUTS.sync, pool=GITLAB_POOL)
    def sync(unit: dict, params=None) -> None:
        from imrt_sync import pipeline

        with _services(_variables()) as services:
            outcome = pipeline.sync_unit(services, unit, _run_params(params))
        failed = outcome["failed"]
        failure = f"{len(failed)} of the unit's items failed: " + "; ".join(failed.values()) if failed else None
        _report(outcome, failure, transient=outcome["transient"])

    @task(trigger_rule="all_done", multiple_outputs=False, execution_timeout=TIMEOUTS.dispatch_webhooks,
          pool=GITLAB_POOL)
    def dispatch_webhooks(ti=None, params=None) -> None:
        from imrt_sync import pipeline

        plan = ti.xcom_pull(task_ids="list_ids", key="plan")
        if plan is None:
            raise AirflowFailException("list_ids did not produce a plan: nothing to do")
        with _services(_variables()) as services:
            outcome = pipeline.dispatch_webhooks(services, plan["missing_webhook"], _run_params(params))
        failed = outcome["failed"]
        _report(outcome, "; ".join(failed.values()) if failed else None, transient=outcome["transient"])

    @task(trigger_rule="all_done", multiple_outputs=False, execution_timeout=TIMEOUTS.summary, outlets=[ITEM_DATA])
    def summary(ti=None, params=None, run_id=None, outlet_events=None) -> dict:
        from imrt_sync import pipeline
        from imrt_sync.batch import BatchMirror

        plan = ti.xcom_pull(task_ids="list_ids", key="plan")
        units = ti.xcom_pull(task_ids="list_ids") or []
        unit_outcomes = _as_list(ti.xcom_pull(task_ids="sync", key="outcome"))
        hooks = ti.xcom_pull(task_ids="dispatch_webhooks", key="outcome")
        listing = ti.xcom_pull(task_ids="list_ids", key="outcome") or {}
        verdict = pipeline.summarize(plan, unit_outcomes, hooks, units, listing_error=listing.get("error"))
        run_params = _run_params(params)
        outlet_events[ITEM_DATA].extra = {
            "run_id": run_id, "dry_run": run_params.dry_run, "synced": verdict["synced_count"],
            "deleted": verdict["deleted_count"], "failed": verdict["failed_count"],
        }  # emitted only when summary succeeds, i.e. the run completed
        with _services(_variables()) as services:
            if run_params.webhook_events:
                pipeline.close_events(
                    services, run_id, plan, unit_outcomes, hooks, units, listing_error=listing.get("error")
                )
                pipeline.log.info("hook events run ended %s: %s", verdict["status"], verdict["message"])
                _report_metrics(verdict, services.engine)
                return _report(verdict, verdict["message"] if verdict["status"] != "COMPLETED" else None)
            mirror = BatchMirror(services.engine)
            if mirror.execution_for_run(run_id) is None:  # list_ids failed before recording the start
                mirror.mark_started(run_id, _run_start())
            execution = mirror.record_outcome(
                run_id, verdict["message"], read_count=verdict["read_count"],
                write_count=verdict["write_count"], skip_count=verdict["skip_count"],
            )
            _report_metrics(verdict, services.engine)
        pipeline.log.info(LEGACY_COMPLETE, execution.job_execution_id, verdict["status"], verdict["message"])
        return _report(verdict, verdict["message"] if verdict["status"] != "COMPLETED" else None)

    planned = list_ids()
    synced = sync.expand(unit=planned)
    hooks = dispatch_webhooks()
    synced >> hooks >> summary()


item_synchronization()
