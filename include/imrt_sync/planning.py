"""Planning a run: which items to sync, which to delete, which projects lack the webhook. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from .contracts import PlanView, WorkUnit


@dataclass(frozen=True)
class ProjectState:
    """What GitLab says about one project of the group."""

    project_id: int
    path: str
    default_branch: str | None
    head: str | None
    has_webhook: bool | None  # None: its hooks were not read by the listing (the sweep checks them on evidence)
    source_head: str | None = None  # the head of the create_<user> branch of an item still being created


@dataclass(frozen=True)
class DeletionGuard:
    """A run deletes at most ``max(minimum, floor(ratio × items in item_git))`` items, else none."""

    minimum: int = 5
    ratio: float = 0.10

    def __post_init__(self) -> None:
        if isinstance(self.minimum, bool) or not isinstance(self.minimum, int) or self.minimum < 0:
            raise ValueError(
                f"imrt_deletion_guard_min must be a whole number of items, 0 or more, not {self.minimum!r}"
            )
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not 0 < self.ratio <= 1:
            raise ValueError(
                f"imrt_deletion_guard_ratio must be a share of the items in item_git in (0, 1], e.g. 0.10, "
                f"not {self.ratio!r}"
            )

    def limit(self, recorded: int) -> int:
        return max(self.minimum, math.floor(self.ratio * recorded))


@dataclass(frozen=True)
class Plan:
    total_ids: int
    to_sync: tuple[int, ...]
    unchanged: tuple[int, ...]
    empty: tuple[int, ...]
    to_delete: tuple[int, ...]
    missing_webhook: tuple[int, ...]
    deletion_blocked: str = ""
    gone: tuple[int, ...] = field(default=())
    failed: dict[int, str] = field(default_factory=dict)  # projects of the listing whose state could not be read
    verify_webhooks: tuple[int, ...] = ()  # projects whose hooks dispatch_webhooks checks, and fixes if need be

    def without_deletions(self, reason: str) -> Plan:
        """This plan with no deletion: every item whose project is missing fails with ``reason`` instead."""
        withheld = {
            pid: f"project {pid}: missing from the item bank listing, not deleted: {reason}" for pid in self.gone
        }
        return replace(self, to_delete=(), deletion_blocked="", failed={**self.failed, **withheld})

    def as_dict(self) -> PlanView:
        return {
            "total_ids": self.total_ids,
            "to_sync": list(self.to_sync),
            "unchanged": len(self.unchanged),
            "empty": list(self.empty),
            "to_delete": list(self.to_delete),
            "gone": list(self.gone),
            "missing_webhook": list(self.missing_webhook),
            "deletion_blocked": self.deletion_blocked,
            "failed": {str(pid): message for pid, message in sorted(self.failed.items())},
            "verify_webhooks": list(self.verify_webhooks),
        }


def plan_run(
    projects: list[ProjectState],
    recorded_heads: Mapping[int, str | None],
    *,
    full: bool,
    guard: DeletionGuard,
    listing_complete: bool,
    items_total: int,
    only_ids: tuple[int, ...] = (),
    unreadable: Mapping[int, str] | None = None,
    recorded_source_heads: Mapping[int, str | None] | None = None,
) -> Plan:
    """Decide the work of a run.

    ``recorded_heads`` maps project id to the branch head recorded at its last sync (None for an item only the legacy
    service synced) for the items in scope (the requested ones in a targeted run); ``items_total`` is the number of
    items in ``item_git``, which the deletion guard counts over whatever the run's scope. ``listing_complete`` says
    that ``projects`` is every project in scope (so a recorded item that is not there is a candidate for deletion,
    confirmed gone by the sync task before it is deleted); an empty listing never counts as complete for deletions.
    ``unreadable`` holds the listed projects whose head or hooks could not be read, with the error: they are skipped,
    reported, and the run deletes nothing.
    ``recorded_source_heads`` maps each item still being created to the head its ``create_<user>`` branch had at its
    last sync: such an item is also synced when that branch moved (its ``source_head`` differs), since its default
    branch does not.
    """
    unreadable = dict(unreadable or {})
    source_heads = dict(recorded_source_heads or {})
    listed = {p.project_id for p in projects} | set(unreadable)
    empty = sorted(p.project_id for p in projects if p.head is None)
    to_sync = sorted(
        p.project_id for p in projects if p.head is not None and (full or _changed(p, recorded_heads, source_heads))
    )
    unchanged = sorted(p.project_id for p in projects if p.head is not None and p.project_id not in to_sync)
    gone = sorted(pid for pid in recorded_heads if pid not in listed) if listing_complete else []
    to_delete, blocked = _guarded_deletions(gone, items_total, projects, guard, only_ids, unreadable)
    return Plan(
        total_ids=len(listed),
        to_sync=tuple(to_sync),
        unchanged=tuple(unchanged),
        empty=tuple(empty),
        to_delete=tuple(to_delete),
        gone=tuple(gone),
        missing_webhook=tuple(sorted(p.project_id for p in projects if p.has_webhook is False)),
        deletion_blocked=blocked,
        failed=unreadable,
    )


def webhooks_to_verify(
    listed: Iterable[int],
    changed: Iterable[int],
    *,
    hooked: AbstractSet[int],
    delivered: AbstractSet[int],
    checked_at: Mapping[int, datetime],
    full: bool,
    rotation: HookRotation,
) -> tuple[int, ...]:
    """The listed projects whose hooks a sweep run checks, instead of listing every project's hooks.

    All of them in a full run or with ``rotation.days`` 0; otherwise the projects without a hook IMRT recorded
    (``hooked``: new to IMRT), the ``changed`` ones no hook delivery announced (``delivered``: a push received for
    the head the listing found; a change without one is the evidence of a broken hook), and the rotation's
    (:class:`HookRotation`; ``checked_at``: when each project's hooks were last checked, never when absent).
    """
    listed = sorted(set(listed))
    if full or rotation.days == 0:
        return tuple(listed)
    new = {pid for pid in listed if pid not in hooked}
    wanted = new | (set(changed) - delivered) | rotation.due(listed, checked_at)
    return tuple(pid for pid in listed if pid in wanted)


@dataclass(frozen=True)
class HookRotation:
    """When every hook is checked again: each ``days`` days. ``spread`` False: a run checks every hook last checked
    ``days`` or more days before ``now`` (hooks checked together come due together: after a first sync, one run a
    week checks them all, the other runs none); True: each run checks the ``ceil(projects / days)`` hooks checked
    longest ago (the same work every night)."""

    days: int
    spread: bool
    now: datetime

    def due(self, listed: list[int], checked_at: Mapping[int, datetime]) -> set[int]:
        never = datetime.min.replace(tzinfo=UTC)
        if self.spread:
            share = math.ceil(len(listed) / self.days)
            return set(sorted(listed, key=lambda pid: (checked_at.get(pid, never), pid))[:share])
        cutoff = self.now - timedelta(days=self.days)
        return {pid for pid in listed if checked_at.get(pid, never) <= cutoff}


def _changed(
    project: ProjectState, recorded_heads: Mapping[int, str | None], source_heads: Mapping[int, str | None]
) -> bool:
    """The default branch moved since the last sync, or the create branch of an item still being created did."""
    if recorded_heads.get(project.project_id) != project.head:
        return True
    return project.project_id in source_heads and source_heads[project.project_id] != project.source_head


def _guarded_deletions(
    gone: list[int],
    items_total: int,
    projects: list[ProjectState],
    guard: DeletionGuard,
    only_ids: tuple[int, ...],
    unreadable: dict[int, str],
) -> tuple[list[int], str]:
    if not gone:
        return [], ""
    if unreadable:
        return [], (
            f"{len(unreadable)} listed projects could not be read, so GitLab did not answer for the whole group: "
            f"deleted none of the {len(gone)} items whose project is missing; a run that reads every project will"
        )
    if not projects and not only_ids:
        return [], (
            f"the GitLab listing returned no projects while IMRT has {items_total} items: "
            f"refusing to delete {len(gone)} items (check the group and the token's access)"
        )
    limit = guard.limit(items_total)
    if len(gone) > limit:
        return [], (
            f"{len(gone)} of {items_total} items would be deleted, more than the deletion guard allows "
            f"(max({guard.minimum}, {guard.ratio:.0%}) = {limit}): deleted nothing. "
            "If this is intended, raise imrt_deletion_guard_min or imrt_deletion_guard_ratio for one run"
        )
    return gone, ""


def work_units(
    to_sync: list[int],
    to_delete: list[int],
    bound: int,
    names: dict[int, str],
    batch_size: int = 1,
    one_per_item: int | None = None,
) -> list[WorkUnit]:
    """Group the work into at most ``bound`` units: one item per unit for work of up to ``one_per_item`` items (and
    ``bound``; None: ``bound``), else batches of items.

    A batch holds at least ``batch_size`` items: every unit costs a task instance's start-up (fork, DAG parse,
    Execution API calls, about 2.5 s of a slot on 2 cores), so a run of many items goes fastest in a few big units,
    not one per item. ``names`` gives the item id (the project path) of a project id, for the unit's label.
    """
    if bound < 1 or batch_size < 1:
        raise ValueError("the mapping bound and the batch size must be at least 1")
    alone = bound if one_per_item is None else min(one_per_item, bound)
    work = [("sync", pid) for pid in to_sync] + [("delete", pid) for pid in to_delete]
    if not work:
        return []
    size = 1 if len(work) <= alone else max(batch_size, math.ceil(len(work) / bound))
    units: list[WorkUnit] = []
    for start in range(0, len(work), size):
        chunk = work[start : start + size]
        first, last = (names.get(pid, f"project {pid}") for pid in (chunk[0][1], chunk[-1][1]))
        units.append(
            {
                "label": first if len(chunk) == 1 else f"{first}..{last} ({len(chunk)} items)",
                "sync": [pid for action, pid in chunk if action == "sync"],
                "delete": [pid for action, pid in chunk if action == "delete"],
            }
        )
    return units
