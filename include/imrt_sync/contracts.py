"""What the steps of a run hand each other: small JSON values (they travel between task instances), typed.

A run is ``open_run`` -> ``sync_unit`` per :class:`WorkUnit` -> ``dispatch_webhooks`` -> ``close_run``
(:mod:`imrt_sync.pipeline`); every value here is a plain ``dict`` of plain values at run time (kinds are ``Literal``
strings), so it serialises as it is. Where each travels between the workflow's tasks: ``imrt_compat.task_contract``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from .config import RunParams


VerdictStatus = Literal["COMPLETED", "FAILED"]
"""How a run ended, in Spring Batch's words (``batch_job_execution.exit_code``)."""


class WorkUnit(TypedDict):
    """The items one ``sync`` task instance handles; ``label`` names it (an item id, or a range of them)."""

    label: str
    sync: list[int]
    delete: list[int]


class PlanView(TypedDict):
    """The run's plan (:meth:`imrt_sync.planning.Plan.as_dict`). Project ids are numbers, except as keys of
    ``failed`` (JSON object keys are strings)."""

    total_ids: int
    to_sync: list[int]
    unchanged: int
    empty: list[int]
    to_delete: list[int]
    gone: list[int]
    missing_webhook: list[int]
    deletion_blocked: str
    failed: dict[str, str]
    verify_webhooks: NotRequired[list[int]]  # absent from plans made before the sweep


class Planned(TypedDict):
    """What ``open_run`` gives: the plan, the work units, and the Spring Batch execution the run is recorded in
    (None for a run of the hook events, which is recorded in ``imrt_webhook_event`` instead)."""

    plan: PlanView
    units: list[WorkUnit]
    job_execution_id: int | None


class ListingFailure(TypedDict):
    """Why ``open_run`` could not plan the run (:func:`imrt_sync.pipeline.describe_listing_failure`): the summary puts
    it in the exit message."""

    error: str


class UnitOutcome(TypedDict):
    """What one work unit did: the item events written by project id, the failures by project id (with their
    messages), and whether a failure may go away on a retry."""

    label: str
    events: dict[str, str]
    failed: dict[str, str]
    transient: bool


class WebhooksOutcome(TypedDict):
    """What ``dispatch_webhooks`` did for the projects without a working hook."""

    missing: int
    created: list[int]
    updated: list[int]
    replaced: list[int]
    failed: dict[str, str]
    transient: bool
    on_other_secret: int | None


class Verdict(TypedDict):
    """The run's end: ``COMPLETED`` or ``FAILED``, the legacy exit message, the Spring Batch step counts, and the
    counts the metrics and the asset event carry."""

    status: VerdictStatus
    message: str
    read_count: int
    write_count: int
    skip_count: int
    synced_count: int
    failed_count: int
    deleted_count: int


@dataclass(frozen=True)
class RunContext:
    """The run a step belongs to: its id, its parameters and when it started (None: now)."""

    run_id: str
    params: RunParams
    started_at: datetime | None = None


@dataclass(frozen=True)
class RunResults:
    """What ``close_run`` judges: the plan and units (None and empty when planning failed, ``listing_error``
    saying why), the outcomes the units reported, and the hooks outcome (None when that step did not report)."""

    plan: PlanView | None
    units: list[WorkUnit] = field(default_factory=list)
    unit_outcomes: list[UnitOutcome | None] = field(default_factory=list)
    hooks: WebhooksOutcome | None = None
    listing_error: str | None = None


def no_webhooks(missing: int = 0) -> WebhooksOutcome:
    """A hooks outcome in which nothing was done (yet)."""
    return {
        "missing": missing,
        "created": [],
        "updated": [],
        "replaced": [],
        "failed": {},
        "transient": False,
        "on_other_secret": None,
    }
