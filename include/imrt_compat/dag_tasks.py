"""The Airflow side of the ``item_synchronization`` tasks, around the run protocol of :mod:`imrt_sync.pipeline`:
what a task works with (:func:`task_run`: its run, the imrt engine, its settings and services) and what it reports,
through the XComs of :mod:`imrt_compat.task_contract`.

A task reads each ``imrt_*`` variable at most once (:func:`imrt_compat.settings.read_variables`). It fails through
:func:`fail_task`: at once, without Airflow's retries, when retrying cannot help (bad params or settings, a refused
run, an old schema, lost access: :func:`imrt_sync.errors.is_transient` decides), else for Airflow to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NoReturn, TypeVar

import sqlalchemy as sa
from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from imrt_sync import EVENTS_DAG_ID, pipeline
from imrt_sync.config import RunParams
from imrt_sync.contracts import (
    ListingFailure,
    Planned,
    PlanView,
    RunContext,
    RunResults,
    UnitOutcome,
    Verdict,
    WebhooksOutcome,
    WorkUnit,
)
from imrt_sync.errors import is_transient

from . import metrics, settings
from .engine import task_engine
from .task_contract import (
    HOOKS_OUTCOME,
    JOB_EXECUTION_ID,
    LISTING_FAILURE,
    PLAN,
    UNIT_OUTCOME,
    VERDICT,
    XComSlot,
)

T = TypeVar("T")


@dataclass
class TaskRun:
    """What a task's body works with: the run it belongs to, the imrt engine, its settings (from the task's one
    snapshot of the variables) and, opened when first asked for, the services over them."""

    run: RunContext
    engine: sa.Engine
    read_settings: pipeline.SettingsReader
    _resources: ExitStack = field(repr=False)

    @property
    def params(self) -> RunParams:
        return self.run.params

    @cached_property
    def services(self) -> pipeline.Services:
        return self._resources.enter_context(pipeline.Services.open(*self.read_settings(), self.engine))


def step_failed(exc: Exception) -> NoReturn:
    """Fail the task for an error of its step, as :func:`~imrt_sync.errors.is_transient` decides."""
    fail_task(exc, transient=is_transient(exc))


@contextmanager
def task_run(*, failed: Callable[[Exception], NoReturn] = step_failed) -> Iterator[TaskRun]:
    """This task's run (:func:`current_run`), engine, settings and services, all closed when the block ends. An error
    raised in the block (or while the engine or the services open) ends the task through ``failed``."""
    run = current_run()
    values = settings.read_variables()
    try:
        with task_database(values) as engine, ExitStack() as resources:
            yield TaskRun(run, engine, settings_reader(values), resources)
    except Exception as exc:
        failed(exc)


def current_run() -> RunContext:
    """The run this task belongs to: its id, its params (invalid ones fail the task at once) and its start (a task
    that starts after the run was abandoned must not reopen its Spring Batch execution)."""
    context = get_current_context()
    try:
        run_params = run_params_of(context["dag_run"].dag_id, dict(context["params"]))
    except (TypeError, ValueError) as exc:
        fail_task(f"invalid params: {exc}", transient=False)
    return RunContext(context["run_id"], run_params, context["dag_run"].start_date)


def run_params_of(dag_id: str, params: dict[str, Any]) -> RunParams:
    """A run of the hook events DAG syncs the pending events' items, whatever its conf says; a run of the sync DAG
    does what its params ask."""
    if dag_id == EVENTS_DAG_ID:
        return RunParams(webhook_events=True)
    return RunParams.from_mapping(params)


@contextmanager
def task_database(values: Mapping[str, str]) -> Iterator[sa.Engine]:
    engine = task_engine(values)
    try:
        yield engine
    finally:
        engine.dispose()


def settings_reader(values: Mapping[str, str]) -> pipeline.SettingsReader:
    return lambda: (settings.sync_settings(values), settings.gitlab_settings(values))


def fail_task(failure: Exception | str, *, transient: bool) -> NoReturn:
    """Fail the task. Transient: for Airflow's retries (an exception as it is, a message as a RuntimeError);
    permanent: at once, as AirflowFailException, which Airflow does not retry."""
    if not transient:
        raise AirflowFailException(str(failure)) from None
    if isinstance(failure, Exception):
        raise failure
    raise RuntimeError(failure)


def current_ti() -> Any:
    return get_current_context()["ti"]


def listing_failed(exc: Exception) -> NoReturn:
    """``list_ids`` could not plan: publish why (the summary puts it in the exit message), then fail the task as
    :func:`step_failed` does."""
    failure: ListingFailure = {"error": pipeline.describe_listing_failure(exc)}
    LISTING_FAILURE.push(current_ti(), failure)
    step_failed(exc)


def report_planned(planned: Planned) -> list[WorkUnit]:
    """``list_ids``' end: publish the plan and the run's Spring Batch execution; the work units, to return."""
    ti = current_ti()
    PLAN.push(ti, planned["plan"])
    if planned["job_execution_id"] is not None:
        JOB_EXECUTION_ID.push(ti, planned["job_execution_id"])
    return planned["units"]


def required_plan(plan: PlanView | None) -> PlanView:
    """The plan ``dispatch_webhooks`` works from; without one (``list_ids`` failed) the task fails at once."""
    if plan is None:
        fail_task("list_ids did not produce a plan: nothing to do", transient=False)
    return plan


def report(slot: XComSlot[T], outcome: T, failure: str | None, *, transient: bool = False) -> None:
    """Publish the outcome (also when the task then fails), then fail the task if anything failed."""
    slot.push(current_ti(), outcome)
    if failure:
        fail_task(failure, transient=transient)


def report_unit(outcome: UnitOutcome) -> None:
    """A ``sync`` instance's end: it fails if an item failed, retried by Airflow when some failure may pass."""
    report(UNIT_OUTCOME, outcome, unit_failure(outcome), transient=outcome["transient"])


