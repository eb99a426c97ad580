"""The contract between the tasks of the ``item_synchronization`` DAG: their ids, and one XCom per payload type,
each named, typed and owned by one task.

What travels, ``task: key (payload)``, who pushes it and who reads it:

* ``list_ids: return_value`` (list[WorkUnit]), when planned: ``sync`` is mapped over it; ``summary``.
* ``list_ids: plan`` (PlanView), when planned: ``dispatch_webhooks``, ``summary``.
* ``list_ids: jobExecutionId`` (int), when planned, except in a run of the hook events: operators
  (docs/how-a-run-works.md).
* ``list_ids: listing_failure`` (ListingFailure), when planning failed: ``summary``, the failure alert.
* ``sync: unit_outcome`` (UnitOutcome), by every instance, also one that then fails: ``summary``.
* ``dispatch_webhooks: hooks_outcome`` (WebhooksOutcome), also when the task then fails: ``summary``.
* ``summary: outcome`` (Verdict), also when the task then fails: the failure alert.

The payloads are the plain values of :mod:`imrt_sync.contracts`. The DAG hands a task what it reads as TaskFlow
arguments (:meth:`XComSlot.arg`), so its wiring shows every data edge; a task reports through its slots
(:meth:`XComSlot.push`); the failure alert pulls (:meth:`XComSlot.pull`); the dev tools (``make run``, the benchmark,
the soak) read the REST API (:meth:`XComSlot.rest_path`). The tests and the documentation read ``return_value``,
``plan``, ``jobExecutionId`` and ``summary``'s ``outcome`` through the REST API too: keep those keys.

Nothing here imports Airflow (the dev tools import this module in processes that run no Airflow);
:meth:`XComSlot.arg` does, when the DAG is parsed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar
from urllib.parse import quote

from imrt_sync import DAG_ID

if TYPE_CHECKING:
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    from imrt_sync.contracts import ListingFailure, PlanView, UnitOutcome, Verdict, WebhooksOutcome, WorkUnit

T = TypeVar("T")

LIST_IDS: Final = "list_ids"
SYNC: Final = "sync"
DISPATCH_WEBHOOKS: Final = "dispatch_webhooks"
SUMMARY: Final = "summary"
TASK_IDS: Final = (LIST_IDS, SYNC, DISPATCH_WEBHOOKS, SUMMARY)
"""The tasks of a run, in the order they run."""


class PushesXComs(Protocol):
    def xcom_push(self, key: str, value: Any) -> None: ...


class PullsXComs(Protocol):
    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any: ...


@dataclass(frozen=True)
class XComSlot(Generic[T]):
    """The XCom ``key`` of task ``task_id``, holding one payload type ``T``."""

    task_id: str
    key: str

    def push(self, ti: PushesXComs, value: T) -> None:
        """Publish ``value`` from the task instance ``ti`` of the owning task."""
        ti.xcom_push(key=self.key, value=value)

    def pull(self, ti: PullsXComs) -> T | None:
        """The value the (unmapped) owning task published in ``ti``'s run; None when it published none."""
        return ti.xcom_pull(task_ids=self.task_id, key=self.key, map_indexes=-1)

    def arg(self, upstream: PlainXComArg) -> PlainXComArg:
        """This slot as a TaskFlow argument of a downstream task: ``upstream`` is the owning task's output in the DAG.
        It resolves to None when the owning task did not push it (it failed, or ended before), where Airflow would
        fail the downstream task before its body runs (``imrt_compat.optional_xcom``); from a mapped task, to the
        sequence of what its instances pushed."""
        from .optional_xcom import OptionalXComArg

        if upstream.operator.task_id != self.task_id:
            raise ValueError(f"XCom {self.key!r} is pushed by task {self.task_id!r}, not {upstream.operator.task_id!r}")
        return OptionalXComArg(operator=upstream.operator, key=self.key)

    def rest_path(self, run_id: str) -> str:
        """Where the REST API answers with the value of the run ``run_id`` (an unmapped task's)."""
        run = quote(run_id, safe="")
        return f"/api/v2/dags/{DAG_ID}/dagRuns/{run}/taskInstances/{self.task_id}/xcomEntries/{self.key}"

    def rest_value(self, entry: Mapping[str, Any]) -> T:
        """The value in the REST API's answer at :meth:`rest_path` (a JSON text where the API did not decode it)."""
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value


UNITS: Final[XComSlot[list[WorkUnit]]] = XComSlot(LIST_IDS, "return_value")
PLAN: Final[XComSlot[PlanView]] = XComSlot(LIST_IDS, "plan")
JOB_EXECUTION_ID: Final[XComSlot[int]] = XComSlot(LIST_IDS, "jobExecutionId")
LISTING_FAILURE: Final[XComSlot[ListingFailure]] = XComSlot(LIST_IDS, "listing_failure")
UNIT_OUTCOME: Final[XComSlot[UnitOutcome]] = XComSlot(SYNC, "unit_outcome")
HOOKS_OUTCOME: Final[XComSlot[WebhooksOutcome]] = XComSlot(DISPATCH_WEBHOOKS, "hooks_outcome")
VERDICT: Final[XComSlot[Verdict]] = XComSlot(SUMMARY, "outcome")
