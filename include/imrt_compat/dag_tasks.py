"""The Airflow side of the ``item_synchronization`` tasks, around the run protocol of :mod:`imrt_sync.pipeline`:
the run's context, the services built from this task's settings snapshot, and reporting through XCom.

A task reads each ``imrt_*`` variable at most once (:func:`imrt_compat.settings.read_variables`). It fails through
:func:`fail_task`: at once, without Airflow's retries, when retrying cannot help (bad params or settings, a refused
run, an old schema, lost access: :func:`imrt_sync.errors.is_transient` decides), else for Airflow to retry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import sqlalchemy as sa
from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from imrt_sync import pipeline
from imrt_sync.config import RunParams
from imrt_sync.contracts import HooksOutcome, RunContext, RunResults, UnitOutcome
from imrt_sync.errors import is_transient

from . import settings
from .engine import task_engine


def run_context(params: Mapping[str, Any], run_id: str) -> RunContext:
    """The run this task belongs to; its start is the run's (a task that starts after the run was abandoned must not
    reopen its Spring Batch execution)."""
    try:
        run_params = RunParams.from_mapping(dict(params))
    except (TypeError, ValueError) as exc:
        fail_task(f"invalid params: {exc}", transient=False)
    return RunContext(run_id, run_params, get_current_context()["dag_run"].start_date)


@contextmanager
def task_database(values: Mapping[str, str]) -> Iterator[sa.Engine]:
    engine = task_engine(values)
    try:
        yield engine
    finally:
        engine.dispose()


def settings_reader(values: Mapping[str, str]) -> pipeline.SettingsReader:
    return lambda: (settings.sync_settings(values), settings.gitlab_settings(values))


@contextmanager
def task_services(values: Mapping[str, str]) -> Iterator[pipeline.Services]:
    """The services of one task; an error raised while they are open fails the task through :func:`fail_task`."""
    with (
        permanent_errors_fail_fast(),
        task_database(values) as engine,
        pipeline.Services.open(*settings_reader(values)(), engine) as services,
    ):
        yield services


def fail_task(failure: Exception | str, *, transient: bool) -> NoReturn:
    """Fail the task. Transient: for Airflow's retries (an exception as it is, a message as a RuntimeError);
    permanent: at once, as AirflowFailException, which Airflow does not retry."""
    if not transient:
        raise AirflowFailException(str(failure)) from None
    if isinstance(failure, Exception):
        raise failure
    raise RuntimeError(failure)


@contextmanager
def permanent_errors_fail_fast() -> Iterator[None]:
    """Around a task's work: an error escaping it fails the task through :func:`fail_task`, as
    :func:`~imrt_sync.errors.is_transient` decides."""
    try:
        yield
    except Exception as exc:
        fail_task(exc, transient=is_transient(exc))


def listing_failed(exc: Exception) -> NoReturn:
    """Publish why planning failed (the summary puts it in the exit message), then fail the task: at once when
    trying again cannot help."""
    get_current_context()["ti"].xcom_push(key="outcome", value={"error": pipeline.describe_listing_failure(exc)})
    fail_task(exc, transient=is_transient(exc))


def report(outcome: Mapping[str, Any], failure: str | None, *, transient: bool = False) -> None:
    """Publish the outcome (also when the task then fails), then fail the task if anything failed."""
    get_current_context()["ti"].xcom_push(key="outcome", value=outcome)
    if failure:
        fail_task(failure, transient=transient)


def report_unit(outcome: UnitOutcome) -> None:
    """A ``sync`` instance's end: it fails if an item failed, retried by Airflow when some failure may pass."""
    report(outcome, unit_failure(outcome), transient=outcome["transient"])


def report_hooks(outcome: HooksOutcome) -> None:
    """``dispatch_webhooks``' end: it fails if a hook could not be fixed, retried by Airflow when some failure may
    pass."""
    report(outcome, hooks_failure(outcome), transient=outcome["transient"])


def unit_failure(outcome: UnitOutcome) -> str | None:
    failed = outcome["failed"]
    return f"{len(failed)} of the unit's items failed: " + "; ".join(failed.values()) if failed else None


def hooks_failure(outcome: HooksOutcome) -> str | None:
    return "; ".join(outcome["failed"].values()) or None


def pull_results(ti) -> RunResults:
    """What the run's tasks published, for ``summary`` (which runs whatever failed before it: a missing value is
    a task that did not report)."""
    listing = ti.xcom_pull(task_ids="list_ids", key="outcome") or {}
    unit_outcomes = ti.xcom_pull(task_ids="sync", key="outcome")
    if not isinstance(unit_outcomes, list):
        unit_outcomes = [] if unit_outcomes is None else [unit_outcomes]
    return RunResults(
        plan=ti.xcom_pull(task_ids="list_ids", key="plan"),
        units=ti.xcom_pull(task_ids="list_ids") or [],
        unit_outcomes=unit_outcomes,
        hooks=ti.xcom_pull(task_ids="dispatch_webhooks", key="outcome"),
        listing_error=listing.get("error"),
    )
