"""Mirror of the Airflow runs of ``item_synchronization`` in the legacy Spring Batch tables (reference §2.1, §3, §4).

Every Airflow run gets one ``batch_job_execution`` row under the single ``batch_job_instance``
(``itemSynchronizationJob`` / MD5 of ""), one ``batch_step_execution`` row (``itemSynchronizationStep``) and one
``batch_job_execution_context`` row whose ``short_context`` links the execution to the run::

    {"airflowDagId": "item_synchronization", "airflowRunId": "<run_id>"}

so the runbook's SQL (diagnosis, the two manual ``UPDATE`` statements, the full ``DELETE``) and the legacy
``POST /sync`` / ``PUT /abandon/{jobInstanceId}`` contract keep working. "Running" means ``end_time IS NULL``, as
in Spring Batch. Ids come from the three legacy sequences; ``batch_job_execution_params`` gets no rows (the
legacy job parameters are empty). Timestamps are naive UTC datetimes (``TIMESTAMP`` without time zone).

Row life cycle (legacy §2.1/§4, plus what the Airflow side needs):

* :meth:`BatchMirror.create_execution`: ``STARTING``, ``exit_code`` ``UNKNOWN``, ``exit_message`` ``''`` (Spring
  Batch's ``ExitStatus.UNKNOWN`` has an empty description), ``start_time`` NULL, ``version`` 0.
* :meth:`BatchMirror.mark_started`: ``STARTED`` + ``start_time``; the step row (``STARTED``, ``exit_code``
  ``EXECUTING`` as a Spring Batch step has while it runs). Creates the execution when none is linked to the run
  (runs started by the schedule, the UI or the REST API).
* :meth:`BatchMirror.mark_finished`: ``COMPLETED``/``FAILED``/``ABANDONED``/``STOPPED``, ``exit_code`` = status,
  ``exit_message`` cut to 2,500 characters, ``end_time``, on the job execution and its step.
* Clearing a finished run in Airflow makes it run again under the same run id: :meth:`~BatchMirror.mark_started`
  then *reopens* the ended row (``end_time`` NULL, ``STARTED``, new ``start_time``) instead of adding a second
  execution, so one run keeps one execution id. A "running" notification that arrives after the run's end was
  recorded (``started_at`` before the recorded ``end_time``) is stale and changes nothing.
* An ``ABANDONED`` row is final for :meth:`~BatchMirror.mark_finished` (Spring Batch's ``BatchStatus.upgradeTo``
  also keeps ABANDONED over FAILED/COMPLETED): the run stopped after ``/abandon`` ends "failed" in Airflow, and
  that must not turn the abandoned row back into FAILED. Only a clear (mark_started) reopens it.

Concurrency: every method is one short transaction at READ COMMITTED with a bounded ``lock_timeout``. Writers that
can race for one run (the ``/sync`` endpoint, the listener, the reconciler) serialise on a transaction-level
advisory lock per run id and then on the execution row (``SELECT ... FOR UPDATE``); creating an execution also
takes a job-wide advisory lock, so ``create_execution(..., exclusive=True)`` is a race-free "409 if running".
The lock order is always: run lock, job lock, rows (by ascending id). PostgreSQL only.

This module imports nothing from Airflow; the caller passes the engine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from . import schema

__all__ = [
    "JOB_NAME",
    "STEP_NAME",
    "JOB_KEY",
    "DAG_ID",
    "EXIT_MESSAGE_LIMIT",
    "FINAL_STATUSES",
    "Execution",
    "AbandonResult",
    "BatchMirror",
    "JobAlreadyRunningError",
    "RunAlreadyLinkedError",
    "started_response",
    "already_running_message",
    "execution_view",
]

JOB_NAME = "itemSynchronizationJob"
STEP_NAME = "itemSynchronizationStep"
JOB_KEY = "d41d8cd98f00b204e9800998ecf8427e"  # MD5 of "" (empty job parameters)
DAG_ID = "item_synchronization"
EXIT_MESSAGE_LIMIT = 2500
FINAL_STATUSES = ("COMPLETED", "FAILED", "ABANDONED", "STOPPED")

_CONTEXT_PREFIX = '{"airflowDagId"'
_RUN_LOCK_CLASS = 0x494D5242  # "IMRB": advisory lock (class, hash of run id) per Airflow run
_JOB_LOCK_CLASS = 0x494D524A  # "IMRJ": advisory lock (class, 0) while creating executions
_REPAIRED_STATES = {"success": "COMPLETED", "failed": "FAILED"}

_J = schema.batch_job_execution
_S = schema.batch_step_execution
_C = schema.batch_job_execution_context
_I = schema.batch_job_instance


# ------------------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class Execution:
    """One ``batch_job_execution`` row and the Airflow run linked to it (None when none is)."""

    job_execution_id: int
    job_instance_id: int
    status: str
    exit_code: str
    exit_message: str | None
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    last_updated: datetime | None
    run_id: str | None

    @property
    def running(self) -> bool:
        return self.end_time is None


@dataclass(frozen=True)
class AbandonResult:
    """Outcome of ``PUT /abandon/{jobInstanceId}``.

    ``kind``: ``"not_found"`` (404, ``message`` is the text body), ``"none"`` or ``"abandoned"`` (200, ``body``
    is the JSON body). ``run_ids``: the Airflow runs linked to the abandoned executions, for the caller to stop.
    """

    kind: str
    job_instance_id: int
    body: dict | None = None
    message: str | None = None
    job_execution_ids: tuple[int, ...] = ()
    run_ids: tuple[str, ...] = ()

    @property
    def status_code(self) -> int:
        return 404 if self.kind == "not_found" else 200


class JobAlreadyRunningError(RuntimeError):
    """An execution of the job is running (``end_time IS NULL``): the legacy 409. ``str()`` is the 409 body."""

    def __init__(self, job_instance_id: int, job_execution_ids: Iterable[int] = ()) -> None:
        self.job_instance_id = job_instance_id
        self.job_execution_ids = tuple(job_execution_ids)
        super().__init__(already_running_message(job_instance_id))


class RunAlreadyLinkedError(ValueError):
    """The Airflow run is already linked to another job execution."""


# ------------------------------------------------------------------------------------ legacy HTTP shapes


def started_response(execution: Execution) -> dict:
    """The 200 body of ``POST /sync`` (tag 0.1.61+, keys in the legacy order)."""
    return {
        "jobExecutionId": execution.job_execution_id,
        "jobInstanceId": execution.job_instance_id,
        "name": JOB_NAME,
        "status": "STARTING",
        "message": f"Started {JOB_NAME} successfully",
    }


def already_running_message(job_instance_id: int) -> str:
    """The text/plain 409 body of ``POST /sync`` (two spaces before "To abandon")."""
    return (
        f"A job execution for this job is already running: JobInstance: id={job_instance_id}, version=0, "
        f"Job=[{JOB_NAME}].  To abandon the running execution of this job, make a PUT call to /abandon, "
        "passing in the job instance id"
    )


def execution_view(execution: Execution) -> dict:
    """The JSON of ``GET /sync/{jobExecutionId}``: the row, times in ISO 8601 UTC with ``Z`` (or null)."""
    return {
        "jobExecutionId": execution.job_execution_id,
        "jobInstanceId": execution.job_instance_id,
        "name": JOB_NAME,
        "status": execution.status,
        "exitCode": execution.exit_code,
        "exitMessage": execution.exit_message,
        "createTime": _iso(execution.create_time),
        "startTime": _iso(execution.start_time),
        "endTime": _iso(execution.end_time),
        "lastUpdated": _iso(execution.last_updated),
        "airflowRunId": execution.run_id,
    }


# ------------------------------------------------------------------------------------------------ mirror


class BatchMirror:
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
            return _ensure_instance(conn)

    def execution(self, job_execution_id: int) -> Execution | None:
        with self._engine.connect() as conn:
            row = conn.execute(_execution_select().where(_J.c.job_execution_id == job_execution_id)).first()
        return _to_execution(row)

    def execution_for_run(self, run_id: str) -> Execution | None:
        """The execution linked to the Airflow run (the oldest one, should there ever be two)."""
        with self._engine.connect() as conn:
            return _to_execution(conn.execute(_by_run(run_id)).first())

    def running(self) -> list[Execution]:
        """Executions of the job with ``end_time IS NULL``, newest first (Spring Batch's running executions)."""
        query = (
            _execution_select()
            .join(_I, _I.c.job_instance_id == _J.c.job_instance_id)
            .where(_I.c.job_name == JOB_NAME, _J.c.end_time.is_(None))
            .order_by(_J.c.job_execution_id.desc())
        )
        with self._engine.connect() as conn:
            return [_to_execution(row) for row in conn.execute(query)]

    # --------------------------------------------------------------------------------------------- writes

    def create_execution(self, run_id: str | None = None, *, exclusive: bool = False) -> Execution:
        """A new ``STARTING`` execution (and its context row), linked to ``run_id`` when given.

        Pass the run id the caller will trigger with (Airflow accepts a chosen ``dag_run_id``): linking later with
        :meth:`link_run` leaves a window in which the run's "running" notification finds no row and creates one.
        ``exclusive``: raise :class:`JobAlreadyRunningError` (the legacy 409) instead when an execution of the job
        is running; the check and the insert are atomic across callers.
        """
        now = _utcnow()
        with self._write() as conn:
            if run_id is not None:
                _lock_run(conn, run_id)
                linked = conn.execute(_by_run(run_id)).first()
                if linked is not None:
                    raise RunAlreadyLinkedError(
                        f"Airflow run {run_id!r} is already linked to job execution {linked.job_execution_id}"
                    )
            _lock_job(conn)
            instance_id = _ensure_instance(conn)
            if exclusive:
                running = _running_ids(conn)
                if running:
                    raise JobAlreadyRunningError(instance_id, running)
            execution_id = _insert_execution(conn, instance_id, run_id, status="STARTING", create_time=now)
            return _to_execution(_reload(conn, execution_id))

    def link_run(self, job_execution_id: int, run_id: str) -> None:
        """Link the execution to the Airflow run (sets or replaces the run id of its context row)."""
        with self._write() as conn:
            _lock_run(conn, run_id)
            row = _lock_execution(conn, job_execution_id)
            if row is None:
                raise LookupError(f"no job execution {job_execution_id}")
            other = conn.execute(_by_run(run_id)).first()
            if other is not None and other.job_execution_id != job_execution_id:
                raise RunAlreadyLinkedError(
                    f"Airflow run {run_id!r} is already linked to job execution {other.job_execution_id}"
                )
            _upsert_context(conn, job_execution_id, run_id)

    def mark_started(self, run_id: str, started_at: datetime | None = None) -> Execution:
        """The run is running: ``STARTED`` + ``start_time`` and the step row; idempotent, creates what is missing.

        ``started_at``: the run's start (Airflow's ``dag_run.start_date``), now when None. A row that already ended
        is reopened (a clear in Airflow runs the same run id again) unless ``started_at`` is before its recorded
        ``end_time``, which means this notification is stale. Pass ``started_at`` so the two can be told apart.
        """
        now = _utcnow()
        start = _naive_utc(started_at) or now
        with self._write() as conn:
            _lock_run(conn, run_id)
            row = conn.execute(_by_run(run_id).with_for_update(of=_J)).first()
            if row is None:
                _lock_job(conn)
                instance_id = _ensure_instance(conn)
                execution_id = _insert_execution(
                    conn, instance_id, run_id, status="STARTED", create_time=min(now, start), start_time=start
                )
                _ensure_step(conn, execution_id, start, now)
                return _to_execution(_reload(conn, execution_id))

            execution_id = row.job_execution_id
            if row.end_time is not None:
                if start >= row.end_time:  # cleared and running again: reopen the same execution
                    _reopen(conn, execution_id, start, now)
                return _to_execution(_reload(conn, execution_id))

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
            _ensure_step(conn, execution_id, row.start_time or start, now)
            return _to_execution(_reload(conn, execution_id))

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
        now = _utcnow()
        end = _naive_utc(ended_at)
        with self._write() as conn:
            _lock_run(conn, run_id)
            row = conn.execute(_by_run(run_id).with_for_update(of=_J)).first()
            if row is None:
                start = _naive_utc(started_at) or end or now
                _lock_job(conn)
                instance_id = _ensure_instance(conn)
                execution_id = _insert_execution(
                    conn, instance_id, run_id, status="STARTED", create_time=min(now, start), start_time=start
                )
            elif row.status == "ABANDONED" and row.end_time is not None:
                return _to_execution(row)
            else:
                execution_id = row.job_execution_id
                start = row.start_time or _naive_utc(started_at) or end or now
            _finish(
                conn,
                execution_id,
                status,
                exit_message,
                counts=_counts(read_count, write_count, skip_count),
                end=end,
                start=start,
                now=now,
            )
            return _to_execution(_reload(conn, execution_id))

    def record_outcome(
        self, run_id: str, exit_message: str, *, read_count: int, write_count: int, skip_count: int
    ) -> Execution:
        """The run's summary: its exit message and counts, written before the run itself ends.

        The status and ``end_time`` stay as they are until Airflow says the run ended (:meth:`mark_finished`), so
        a script that waits for ``end_time`` can start the next run at once.
        """
        now = _utcnow()
        with self._write() as conn:
            _lock_run(conn, run_id)
            row = conn.execute(_by_run(run_id).with_for_update(of=_J)).first()
            if row is None:
                raise LookupError(f"no job execution is linked to run {run_id}")
            message = _cut(exit_message)
            if row.exit_message != message:
                conn.execute(
                    sa.update(_J)
                    .where(_J.c.job_execution_id == row.job_execution_id)
                    .values(exit_message=message, last_updated=now, version=sa.func.coalesce(_J.c.version, 0) + 1)
                )
            step = _step_of(conn, row.job_execution_id)
            if step is not None:
                conn.execute(
                    sa.update(_S)
                    .where(_S.c.step_execution_id == step.step_execution_id)
                    .values(exit_message=message, last_updated=now, **_counts(read_count, write_count, skip_count))
                )
            return _to_execution(_reload(conn, row.job_execution_id))

    def abandon(self, job_instance_id: int) -> AbandonResult:
        """``PUT /abandon/{jobInstanceId}`` (reference §3).

        Unlike the legacy service (500 when more than one execution runs) every running execution of the job
        becomes ``ABANDONED`` with ``end_time``; the body names the newest. ``exit_code`` and ``exit_message`` are
        left as they are (legacy), but the step rows are also set ``ABANDONED`` with ``end_time`` (the legacy left
        them hanging, which the runbook then had to fix by hand).
        """
        now = _utcnow()
        with self._write() as conn:
            job_name = conn.scalar(sa.select(_I.c.job_name).where(_I.c.job_instance_id == job_instance_id))
            if job_name is None:
                message = f"Could not find job instance for instance id {job_instance_id}"
                return AbandonResult("not_found", job_instance_id, message=message)
            rows = conn.execute(
                _execution_select()
                .join(_I, _I.c.job_instance_id == _J.c.job_instance_id)
                .where(_I.c.job_name == job_name, _J.c.end_time.is_(None))
                .order_by(_J.c.job_execution_id)
                .with_for_update(of=_J)
            ).all()
            if not rows:
                return AbandonResult(
                    "none",
                    job_instance_id,
                    body={
                        "jobExecutionId": 0,
                        "jobInstanceId": job_instance_id,
                        "name": job_name,
                        "status": "NO JOB EXECUTIONS",
                        "message": f"No job executions are currently running for the {job_name} "
                        f"(job instance id {job_instance_id})",
                    },
                )
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
        newest = ids[-1]
        run_ids = tuple(run_id for run_id in (_run_id_of(row.short_context) for row in rows) if run_id is not None)
        return AbandonResult(
            "abandoned",
            job_instance_id,
            body={
                "jobExecutionId": newest,
                "jobInstanceId": job_instance_id,
                "name": job_name,
                "status": "ABANDONED",
                "message": f"Job Execution {newest} for Job {job_name} abandoned successfully",
            },
            job_execution_ids=tuple(ids),
            run_ids=run_ids,
        )

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
                if _is_mirror_context(row.short_context)
            }
        cutoff = _utcnow() - grace
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
        now = _utcnow()
        with self._write() as conn:
            row = _lock_execution(conn, job_execution_id)
            if row is None or row.end_time is not None:  # finished (or deleted) meanwhile
                return False
            recorded = row.exit_message or ""
            _finish(conn, job_execution_id, status, recorded or message, counts=None, end=None,
                    start=row.start_time, now=now)
            return True

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One transaction with ``lock_timeout`` set for it only (a held lock fails the call instead of hanging)."""
        with self._engine.begin() as conn:
            conn.execute(sa.select(sa.func.set_config("lock_timeout", self._lock_timeout, True)))
            yield conn


# ----------------------------------------------------------------------------------------------- SQL helpers


def _execution_select() -> sa.Select:
    return sa.select(
        _J.c.job_execution_id,
        _J.c.job_instance_id,
        _J.c.status,
        _J.c.exit_code,
        _J.c.exit_message,
        _J.c.create_time,
        _J.c.start_time,
        _J.c.end_time,
        _J.c.last_updated,
        _C.c.short_context,
    ).select_from(_J.outerjoin(_C, _C.c.job_execution_id == _J.c.job_execution_id))


def _by_run(run_id: str) -> sa.Select:
    """The execution linked to the run. Only context rows written by this mirror are cast to JSON (the CASE keeps
    PostgreSQL from casting legacy, non-JSON ``short_context`` values)."""
    context = sa.case(
        (_C.c.short_context.like(sa.literal(_CONTEXT_PREFIX + "%")), sa.cast(_C.c.short_context, JSONB)),
        else_=sa.null(),
    )
    return (
        _execution_select()
        .where(context["airflowDagId"].astext == DAG_ID, context["airflowRunId"].astext == run_id)
        .order_by(_J.c.job_execution_id)
        .limit(1)
    )


def _reload(conn: sa.Connection, job_execution_id: int) -> sa.Row:
    return conn.execute(_execution_select().where(_J.c.job_execution_id == job_execution_id)).one()


def _lock_execution(conn: sa.Connection, job_execution_id: int) -> sa.Row | None:
    return conn.execute(
        _execution_select().where(_J.c.job_execution_id == job_execution_id).with_for_update(of=_J)
    ).first()


def _lock_run(conn: sa.Connection, run_id: str) -> None:
    key = int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=4).digest(), "big", signed=True)
    _advisory_xact_lock(conn, _RUN_LOCK_CLASS, key)


def _lock_job(conn: sa.Connection) -> None:
    _advisory_xact_lock(conn, _JOB_LOCK_CLASS, 0)


def _advisory_xact_lock(conn: sa.Connection, class_id: int, object_id: int) -> None:
    # The (int4, int4) key space, which does not overlap the bigint one of the schema lock (imrt_sync.schema.SCHEMA_LOCK_KEY).
    conn.execute(
        sa.select(
            sa.func.pg_advisory_xact_lock(
                sa.cast(sa.literal(class_id), sa.Integer), sa.cast(sa.literal(object_id), sa.Integer)
            )
        )
    )


def _ensure_instance(conn: sa.Connection) -> int:
    """Select, else insert (racing callers: ON CONFLICT DO NOTHING, then select the winner's row)."""
    query = sa.select(_I.c.job_instance_id).where(_I.c.job_name == JOB_NAME, _I.c.job_key == JOB_KEY)
    instance_id = conn.scalar(query)
    if instance_id is None:
        conn.execute(
            pg_insert(_I)
            .values(job_instance_id=schema.batch_job_seq.next_value(), version=0, job_name=JOB_NAME, job_key=JOB_KEY)
            .on_conflict_do_nothing(constraint="job_inst_un")
        )
        instance_id = conn.scalar(query)
    return int(instance_id)


def _running_ids(conn: sa.Connection) -> list[int]:
    return list(
        conn.scalars(
            sa.select(_J.c.job_execution_id)
            .join(_I, _I.c.job_instance_id == _J.c.job_instance_id)
            .where(_I.c.job_name == JOB_NAME, _J.c.end_time.is_(None))
            .order_by(_J.c.job_execution_id.desc())
        )
    )


def _insert_execution(
    conn: sa.Connection,
    instance_id: int,
    run_id: str | None,
    *,
    status: str,
    create_time: datetime,
    start_time: datetime | None = None,
) -> int:
    execution_id = conn.execute(
        sa.insert(_J)
        .values(
            job_execution_id=schema.batch_job_execution_seq.next_value(),
            version=0,
            job_instance_id=instance_id,
            create_time=create_time,
            start_time=start_time,
            end_time=None,
            status=status,
            exit_code="UNKNOWN",
            exit_message="",
            last_updated=create_time if start_time is None else max(create_time, start_time),
            job_configuration_location=None,
        )
        .returning(_J.c.job_execution_id)
    ).scalar_one()
    _upsert_context(conn, execution_id, run_id)
    return int(execution_id)


def _upsert_context(conn: sa.Connection, job_execution_id: int, run_id: str | None) -> None:
    short_context = json.dumps({"airflowDagId": DAG_ID, "airflowRunId": run_id}, ensure_ascii=False)
    statement = pg_insert(_C).values(
        job_execution_id=job_execution_id, short_context=short_context, serialized_context=None
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[_C.c.job_execution_id],
            set_={"short_context": statement.excluded.short_context, "serialized_context": None},
        )
    )


