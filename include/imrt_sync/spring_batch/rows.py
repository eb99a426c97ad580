"""The SQL of the Spring Batch mirror: row reads, inserts and updates, and the locks that order them.

The lock order is always: run lock, job lock, rows (by ascending id)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import overload

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from .. import DAG_ID, schema
from .model import (
    CONTEXT_PREFIX,
    JOB_KEY,
    JOB_NAME,
    STEP_NAME,
    Execution,
    context_json,
    cut_exit_message,
    run_id_of,
)

RUN_LOCK_CLASS = 0x494D5242  # "IMRB": advisory lock (class, hash of run id) per run
JOB_LOCK_CLASS = 0x494D524A  # "IMRJ": advisory lock (class, 0) while creating executions

_J = schema.batch_job_execution
_S = schema.batch_step_execution
_C = schema.batch_job_execution_context
_I = schema.batch_job_instance


def execution_select() -> sa.Select:
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


def by_run(run_id: str) -> sa.Select:
    """The execution linked to the run. Only context rows written by this mirror are cast to JSON (the CASE keeps
    PostgreSQL from casting legacy, non-JSON ``short_context`` values)."""
    context = sa.case(
        (_C.c.short_context.like(sa.literal(CONTEXT_PREFIX + "%")), sa.cast(_C.c.short_context, JSONB)),
        else_=sa.null(),
    )
    return (
        execution_select()
        .where(context["dagId"].astext == DAG_ID, context["runId"].astext == run_id)
        .order_by(_J.c.job_execution_id)
        .limit(1)
    )


def reload(conn: sa.Connection, job_execution_id: int) -> sa.Row:
    return conn.execute(execution_select().where(_J.c.job_execution_id == job_execution_id)).one()


def lock_execution(conn: sa.Connection, job_execution_id: int) -> sa.Row | None:
    return conn.execute(
        execution_select().where(_J.c.job_execution_id == job_execution_id).with_for_update(of=_J)
    ).first()


def lock_run(conn: sa.Connection, run_id: str) -> None:
    key = int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=4).digest(), "big", signed=True)
    advisory_xact_lock(conn, RUN_LOCK_CLASS, key)


def lock_job(conn: sa.Connection) -> None:
    advisory_xact_lock(conn, JOB_LOCK_CLASS, 0)


def advisory_xact_lock(conn: sa.Connection, class_id: int, object_id: int) -> None:
    # The (int4, int4) key space, which does not overlap the bigint one of the schema lock
    # (imrt_sync.schema.SCHEMA_LOCK_KEY).
    conn.execute(
        sa.select(
            sa.func.pg_advisory_xact_lock(
                sa.cast(sa.literal(class_id), sa.Integer), sa.cast(sa.literal(object_id), sa.Integer)
            )
        )
    )


def ensure_instance(conn: sa.Connection) -> int:
    """Select, else insert (racing callers: ON CONFLICT DO NOTHING, then select the winner's row)."""
    query = sa.select(_I.c.job_instance_id).where(_I.c.job_name == JOB_NAME, _I.c.job_key == JOB_KEY)
    instance_id = conn.scalar(query)
    if instance_id is None:
        conn.execute(
            pg_insert(_I)
            .values(job_instance_id=schema.batch_job_seq.next_value(), version=0, job_name=JOB_NAME, job_key=JOB_KEY)
            .on_conflict_do_nothing(constraint="job_inst_un")
        )
        instance_id = conn.execute(query).scalar_one()  # ours or a racing caller's row
    return int(instance_id)


def insert_execution(
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
    upsert_context(conn, execution_id, run_id)
    return int(execution_id)


def upsert_context(conn: sa.Connection, job_execution_id: int, run_id: str | None) -> None:
    statement = pg_insert(_C).values(
        job_execution_id=job_execution_id, short_context=context_json(run_id), serialized_context=None
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[_C.c.job_execution_id],
            set_={"short_context": statement.excluded.short_context, "serialized_context": None},
        )
    )


def _step_select(job_execution_id: int) -> sa.Select:
    """The execution's step row (the first, should there be two), locked."""
    return (
        sa.select(_S)
        .where(_S.c.job_execution_id == job_execution_id, _S.c.step_name == STEP_NAME)
        .order_by(_S.c.step_execution_id)
        .limit(1)
        .with_for_update()
    )


def step_of(conn: sa.Connection, job_execution_id: int) -> sa.Row | None:
    return conn.execute(_step_select(job_execution_id)).first()


def ensure_step(conn: sa.Connection, job_execution_id: int, start: datetime, now: datetime) -> sa.Row:
    step = step_of(conn, job_execution_id)
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
    return conn.execute(_step_select(job_execution_id)).one()


def reopen(conn: sa.Connection, job_execution_id: int, start: datetime, now: datetime) -> None:
    reopened = {"start_time": start, "end_time": None, "status": "STARTED", "last_updated": now}
    conn.execute(
        sa.update(_J)
        .where(_J.c.job_execution_id == job_execution_id)
        .values(**reopened, exit_code="UNKNOWN", exit_message="", version=sa.func.coalesce(_J.c.version, 0) + 1)
    )
    step = ensure_step(conn, job_execution_id, start, now)
    if step.end_time is not None:
        conn.execute(
            sa.update(_S)
            .where(_S.c.step_execution_id == step.step_execution_id)
            .values(**reopened, exit_code="EXECUTING", exit_message="", version=_S.c.version + 1)
        )


def finish(
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
    message = cut_exit_message(exit_message) if exit_message is not None else (job.exit_message or "")
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
    step = (
        step_of(conn, job_execution_id)
        if step_start is None
        else ensure_step(conn, job_execution_id, min(step_start, job_end), now)
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


def counts(read_count: int | None, write_count: int | None, skip_count: int | None) -> dict[str, int]:
    """The step's count columns that were given."""
    given = {"read_count": read_count, "write_count": write_count, "process_skip_count": skip_count}
    return {column: value for column, value in given.items() if value is not None}


@overload
def to_execution(row: sa.Row) -> Execution: ...
@overload
def to_execution(row: None) -> None: ...
@overload
def to_execution(row: sa.Row | None) -> Execution | None: ...
def to_execution(row: sa.Row | None) -> Execution | None:
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
        run_id=run_id_of(row.short_context),
    )
