"""The DAG's guardrails: run and task timeouts and the pool that bounds GitLab-heavy tasks.

Read from Airflow's configuration (``[imrt]`` in airflow.cfg or ``AIRFLOW__IMRT__*``) when the DAG file is parsed:
configuration is local to the process, so parsing still does no network or database I/O (Airflow variables would).
Set the same values on the dag-processor and the workers, like every other Airflow setting.

Defaults are sized from the measurements for 20,000 items (docs/performance.md): the first full sync took 16 min
under the scheduler, its planning a few minutes; each value leaves a wide margin for a slower GitLab.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

SECTION = "imrt"
DEFAULT_GITLAB_POOL = "imrt_gitlab"
DEFAULT_GITLAB_POOL_SLOTS = 8
DEFAULT_TIMEOUT_MINUTES = {
    "dagrun_timeout_minutes": 180,  # 20,000 items: 16 min measured for a first full sync
    "list_ids_timeout_minutes": 45,  # 20,000 items: about 2 min of planning measured (125 s incremental)
    "sync_timeout_minutes": 30,  # one mapped unit: at most ceil(20,000 / imrt_map_bound) items, about 1 s each
    "dispatch_webhooks_timeout_minutes": 60,  # a first sync creates one hook per item: 20,000 calls
    "summary_timeout_minutes": 15,  # reads every unit's outcome: 21 s measured for 1,500 outcomes
}


@dataclass(frozen=True)
class Timeouts:
    run: timedelta
    list_ids: timedelta
    sync: timedelta
    dispatch_webhooks: timedelta
    summary: timedelta


def _conf():
    from airflow.configuration import conf

    return conf


def _minutes(name: str) -> timedelta:
    minutes = _conf().getint(SECTION, name, fallback=DEFAULT_TIMEOUT_MINUTES[name])
    if minutes <= 0:
        raise ValueError(f"[{SECTION}] {name} must be a positive number of minutes, not {minutes}")
    return timedelta(minutes=minutes)


def timeouts() -> Timeouts:
    return Timeouts(
        run=_minutes("dagrun_timeout_minutes"),
        list_ids=_minutes("list_ids_timeout_minutes"),
        sync=_minutes("sync_timeout_minutes"),
        dispatch_webhooks=_minutes("dispatch_webhooks_timeout_minutes"),
        summary=_minutes("summary_timeout_minutes"),
    )


def gitlab_pool() -> str:
    """The pool of the tasks that call GitLab (``list_ids``, ``sync``, ``dispatch_webhooks``)."""
    return _conf().get(SECTION, "gitlab_pool", fallback=DEFAULT_GITLAB_POOL)


def gitlab_pool_slots() -> int:
    return _conf().getint(SECTION, "gitlab_pool_slots", fallback=DEFAULT_GITLAB_POOL_SLOTS)


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
            session.add(Pool(pool=name, slots=gitlab_pool_slots(), include_deferred=False,
                             description="IMRT item_synchronization: tasks that call GitLab"))
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
    except Exception:  # noqa: BLE001 - a listener must never stop its host from starting
        log.warning("could not create the pool %s; create it with `airflow pools set`", gitlab_pool(), exc_info=True)
