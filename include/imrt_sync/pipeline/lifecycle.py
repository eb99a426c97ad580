"""The run's start and end: :func:`open_run` and :func:`close_run` (docs/how-a-run-works.md).

A run of the GitLab hook events claims its events when it starts and closes them when it ends
(:class:`~imrt_sync.webhook_events.EventLog`); any other run is recorded in the Spring Batch mirror
(:class:`~imrt_sync.spring_batch.SpringBatchMirror`), with the legacy start and completion log lines. Between the two,
``open_run`` plans through :func:`~imrt_sync.pipeline.listing.list_ids` and ``close_run`` judges through
:func:`~imrt_sync.pipeline.verdict.summarize`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import sqlalchemy as sa

from ..config import GitLabSettings, RunParams, SyncSettings
from ..contracts import Planned, RunContext, RunResults, Verdict
from ..schema_migrations import require_current_schema
from ..spring_batch import SpringBatchMirror
from ..webhook_events import EventLog
from .listing import list_ids
from .services import Services
from .verdict import failed_items, summarize

log = logging.getLogger(__name__)

LEGACY_START = "Item Synchronization Process starting.  Job execution id: %s"
LEGACY_COMPLETE = "Item Synchronization Process complete.  Job execution id: %s, exit status code: %s, exit message: %s"

SettingsReader = Callable[[], tuple[SyncSettings, GitLabSettings]]


def open_run(run: RunContext, engine: sa.Engine, read_settings: SettingsReader) -> Planned:
    """Start the run and plan it.

    The schema is checked first. A run of the hook events then takes its due events (from here on, whatever fails
    costs them an attempt, so a broken setting backs off instead of starting run after run); any other run is
    recorded ``STARTED`` in the Spring Batch mirror. Only then are the settings read (``read_settings``) and the item
    bank listed and compared with IMRT.
    """
    require_current_schema(engine)
    params, job_execution_id = run.params, None
    if params.webhook_events:
        params = claim_events(engine, run.run_id, params)
    else:
        job_execution_id = SpringBatchMirror(engine).mark_started(run.run_id, run.started_at).job_execution_id
        log.info(LEGACY_START, job_execution_id)
    with Services.open(*read_settings(), engine) as services:
        plan, units = list_ids(services, params)
    return {"plan": plan, "units": units, "job_execution_id": job_execution_id}


def close_run(services: Services, run: RunContext, results: RunResults) -> Verdict:
    """Judge the run and record its end: a run of the hook events closes its events (a failed item costs its event
    an attempt); any other run writes its exit message and counts to its Spring Batch execution (the status and
    ``end_time`` follow when the run itself ends)."""
    verdict = summarize(results)
    if run.params.webhook_events:
        close_events(services, run.run_id, results)
        log.info("hook events run ended %s: %s", verdict["status"], verdict["message"])
        return verdict
    mirror = SpringBatchMirror(services.engine)
    if mirror.execution_for_run(run.run_id) is None:  # the run failed before open_run recorded its start
        mirror.mark_started(run.run_id, run.started_at)
    execution = mirror.record_outcome(
        run.run_id,
        verdict["message"],
        read_count=verdict["read_count"],
        write_count=verdict["write_count"],
        skip_count=verdict["skip_count"],
    )
    log.info(LEGACY_COMPLETE, execution.job_execution_id, verdict["status"], verdict["message"])
    return verdict


def claim_events(engine: sa.Engine, run_id: str, params: RunParams) -> RunParams:
    """A run started by the hook receiver takes the due pending events: its items are the events' projects.

    Call it first in the run: from then on, whatever fails costs the events an attempt (and a back-off)."""
    claimed = EventLog(engine).claim(run_id)
    project_ids = tuple(sorted({event.project_id for event in claimed}))
    log.info("took %d GitLab hook events for %d items: %s", len(claimed), len(project_ids), list(project_ids))
    return replace(params, item_ids=project_ids)


def close_events(services: Services, run_id: str, results: RunResults) -> None:
    """Record how the run's events ended. A failed item, or a run that could not plan, costs its events an attempt:
    they wait for a later run with a growing delay, or end ``failed`` after the last allowed attempt
    (``results.listing_error``: why the run could not plan, kept as the events' error)."""
    if results.plan is None:
        _release_events(services, run_id, results.listing_error)
        return
    policy = services.settings.event_retry
    failed = failed_items(results)
    ended = EventLog(services.engine).close(run_id, failed, policy)
    log.info(
        "hook events: %d synced, %d to retry later, %d failed after %d attempts (%d items failed)",
        ended.synced,
        ended.retrying,
        ended.failed,
        policy.max_attempts,
        len(failed),
    )


def _release_events(services: Services, run_id: str, listing_error: str | None) -> None:
    """The run could not plan: each of its events failed an attempt, with why (``listing_error``) as its error."""
    policy = services.settings.event_retry
    cause = listing_error or "see its list_ids task log"
    ended = EventLog(services.engine).release([run_id], f"run {run_id} could not plan: {cause}", policy)
    log.warning(
        "listing failed: %d hook events will be retried later, %d failed after %d attempts",
        ended.retrying,
        ended.failed,
        policy.max_attempts,
    )
