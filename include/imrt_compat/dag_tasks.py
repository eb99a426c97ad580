"""The Airflow side of the ``item_synchronization`` tasks, around the run protocol of :mod:`imrt_sync.pipeline`:
the run's context, the services built from this task's settings snapshot, and reporting through XCom.

A task reads each ``imrt_*`` variable at most once (:func:`imrt_compat.settings.read_variables`) and fails at once,
without Airflow's retries, when retrying cannot help (bad params or settings, a refused run, an old schema).
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
from imrt_sync.migrate import SchemaNotReady

from . import settings
from .engine import task_engine

PERMANENT_FAILURES = (pipeline.RunRefused, settings.SettingsError, SchemaNotReady)


def run_context(params: Mapping[str, Any], run_id: str) -> RunContext:
    """The run this task belongs to; its start is the run's (a task that starts after the run was abandoned must not
    reopen its Spring Batch execution)."""
    try:
        run_params = RunParams.from_mapping(dict(params))
    except (TypeError, ValueError) as exc:
        raise AirflowFailException(f"invalid params: {exc}") from None
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
    with task_database(values) as engine, pipeline.Services.open(*settings_reader(values)(), engine) as services:
        yield services


def listing_failed(exc: Exception) -> NoReturn:
    """Publish why planning failed (the summary puts it in the exit message), then fail the task: at once when
    trying again cannot help."""
    get_current_context()["ti"].xcom_push(key="outcome", value={"error": pipeline.describe_listing_failure(exc)})
    if isinstance(exc, PERMANENT_FAILURES):
        raise AirflowFailException(str(exc)) from None
    raise exc


def report(outcome: Mapping[str, Any], failure: str | None, *, transient: bool = False) -> None:
    """Publish the outcome (also when the task then fails), then fail the task if anything failed."""
    get_current_context()["ti"].xcom_push(key="outcome", value=outcome)
    if failure and transient:
        raise RuntimeError(failure)
    if failure:
        raise AirflowFailException(failure)


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
