"""Mirror every run of the DAG into the Spring Batch tables, whatever started it (schedule, UI, REST API, /sync);
the runs the GitLab hook receiver starts are not the sync job: the receiver's sweeper gives the events such a run
left unclosed their failed attempt (it knows the retry settings; ``imrt_compat.webhook_receiver.release_ended_claims``).

The hooks run in the scheduler loop (and in the API server for manual state changes), so they only enqueue: one
daemon thread per process does the database work with short timeouts. A lost event is repaired by the reconciler
(on ``POST /sync``, ``GET /sync/{id}``) and by the DAG's own tasks, which write the same rows idempotently.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from airflow.listeners import hookimpl

from imrt_sync import DAG_ID

log = logging.getLogger(__name__)

_events: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=1000)
_worker_lock = threading.Lock()
_worker: threading.Thread | None = None


def _mirror():
    from imrt_sync.spring_batch import SpringBatchMirror

    from .engine import server_engine

    return SpringBatchMirror(server_engine())


def _work() -> None:
    while True:
        event = _events.get()
        try:
            event()
        except Exception:
            log.warning("could not mirror a run into the Spring Batch tables", exc_info=True)
        finally:
            _events.task_done()


def _submit(event: Callable[[], None]) -> None:
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="imrt-batch-mirror", daemon=True)
            _worker.start()
    try:
        _events.put_nowait(event)
    except queue.Full:
        log.warning("the Spring Batch mirror is behind; the reconciler will repair the rows")


def _mirrored(dag_run) -> bool:
    """Runs of the sync job; the real-time path's runs (another DAG) are recorded in ``imrt_webhook_event`` instead."""
    return dag_run.dag_id == DAG_ID


@hookimpl
def on_dag_run_running(dag_run, msg: str) -> None:
    if not _mirrored(dag_run):
        return
    run_id, started_at = dag_run.run_id, dag_run.start_date
    _submit(lambda: _mirror().mark_started(run_id, started_at))


@hookimpl
def on_dag_run_success(dag_run, msg: str) -> None:
    _finish(dag_run, "COMPLETED", msg)


@hookimpl
def on_dag_run_failed(dag_run, msg: str) -> None:
    _finish(dag_run, "FAILED", msg)


def _finish(dag_run, status: str, msg: str) -> None:
    """Close the execution, keeping the exit message the run's summary task recorded (if it got to run)."""
    if not _mirrored(dag_run):
        return
    run_id, ended_at = dag_run.run_id, dag_run.end_date

    def close() -> None:
        mirror = _mirror()
        execution = mirror.execution_for_run(run_id)
        recorded = execution is not None and bool(execution.exit_message)
        message = None if recorded else f"Airflow run {run_id} ended {status}: {msg}"
        mirror.mark_finished(run_id, status, message, ended_at=ended_at)

    _submit(close)
