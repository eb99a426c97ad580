"""The DAG's guardrails: run and task timeouts and the pool that bounds GitLab-heavy tasks.

Read from Airflow's configuration (``[imrt]`` in airflow.cfg or ``AIRFLOW__IMRT__*``, through
:mod:`imrt_compat.settings`) when the DAG file is parsed: configuration is local to the process, so parsing still
does no network or database I/O (Airflow variables would). Set the same values on the dag-processor and the
workers, like every other Airflow setting. The defaults, sized from the measurements for 20,000 items, are
``imrt_sync.config.ImrtOptions``'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from airflow.listeners import hookimpl

from . import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timeouts:
    run: timedelta
    list_ids: timedelta
    sync: timedelta
    dispatch_webhooks: timedelta
    summary: timedelta


def timeouts() -> Timeouts:
    return Timeouts(
        run=settings.task_timeout("dagrun_timeout_minutes"),
        list_ids=settings.task_timeout("list_ids_timeout_minutes"),
        sync=settings.task_timeout("sync_timeout_minutes"),
        dispatch_webhooks=settings.task_timeout("dispatch_webhooks_timeout_minutes"),
        summary=settings.task_timeout("summary_timeout_minutes"),
    )


def gitlab_pool() -> str:
    """The pool of the tasks that call GitLab (``list_ids``, ``sync``, ``dispatch_webhooks``)."""
    return settings.gitlab_pool()


def gitlab_pool_slots() -> int:
    return settings.gitlab_pool_slots()


def ensure_gitlab_pool() -> bool:
    """Create the GitLab pool if it does not exist (True when created). An existing pool is left as it is, so
    slots an operator set (``airflow pools set``, the UI) survive restarts."""
    import sqlalchemy as sa
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    name = gitlab_pool()
    try:
        with create_session() as session:
            if session.scalar(sa.select(Pool.id).where(Pool.pool == name)) is not None:
                return False
            session.add(
                Pool(
                    pool=name,
                    slots=gitlab_pool_slots(),
                    include_deferred=False,
                    description="IMRT item_synchronization: tasks that call GitLab",
                )
            )
        log.info("created the pool %s with %s slots", name, gitlab_pool_slots())
        return True
    except sa.exc.IntegrityError:  # another component created it at the same moment
        return False


@hookimpl
def on_starting(component) -> None:
    """Airflow jobs (scheduler, dag-processor, triggerer) call this when they start: the scheduler never queues a
    task whose pool does not exist, so the pool is created before it schedules anything."""
    from airflow.jobs.job import Job

    if not isinstance(component, Job):
        return
    try:
        ensure_gitlab_pool()
    except Exception:
        log.warning("could not create the pool %s; create it with `airflow pools set`", gitlab_pool(), exc_info=True)