def _step_of(conn: sa.Connection, job_execution_id: int) -> sa.Row | None:
    return conn.execute(
        sa.select(_S)
        .where(_S.c.job_execution_id == job_execution_id, _S.c.step_name == STEP_NAME)
        .order_by(_S.c.step_execution_id)
        .limit(1)
        .with_for_update()
    ).first()


def _ensure_step(conn: sa.Connection, job_execution_id: int, start: datetime, now: datetime) -> sa.Row:
    step = _step_of(conn, job_execution_id)
    if step is not None:
        return step
    conn.execute(
        sa.insert(_S).values(
            step_execution_id=schema.batch_step_execution_seq.next_value(),
            version=0,
            step_name=STEP_NAME,
            job_execution_id=job_execution_id,
            start_time=start,
            end_time=None,
            status="STARTED",
            commit_count=1,
            read_count=0,
            filter_count=0,
            write_count=0,
            read_skip_count=0,
            write_skip_count=0,
            process_skip_count=0,
            rollback_count=0,
            exit_code="EXECUTING",
            exit_message="",
            last_updated=max(now, start),
        )
    )
    return _step_of(conn, job_execution_id)


def _reopen(conn: sa.Connection, job_execution_id: int, start: datetime, now: datetime) -> None:
    reopened = {"start_time": start, "end_time": None, "status": "STARTED", "last_updated": now}
    conn.execute(
        sa.update(_J)
        .where(_J.c.job_execution_id == job_execution_id)
        .values(**reopened, exit_code="UNKNOWN", exit_message="", version=sa.func.coalesce(_J.c.version, 0) + 1)
    )
    step = _ensure_step(conn, job_execution_id, start, now)
    if step.end_time is not None:
        conn.execute(
            sa.update(_S)
            .where(_S.c.step_execution_id == step.step_execution_id)
            .values(**reopened, exit_code="EXECUTING", exit_message="", version=_S.c.version + 1)
        )


