"""The few Airflow internals the compatibility layer needs, in one adapter (Airflow 3.3.x; pinned by tests).

They run inside the API server or the scheduler, which own the metadata database session.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow.api.common.trigger_dag import trigger_dag
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.state import DagRunState, TaskInstanceState
from airflow.utils.types import DagRunTriggeredByType
from sqlalchemy import select
from sqlalchemy.orm import Session

from imrt_sync.errors import PermanentError

ACTIVE_STATES = (DagRunState.QUEUED, DagRunState.RUNNING)
# A task in one of these states (or with no state yet) has not ended this try, or will run again.
NOT_FINISHED_STATES = (
    TaskInstanceState.SCHEDULED,
    TaskInstanceState.QUEUED,
    TaskInstanceState.RUNNING,
    TaskInstanceState.UP_FOR_RETRY,
)


def task_not_finished(dag_id: str, run_id: str, task_id: str, session: Session) -> bool:
    """Whether the (unmapped) task of the run has yet to begin or end, or will begin again."""
    state = session.scalar(
        select(TaskInstance.state).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == task_id,
            TaskInstance.map_index == -1,
        )
    )
    return state is None or state in NOT_FINISHED_STATES


class DagUnavailable(PermanentError):
    """Airflow will not start a run of the DAG (unknown or paused) until someone acts: answered ``status_code``."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class ActiveRun:
    run_id: str
    state: str


def check_triggerable(dag_id: str, session: Session) -> None:
    """Raise DagUnavailable when a run would not start: unknown DAG, import errors gone stale, or paused."""
    dag = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
    if dag is None or dag.is_stale:
        raise DagUnavailable(404, f"DAG {dag_id} is not known to Airflow (not parsed yet, or removed)")
    if dag.is_paused:
        raise DagUnavailable(
            409,
            f"DAG {dag_id} is paused: a run would stay queued. Unpause it in the Airflow UI or with "
            f'PATCH /api/v2/dags/{dag_id} {{"is_paused": false}}',
        )


def active_runs(dag_id: str, session: Session) -> list[ActiveRun]:
    rows = session.execute(
        select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == dag_id, DagRun.state.in_(ACTIVE_STATES))
    ).all()
    return [ActiveRun(run_id, str(state)) for run_id, state in rows]


def trigger(dag_id: str, run_id: str, conf: dict, user_name: str | None, session: Session, note: str) -> str:
    dag_run = trigger_dag(
        dag_id,
        triggered_by=DagRunTriggeredByType.REST_API,
        run_id=run_id,
        conf=conf,
        triggering_user_name=user_name,
        note=note,
        session=session,
    )
    if dag_run is None:  # typed Optional; Airflow 3.3's trigger_dag returns the run it created or raises
        raise RuntimeError(f"Airflow created no run {run_id} of DAG {dag_id}")
    session.commit()
    return dag_run.run_id


def run_states(dag_id: str, run_ids: list[str], session: Session) -> dict[str, str]:
    rows = session.execute(
        select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids))
    ).all()
    return {run_id: str(state) for run_id, state in rows}


def fail_run(dag_id: str, run_id: str, session: Session) -> bool:
    """Mark a run failed as the UI does (its running tasks end); False when it had already ended."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag, get_dag_for_run
    from airflow.api_fastapi.core_api.datamodels.dag_run import DagRunMutableStates
    from airflow.api_fastapi.core_api.services.public.dag_run import patch_dag_run_state

    dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if dag_run is None or dag_run.state not in ACTIVE_STATES:
        return False
    dag = get_dag_for_run(create_dag_bag(), dag_run, session=session)
    patch_dag_run_state(dag=dag, dag_run=dag_run, state=DagRunMutableStates.FAILED, session=session)
    session.commit()
    return True
