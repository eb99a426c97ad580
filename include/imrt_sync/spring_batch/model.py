"""The values of the Spring Batch mirror: its constants, an execution as read back, the outcome of an abandon, and
the one context format that links an execution to a run of the workflow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import overload

from .. import DAG_ID
from ..errors import PermanentError
from ..schema import EXIT_MESSAGE_LIMIT

JOB_NAME = "itemSynchronizationJob"
STEP_NAME = "itemSynchronizationStep"
JOB_KEY = "d41d8cd98f00b204e9800998ecf8427e"  # MD5 of "" (empty job parameters)
FINAL_STATUSES = ("COMPLETED", "FAILED", "ABANDONED", "STOPPED")

CONTEXT_PREFIX = '{"dagId"'


@dataclass(frozen=True)
class Execution:
    """One ``batch_job_execution`` row and the run linked to it (None when none is)."""

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
    """What abandoning the job instance did.

    ``kind``: ``"not_found"`` (no such job instance), ``"none"`` (nothing was running) or ``"abandoned"``.
    ``job_execution_ids``: the executions abandoned, oldest first; ``run_ids``: the runs linked to them, for the
    caller to stop.
    """

    kind: str
    job_instance_id: int
    job_name: str | None = None
    job_execution_ids: tuple[int, ...] = ()
    run_ids: tuple[str, ...] = ()


class RunAlreadyLinkedError(ValueError, PermanentError):
    """The run is already linked to another job execution."""


def cut_exit_message(text: str | None) -> str:
    """An exit message as the 2,500-character columns hold it: cut with "..." when longer; NUL (which PostgreSQL
    text cannot store) removed."""
    text = (text or "").replace("\x00", "")
    return text if len(text) <= EXIT_MESSAGE_LIMIT else text[: EXIT_MESSAGE_LIMIT - 3] + "..."


def context_json(run_id: str | None) -> str:
    """The ``short_context`` this mirror writes: ``{"dagId": "item_synchronization", "runId": "<run_id>"}``."""
    return json.dumps({"dagId": DAG_ID, "runId": run_id}, ensure_ascii=False)


def parse_context(short_context: str | None) -> dict | None:
    """The context this mirror wrote, or None (a legacy Java execution's, or none)."""
    if not short_context or not short_context.startswith(CONTEXT_PREFIX):
        return None
    try:
        value = json.loads(short_context)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("dagId") == DAG_ID else None


def run_id_of(short_context: str | None) -> str | None:
    context = parse_context(short_context)
    run_id = context.get("runId") if context else None
    return run_id if isinstance(run_id, str) else None


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@overload
def naive_utc(value: datetime) -> datetime: ...
@overload
def naive_utc(value: None) -> None: ...
def naive_utc(value: datetime | None) -> datetime | None:
    """The timestamp as the legacy columns hold it: naive UTC (``TIMESTAMP`` without time zone)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
