"""The ``item_synchronization`` DAG: keeps the IMRT database in step with the GitLab item bank.

A thin shell over ``imrt_sync.pipeline``: every task reads its settings when it runs (DAG parsing does no I/O),
calls one pipeline function and reports through XCom.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
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

LEGACY_START = "Item Synchronization Process starting.  Job execution id: %s"
LEGACY_COMPLETE = "Item Synchronization Process complete.  Job execution id: %s, exit status code: %s, exit message: %s"


@contextmanager
def _services():
    from imrt_sync import airflow_settings
    from imrt_sync.gitlab import GitLabClient
    from imrt_sync.gitrepo import GitAccess
    from imrt_sync.pipeline import Services

    settings = airflow_settings.sync_settings()
    gitlab_settings = airflow_settings.gitlab_settings()
    engine = airflow_settings.imrt_engine()
    with GitLabClient(gitlab_settings) as gitlab:
        try:
            access = GitAccess(gitlab_settings.token, settings.git_timeout, origin=gitlab_settings.base_url)
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


def _claim_events(run_id: str, run_params: RunParams) -> RunParams:
    """Claim the hook events before reading the other settings: a run that fails after this costs its events an
    attempt (back-off, then ``failed``) instead of leaving them due for the next run at once."""
    from imrt_sync import airflow_settings, pipeline
    from imrt_sync.migrate import require_current_schema

    engine = airflow_settings.imrt_engine()
    try:
        require_current_schema(engine)
        return pipeline.claim_events(engine, run_id, run_params)
    finally:
        engine.dispose()


def _run_start():
    """The run's start: a task that starts after the run was abandoned must not reopen its execution."""
    return get_current_context()["dag_run"].start_date


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
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
)
def item_synchronization():
    @task(multiple_outputs=False)
    def list_ids(ti=None, params=None, run_id=None) -> list[dict]:
        """Plan the run; return the work units the ``sync`` task is mapped over."""
        from imrt_sync import pipeline
        from imrt_sync.airflow_settings import SettingsError
        from imrt_sync.batch import BatchMirror
        from imrt_sync.migrate import require_current_schema

        run_params = _run_params(params)
        try:
            if run_params.webhook_events:  # the real-time path: recorded in imrt_webhook_event, not Spring Batch
                run_params = _claim_events(run_id, run_params)
            with _services() as services:
                require_current_schema(services.engine)
                if not run_params.webhook_events:
                    execution = BatchMirror(services.engine).mark_started(run_id, _run_start())
                    ti.xcom_push(key="jobExecutionId", value=execution.job_execution_id)
                    pipeline.log.info(LEGACY_START, execution.job_execution_id)
                planned = pipeline.list_ids(services, run_params)
        except Exception as exc:
            # summary names the cause in the exit message; a permanent refusal is not worth Airflow's retries
            ti.xcom_push(key="outcome", value={"error": pipeline.describe_listing_failure(exc)})
            if isinstance(exc, (pipeline.RunRefused, SettingsError)):
                raise AirflowFailException(str(exc)) from None
            raise
        ti.xcom_push(key="plan", value=planned["plan"])
        return planned["units"]

    @task(map_index_template="{{ task.op_kwargs['unit']['label'] }}", multiple_outputs=False)
    def sync(unit: dict, params=None) -> None:
        from imrt_sync import pipeline

        with _services() as services:
            outcome = pipeline.sync_unit(services, unit, _run_params(params))
        failed = outcome["failed"]
        failure = f"{len(failed)} of the unit's items failed: " + "; ".join(failed.values()) if failed else None
        _report(outcome, failure, transient=outcome["transient"])

    @task(trigger_rule="all_done", multiple_outputs=False)
    def dispatch_webhooks(ti=None, params=None) -> None:
        from imrt_sync import pipeline

        plan = ti.xcom_pull(task_ids="list_ids", key="plan")
        if plan is None:
            raise AirflowFailException("list_ids did not produce a plan: nothing to do")
        with _services() as services:
            outcome = pipeline.dispatch_webhooks(services, plan["missing_webhook"], _run_params(params))
        failed = outcome["failed"]
        _report(outcome, "; ".join(failed.values()) if failed else None, transient=outcome["transient"])

    @task(trigger_rule="all_done", multiple_outputs=False)
    def summary(ti=None, params=None, run_id=None) -> dict:
        from imrt_sync import pipeline
        from imrt_sync.batch import BatchMirror

        plan = ti.xcom_pull(task_ids="list_ids", key="plan")
        units = ti.xcom_pull(task_ids="list_ids") or []
        unit_outcomes = _as_list(ti.xcom_pull(task_ids="sync", key="outcome"))
        hooks = ti.xcom_pull(task_ids="dispatch_webhooks", key="outcome")
        listing = ti.xcom_pull(task_ids="list_ids", key="outcome") or {}
        verdict = pipeline.summarize(plan, unit_outcomes, hooks, units, listing_error=listing.get("error"))
        with _services() as services:
            if _run_params(params).webhook_events:
                pipeline.close_events(
                    services, run_id, plan, unit_outcomes, hooks, units, listing_error=listing.get("error")
                )
                pipeline.log.info("hook events run ended %s: %s", verdict["status"], verdict["message"])
                return _report(verdict, verdict["message"] if verdict["status"] != "COMPLETED" else None)
            mirror = BatchMirror(services.engine)
            if mirror.execution_for_run(run_id) is None:  # list_ids failed before recording the start
                mirror.mark_started(run_id, _run_start())
            execution = mirror.record_outcome(
                run_id, verdict["message"], read_count=verdict["read_count"],
                write_count=verdict["write_count"], skip_count=verdict["skip_count"],
            )
        pipeline.log.info(LEGACY_COMPLETE, execution.job_execution_id, verdict["status"], verdict["message"])
        return _report(verdict, verdict["message"] if verdict["status"] != "COMPLETED" else None)

    planned = list_ids()
    synced = sync.expand(unit=planned)
    hooks = dispatch_webhooks()
    synced >> hooks >> summary()


item_synchronization()