def _finish(
    conn: sa.Connection,
    job_execution_id: int,
    status: str,
    exit_message: str | None,
    *,
    counts: dict[str, int] | None,
    end: datetime | None,
    start: datetime | None,
    now: datetime,
) -> None:
    """Set the final values on the (locked) job execution and its step; writes only what differs.

    ``start`` None (the reconciler closing an execution that never started): ``start_time`` stays NULL and no step
    row is created (its ``start_time`` is NOT NULL); an existing step is still closed.
    """
    job = conn.execute(sa.select(_J).where(_J.c.job_execution_id == job_execution_id)).one()
    message = _cut(exit_message) if exit_message is not None else (job.exit_message or "")
    job_end = end or job.end_time or now
    job_values = {"status": status, "exit_code": status, "exit_message": message, "end_time": job_end}
    if job.start_time is None and start is not None:
        job_values["start_time"] = min(start, job_end)
    if any(getattr(job, name) != value for name, value in job_values.items()):
        conn.execute(
            sa.update(_J)
            .where(_J.c.job_execution_id == job_execution_id)
            .values(**job_values, last_updated=now, version=sa.func.coalesce(_J.c.version, 0) + 1)
        )

    step_start = job.start_time or start
    step = _step_of(conn, job_execution_id) if step_start is None else _ensure_step(
        conn, job_execution_id, min(step_start, job_end), now
    )
    if step is None:
        return
    step_values = {
        "status": status,
        "exit_code": status,
        "exit_message": message,
        "end_time": end or step.end_time or job_end,
        **(counts or {}),
    }
    if any(getattr(step, name) != value for name, value in step_values.items()):
        conn.execute(
            sa.update(_S)
            .where(_S.c.step_execution_id == step.step_execution_id)
            .values(**step_values, last_updated=now, version=_S.c.version + 1)
        )


