"""The run's metrics through Airflow's metrics (StatsD or OpenTelemetry, as ``[metrics]`` configures the process).

Names (StatsD adds ``[metrics] statsd_prefix``, ``airflow.`` by default):

* ``imrt.items.synced`` / ``imrt.items.failed`` / ``imrt.items.deleted``: counters, incremented by each run's numbers
* ``imrt.run.duration``: timer, the run's start to the end of its ``summary`` (milliseconds in StatsD)
* ``imrt.webhook_backlog.pending``: gauge, hook events waiting for a run after this run
* ``imrt.webhook_backlog.oldest_age_seconds``: gauge, how long the oldest of them has waited (0 when none)
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imrt_sync.contracts import Verdict

ITEMS_SYNCED = "imrt.items.synced"
ITEMS_FAILED = "imrt.items.failed"
ITEMS_DELETED = "imrt.items.deleted"
RUN_DURATION = "imrt.run.duration"
BACKLOG_PENDING = "imrt.webhook_backlog.pending"
BACKLOG_OLDEST_AGE = "imrt.webhook_backlog.oldest_age_seconds"


def report_run(verdict: Verdict, started_at: datetime | None, ended_at: datetime) -> None:
    from airflow.sdk.observability import stats

    stats.incr(ITEMS_SYNCED, count=verdict["synced_count"])
    stats.incr(ITEMS_FAILED, count=verdict["failed_count"])
    stats.incr(ITEMS_DELETED, count=verdict["deleted_count"])
    if started_at is not None:
        stats.timing(RUN_DURATION, ended_at - started_at)


def report_backlog(pending: int, oldest_age_seconds: float) -> None:
    from airflow.sdk.observability import stats

    stats.gauge(BACKLOG_PENDING, pending)
    stats.gauge(BACKLOG_OLDEST_AGE, oldest_age_seconds)
