"""The mirror of the workflow's runs in the legacy Spring Batch tables (docs/legacy-api.md, "The mirror").

Legacy sources: the tables of SmarterApp/AP_IMRT_Schema ``src/main/resources/db/migration/V4__imrt_ddl.sql`` (a copy
of Spring Batch's ``schema-postgresql.sql``); in SmarterApp/AP_IMRT_ItemIngestService (paths under
``src/main/java/org/opentestsystem/ap/imrt/iis/``), the job, its step and its listener at tag 0.1.46
(``config/ItemSynchronizationBatchJobConfiguration.java``, ``batch/ItemIngestSingleJobExecutionListener.java``) and
``PUT /abandon`` at tag 0.1.61 (``service/impl/SpringBatchJobManagementServiceImpl.java``); the runbook's SQL in
tests/fixtures/runbook.md.

Every run gets one ``batch_job_execution`` row under the single ``batch_job_instance``
(``itemSynchronizationJob`` / MD5 of ""), one ``batch_step_execution`` row (``itemSynchronizationStep``) and one
``batch_job_execution_context`` row whose ``short_context`` links the execution to the run::

    {"dagId": "item_synchronization", "runId": "<run_id>"}

so the runbook's SQL (diagnosis, the two manual ``UPDATE`` statements, the full ``DELETE``) and the legacy
``POST /sync`` / ``PUT /abandon/{jobInstanceId}`` contract keep working. "Running" means ``end_time IS NULL``, as
in Spring Batch. Ids come from the three legacy sequences; ``batch_job_execution_params`` gets no rows (the
legacy job parameters are empty). Timestamps are naive UTC datetimes (``TIMESTAMP`` without time zone).

Row life cycle (Spring Batch's, as the legacy job's rows went through it, plus what the workflow side needs):

* :meth:`SpringBatchMirror.create_execution`: ``STARTING``, ``exit_code`` ``UNKNOWN``, ``exit_message`` ``''``
  (Spring Batch's ``ExitStatus.UNKNOWN`` has an empty description), ``start_time`` NULL, ``version`` 0.
* :meth:`SpringBatchMirror.mark_started`: ``STARTED`` + ``start_time``; the step row (``STARTED``, ``exit_code``
  ``EXECUTING`` as a Spring Batch step has while it runs). Creates the execution when none is linked to the run
  (runs started by the schedule, the UI or the REST API).
* :meth:`SpringBatchMirror.mark_finished`: ``COMPLETED``/``FAILED``/``ABANDONED``/``STOPPED``, ``exit_code`` =
  status, ``exit_message`` cut to 2,500 characters, ``end_time``, on the job execution and its step.
* Clearing a finished run runs it again under the same run id: :meth:`~SpringBatchMirror.mark_started` then
  *reopens* the ended row (``end_time`` NULL, ``STARTED``, new ``start_time``) instead of adding a second
  execution, so one run keeps one execution id. A "running" notification that arrives after the run's end was
  recorded (``started_at`` before the recorded ``end_time``) is stale and changes nothing.
* An ``ABANDONED`` row is final for :meth:`~SpringBatchMirror.mark_finished` (Spring Batch's
  ``BatchStatus.upgradeTo`` also keeps ABANDONED over FAILED/COMPLETED): the run stopped after ``/abandon`` ends
  "failed", and that must not turn the abandoned row back into FAILED. Only a clear (mark_started) reopens it.

Concurrency: every method is one short transaction at READ COMMITTED with a bounded ``lock_timeout``. Writers that
can race for one run (the ``/sync`` endpoint, the listener, the reconciler) serialise on a transaction-level
advisory lock per run id and then on the execution row (``SELECT ... FOR UPDATE``); creating an execution also
takes a job-wide advisory lock (one job instance, however many callers). PostgreSQL only. The caller passes the
engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa

from .. import schema
from .model import (
    FINAL_STATUSES,
    JOB_NAME,
    AbandonResult,
    Execution,
    RunAlreadyLinkedError,
    cut_exit_message,
    naive_utc,
    parse_context,
    run_id_of,
    utcnow,
)
from .rows import (
    by_run,
    counts,
    ensure_instance,
    ensure_step,
    execution_select,
    finish,
    insert_execution,
    lock_execution,
    lock_job,
    lock_run,
    reload,
    reopen,
    step_of,
    to_execution,
    upsert_context,
)

_REPAIRED_STATES = {"success": "COMPLETED", "failed": "FAILED"}

_J = schema.batch_job_execution
_S = schema.batch_step_execution
_C = schema.batch_job_execution_context
_I = schema.batch_job_instance


class SpringBatchMirror:
    """Reads and writes the Spring Batch rows of ``itemSynchronizationJob`` (see the module docstring)."""

    def __init__(self, engine: sa.Engine, *, lock_timeout_ms: int = 10_000) -> None:
        # READ COMMITTED whatever the caller's engine default: the INSERT ... ON CONFLICT DO NOTHING + SELECT of the
        # job instance relies on each statement seeing rows committed by concurrent callers.
        self._engine = engine.execution_options(isolation_level="READ COMMITTED")
        self._lock_timeout = f"{int(lock_timeout_ms)}ms"

    # ---------------------------------------------------------------------------------------------- reads

    def job_instance_id(self) -> int:
        """The id of the single ``batch_job_instance`` of the job; creates it (version 0) when it is missing."""
        with self._write() as conn:
            return ensure_instance(conn)

    def execution(self, job_execution_id: int) -> Execution | None:
        with self._engine.connect() as conn:
            row = conn.execute(execution_select().where(_J.c.job_execution_id == job_execution_id)).first()
        return to_execution(row)

    def execution_for_run(self, run_id: str) -> Execution | None:
        """The execution linked to the Airflow run (the oldest one, should there ever be two)."""
        with self._engine.connect() as conn:
            return to_execution(conn.execute(by_run(run_id)).first())

    def running(self) -> list[Execution]:
        """Executions of the job with ``end_time IS NULL``, newest first (Spring Batch's running executions)."""
        query = (
            execution_select()
            .join(_I, _I.c.job_instance_id == _J.c.job_instance_id)
            .where(_I.c.job_name == JOB_NAME, _J.c.end_time.is_(None))
            .order_by(_J.c.job_execution_id.desc())
        )
        with self._engine.connect() as conn:
            return [to_execution(row) for row in conn.execute(query)]

    # --------------------------------------------------------------------------------------------- writes

    def create_execution(self, run_id: str | None = None) -> Execution:
        """A new ``STARTING`` execution (and its context row), linked to ``run_id`` when given.

        Pass the run id the caller will trigger with (Airflow accepts a chosen ``dag_run_id``): linking later with
        :meth:`link_run` leaves a window in which the run's "running" notification finds no row and creates one.
        """
        now = utcnow()
        with self._write() as conn:
            if run_id is not None:
                lock_run(conn, run_id)
                linked = conn.execute(by_run(run_id)).first()
                if linked is not None:
                    raise RunAlreadyLinkedError(
                        f"Airflow run {run_id!r} is already linked to job execution {linked.job_execution_id}"
                    )
            lock_job(conn)
            instance_id = ensure_instance(conn)
            execution_id = insert_execution(conn, instance_id, run_id, status="STARTING", create_time=now)
            return to_execution(reload(conn, execution_id))

    def link_run(self, job_execution_id: int, run_id: str) -> None:
        """Link the execution to the Airflow run (sets or replaces the run id of its context row)."""
        with self._write() as conn:
            lock_run(conn, run_id)
            row = lock_execution(conn, job_execution_id)
            if row is None:
                raise LookupError(f"no job execution {job_execution_id}")
            other = conn.execute(by_run(run_id)).first()
            if other is not None and other.job_execution_id != job_execution_id:
                raise RunAlreadyLinkedError(
                    f"Airflow run {run_id!r} is already linked to job execution {other.job_execution_id}"
                )
            upsert_context(conn, job_execution_id, run_id)

    def mark_started(self, run_id: str, started_at: datetime | None = None) -> Execution:
        """The run is running: ``STARTED`` + ``start_time`` and the step row; idempotent, creates what is missing.

        ``started_at``: the run's start (Airflow's ``dag_run.start_date``), now when None. A row that already ended
        is reopened (a clear in Airflow runs the same run id again) unless ``started_at`` is before its recorded
        ``end_time``, which means this notification is stale. Pass ``started_at`` so the two can be told apart.
        """
        now = utcnow()
        start = naive_utc(started_at) or now
        with self._write() as conn:
            lock_run(conn, run_id)
            row = conn.execute(by_run(run_id).with_for_update(of=_J)).first()
            if row is None:
                lock_job(conn)
                instance_id = ensure_instance(conn)
                execution_id = insert_execution(
                    conn, instance_id, run_id, status="STARTED", create_time=min(now, start), start_time=start
                )
                ensure_step(conn, execution_id, start, now)
                return to_execution(reload(conn, execution_id))

            execution_id = row.job_execution_id
            if row.end_time is not None:
                if start >= row.end_time:  # cleared and running again: reopen the same execution
                    reopen(conn, execution_id, start, now)
                return to_execution(reload(conn, execution_id))

            changes: dict = {}
            if row.start_time is None:
                changes["start_time"] = start
            if row.status != "STARTED":
                changes["status"] = "STARTED"
            if changes:
                conn.execute(
                    sa.update(_J)
                    .where(_J.c.job_execution_id == execution_id)
                    .values(**changes, last_updated=now, version=sa.func.coalesce(_J.c.version, 0) + 1)
                )
            ensure_step(conn, execution_id, row.start_time or start, now)
            return to_execution(reload(conn, execution_id))

    def mark_finished(
        self,
        run_id: str,
        status: str,
        exit_message: str | None = None,
        *,
        read_count: int | None = None,
        write_count: int | None = None,
        skip_count: int | None = None,
        ended_at: datetime | None = None,
        started_at: datetime | None = None,
    ) -> Execution:
        """The run ended: status, ``exit_code`` (= status), ``exit_message`` (cut to 2,500), ``end_time``.

        ``exit_message`` None keeps the message recorded by :meth:`record_outcome`; counts left None keep theirs.

        On the job execution and its step (step counts: ``read_count``, ``write_count``, ``process_skip_count`` =
        ``skip_count``). Idempotent: the same values again change nothing (not even ``version``); with
        ``ended_at`` None a row that already ended keeps its ``end_time``. Creates the rows when the run's
        "running" notification was lost (``started_at``, when given, becomes their ``start_time``). An
        ``ABANDONED`` row is left as it is.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        now = utcnow()
        end = naive_utc(ended_at)
        with self._write() as conn:
            lock_run(conn, run_id)
            row = conn.execute(by_run(run_id).with_for_update(of=_J)).first()
            if row is None:
                start = naive_utc(started_at) or end or now
                lock_job(conn)
                instance_id = ensure_instance(conn)
                execution_id = insert_execution(
                    conn, instance_id, run_id, status="STARTED", create_time=min(now, start), start_time=start
                )
            elif row.status == "ABANDONED" and row.end_time is not None:
                return to_execution(row)
            else:
                execution_id = row.job_execution_id
                start = row.start_time or naive_utc(started_at) or end or now
            finish(
                conn,
                execution_id,
                status,
                exit_message,
                counts=counts(read_count, write_count, skip_count),
                end=end,
                start=start,
                now=now,
            )
            return to_execution(reload(conn, execution_id))

    def record_outcome(
        self, run_id: str, exit_message: str, *, read_count: int, write_count: int, skip_count: int
    ) -> Execution:
        """The run's summary: its exit message and counts, written before the run itself ends.

        The status and ``end_time`` stay as they are until Airflow says the run ended (:meth:`mark_finished`), so
        a script that waits for ``end_time`` can start the next run at once.
        """
        now = utcnow()
        with self._write() as conn:
            lock_run(conn, run_id)
            row = conn.execute(by_run(run_id).with_for_update(of=_J)).first()
            if row is None:
                raise LookupError(f"no job execution is linked to run {run_id}")
            message = cut_exit_message(exit_message)
            if row.exit_message != message:
                conn.execute(
                    sa.update(_J)
                    .where(_J.c.job_execution_id == row.job_execution_id)
                    .values(exit_message=message, last_updated=now, version=sa.func.coalesce(_J.c.version, 0) + 1)
                )
            step = step_of(conn, row.job_execution_id)
            if step is not None:
                conn.execute(
                    sa.update(_S)
                    .where(_S.c.step_execution_id == step.step_execution_id)
                    .values(exit_message=message, last_updated=now, **counts(read_count, write_count, skip_count))
                )
            return to_execution(reload(conn, row.job_execution_id))

    def abandon(self, job_instance_id: int) -> AbandonResult:
        """Abandon every running execution of the job instance (``PUT /abandon/{jobInstanceId}``; legacy: IIS 0.1.61
        ``service/impl/SpringBatchJobManagementServiceImpl.java``, sources above).

        Unlike the legacy service (500 when more than one execution runs) every running execution of the job
        becomes ``ABANDONED`` with ``end_time``. ``exit_code`` and ``exit_message`` are left as they are (legacy),
        but the step rows are also set ``ABANDONED`` with ``end_time`` (the legacy left them hanging, which the
        runbook then had to fix by hand).
        """
        now = utcnow()
        with self._write() as conn:
            job_name = conn.scalar(sa.select(_I.c.job_name).where(_I.c.job_instance_id == job_instance_id))
            if job_name is None:
                return AbandonResult("not_found", job_instance_id)
            rows = conn.execute(
                execution_select()
                .join(_I, _I.c.job_instance_id == _J.c.job_instance_id)
                .where(_I.c.job_name == job_name, _J.c.end_time.is_(None))
                .order_by(_J.c.job_execution_id)
                .with_for_update(of=_J)
            ).all()
            if not rows:
                return AbandonResult("none", job_instance_id, job_name)
            ids = [row.job_execution_id for row in rows]
            conn.execute(
                sa.update(_J)
                .where(_J.c.job_execution_id.in_(ids))
                .values(
                    status="ABANDONED", end_time=now, last_updated=now, version=sa.func.coalesce(_J.c.version, 0) + 1
                )
            )
            conn.execute(
                sa.update(_S)
                .where(_S.c.job_execution_id.in_(ids), _S.c.end_time.is_(None))
                .values(
                    status="ABANDONED", exit_code="ABANDONED", end_time=now, last_updated=now, version=_S.c.version + 1
                )
            )
        run_ids = tuple(run_id for run_id in (run_id_of(row.short_context) for row in rows) if run_id is not None)
        return AbandonResult("abandoned", job_instance_id, job_name, tuple(ids), run_ids)

    def reconcile(
        self, run_states: Callable[[list[str]], dict[str, str]], *, grace: timedelta = timedelta(minutes=5)
    ) -> list[int]:
        """Repair executions left running (``end_time`` NULL) whose Airflow run has ended; the ids repaired.

        ``run_states`` maps run ids to Airflow run states (a run missing from the answer does not exist). Run
        ``success`` → ``COMPLETED``, ``failed`` → ``FAILED``; a run that does not exist → ``ABANDONED``, and so is
        an execution this mirror created that no run was ever linked to (the ``/sync`` caller died between creating
        it and triggering). Those two only once the row is older than ``grace`` (the endpoint creates the row just
        before it triggers the run). Other states (``running``, ``queued``, ...) are left alone, and so are rows
        that are not this mirror's (no Airflow context: a legacy Java execution). ``run_states`` is called outside
        any transaction; each repair is its own short transaction that re-checks the row under its lock.
        """
        candidates = self.running()
        run_ids = sorted({e.run_id for e in candidates if e.run_id is not None})
        states = dict(run_states(run_ids)) if run_ids else {}
        with self._engine.connect() as conn:
            ours_unlinked = {
                row.job_execution_id
                for row in conn.execute(
                    sa.select(_C.c.job_execution_id, _C.c.short_context).where(
                        _C.c.job_execution_id.in_([e.job_execution_id for e in candidates if e.run_id is None])
                    )
                )
                if (parse_context(row.short_context) is not None)
            }
        cutoff = utcnow() - grace
        repaired: list[int] = []
        for execution in candidates:
            if execution.run_id is None:
                if execution.job_execution_id not in ours_unlinked or execution.create_time > cutoff:
                    continue
                status = "ABANDONED"
                why = "no Airflow run was ever linked to this execution"
            else:
                state = states.get(execution.run_id)
                if state in _REPAIRED_STATES:
                    status = _REPAIRED_STATES[state]
                    why = f"Airflow run {execution.run_id} ended with state '{state}' but its end was not recorded"
                elif state is None:
                    if execution.create_time > cutoff:
                        continue
                    status = "ABANDONED"
                    why = f"Airflow run {execution.run_id} does not exist"
                else:
                    continue
            message = f"Marked {status} by the reconciler: {why}"
            if self._repair(execution.job_execution_id, status, message):
                repaired.append(execution.job_execution_id)
        return repaired

    # ------------------------------------------------------------------------------------------- internals

    def _repair(self, job_execution_id: int, status: str, message: str) -> bool:
        now = utcnow()
        with self._write() as conn:
            row = lock_execution(conn, job_execution_id)
            if row is None or row.end_time is not None:  # finished (or deleted) meanwhile
                return False
            recorded = row.exit_message or ""
            finish(
                conn,
                job_execution_id,
                status,
                recorded or message,
                counts=None,
                end=None,
                start=row.start_time,
                now=now,
            )
            return True

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One transaction with ``lock_timeout`` set for it only (a held lock fails the call instead of hanging)."""
        with self._engine.begin() as conn:
            conn.execute(sa.select(sa.func.set_config("lock_timeout", self._lock_timeout, True)))
            yield conn