# ----------------------------------------------------------------------------------------------- conversions


def _counts(read_count: int | None, write_count: int | None, skip_count: int | None) -> dict[str, int]:
    """The step's count columns that were given."""
    given = {"read_count": read_count, "write_count": write_count, "process_skip_count": skip_count}
    return {column: value for column, value in given.items() if value is not None}


def _to_execution(row: sa.Row | None) -> Execution | None:
    if row is None:
        return None
    return Execution(
        job_execution_id=int(row.job_execution_id),
        job_instance_id=int(row.job_instance_id),
        status=row.status,
        exit_code=row.exit_code,
        exit_message=row.exit_message,
        create_time=row.create_time,
        start_time=row.start_time,
        end_time=row.end_time,
        last_updated=row.last_updated,
        run_id=_run_id_of(row.short_context),
    )


def _parse_context(short_context: str | None) -> dict | None:
    if not short_context or not short_context.startswith(_CONTEXT_PREFIX):
        return None
    try:
        value = json.loads(short_context)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("airflowDagId") == DAG_ID else None


def _is_mirror_context(short_context: str | None) -> bool:
    return _parse_context(short_context) is not None


def _run_id_of(short_context: str | None) -> str | None:
    context = _parse_context(short_context)
    run_id = context.get("airflowRunId") if context else None
    return run_id if isinstance(run_id, str) else None


def _cut(message: str | None) -> str:
    """At most 2,500 characters (Spring Batch's limit); NUL cannot be stored in PostgreSQL text."""
    return (message or "").replace("\x00", "")[:EXIT_MESSAGE_LIMIT]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return _naive_utc(value).isoformat(timespec="milliseconds") + "Z"