def report_webhooks(outcome: WebhooksOutcome) -> None:
    """``dispatch_webhooks``' end: it fails if a hook could not be fixed, retried by Airflow when some failure may
    pass."""
    report(HOOKS_OUTCOME, outcome, webhooks_failure(outcome), transient=outcome["transient"])


def report_verdict(verdict: Verdict) -> None:
    """``summary``'s end: the verdict, which the failure alert reads; the task (so the run) fails with the exit
    message unless the run completed."""
    report(VERDICT, verdict, verdict["message"] if verdict["status"] != "COMPLETED" else None)


def unit_failure(outcome: UnitOutcome) -> str | None:
    failed = outcome["failed"]
    return f"{len(failed)} of the unit's items failed: " + "; ".join(failed.values()) if failed else None


def webhooks_failure(outcome: WebhooksOutcome) -> str | None:
    return "; ".join(outcome["failed"].values()) or None


def run_results(
    plan: PlanView | None,
    units: list[WorkUnit] | None,
    listing_failure: ListingFailure | None,
    unit_outcomes: Sequence[UnitOutcome] | None,
    hooks: WebhooksOutcome | None,
) -> RunResults:
    """What ``summary`` judges, from what the other tasks published: None (no units, no outcomes) where a task
    published nothing. ``unit_outcomes`` is Airflow's lazy sequence of the ``sync`` instances' outcomes: read in one
    request."""
    return RunResults(
        plan=plan,
        units=units or [],
        unit_outcomes=list(unit_outcomes[:]) if unit_outcomes is not None else [],
        hooks=hooks,
        listing_error=listing_failure["error"] if listing_failure else None,
    )


def report_metrics(task: TaskRun, verdict: Verdict) -> None:
    """The run's counts and duration, and the hook events still waiting (:mod:`imrt_compat.metrics`)."""
    metrics.report_run(verdict, task.run.started_at, datetime.now(UTC))
    metrics.report_backlog(*pipeline.webhook_backlog(task.engine))


def item_data_extra(run: RunContext, verdict: Verdict) -> dict[str, Any]:
    """The ``extra`` of the ``imrt_item_data`` asset event a completed run emits."""
    return {
        "run_id": run.run_id,
        "dry_run": run.params.dry_run,
        "synced": verdict["synced_count"],
        "deleted": verdict["deleted_count"],
        "failed": verdict["failed_count"],
    }
