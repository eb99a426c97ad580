"""Planning a run: which items to sync, which to delete, which projects lack the webhook. Pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProjectState:
    """What GitLab says about one project of the group."""

    project_id: int
    path: str
    default_branch: str | None
    head: str | None
    has_webhook: bool


@dataclass(frozen=True)
class DeletionGuard:
    minimum: int = 5
    ratio: float = 0.10

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

    def as_dict(self) -> dict:
        return {
            "total_ids": self.total_ids,
            "to_sync": list(self.to_sync),
            "unchanged": len(self.unchanged),
            "empty": list(self.empty),
            "to_delete": list(self.to_delete),
            "gone": list(self.gone),
            "missing_webhook": list(self.missing_webhook),
            "deletion_blocked": self.deletion_blocked,
        }


def plan_run(
    projects: list[ProjectState],
    recorded_heads: dict[int, str],
    *,
    full: bool,
    guard: DeletionGuard,
    listing_complete: bool,
    only_ids: tuple[int, ...] = (),
) -> Plan:
    """Decide the work of a run.

    ``recorded_heads`` maps project id to ``item_git.current_commit_hash`` for the items in scope.
    ``listing_complete`` says that ``projects`` is every project in scope (so a recorded item that is not there
    is gone); an empty listing never counts as complete for deletions.
    """
    listed = {p.project_id: p for p in projects}
    empty = sorted(p.project_id for p in projects if p.head is None)
    to_sync = sorted(
        p.project_id for p in projects if p.head is not None and (full or recorded_heads.get(p.project_id) != p.head)
    )
    unchanged = sorted(
        p.project_id for p in projects if p.head is not None and p.project_id not in to_sync
    )
    gone = sorted(pid for pid in recorded_heads if pid not in listed) if listing_complete else []
    to_delete, blocked = _guarded_deletions(gone, len(recorded_heads), projects, guard, only_ids)
    return Plan(
        total_ids=len(projects),
        to_sync=tuple(to_sync),
        unchanged=tuple(unchanged),
        empty=tuple(empty),
        to_delete=tuple(to_delete),
        gone=tuple(gone),
        missing_webhook=tuple(sorted(p.project_id for p in projects if not p.has_webhook)),
        deletion_blocked=blocked,
    )


def _guarded_deletions(
    gone: list[int], recorded: int, projects: list[ProjectState], guard: DeletionGuard, only_ids: tuple[int, ...]
) -> tuple[list[int], str]:
    if not gone:
        return [], ""
    if not projects and not only_ids:
        return [], (
            f"the GitLab listing returned no projects while IMRT has {recorded} items: "
            f"refusing to delete {len(gone)} items (check the group and the token's access)"
        )
    limit = guard.limit(recorded)
    if len(gone) > limit:
        return [], (
            f"{len(gone)} of {recorded} items would be deleted, more than the deletion guard allows "
            f"(max({guard.minimum}, {guard.ratio:.0%}) = {limit}): deleted nothing. "
            "If this is intended, raise imrt_deletion_guard_min or imrt_deletion_guard_ratio for one run"
        )
    return gone, ""


def work_units(
    to_sync: list[int], to_delete: list[int], bound: int, names: dict[int, str], batch_size: int = 1
) -> list[dict]:
    """Group the work into at most ``bound`` units: one item per unit while that fits, else batches of items.

    A batch holds at least ``batch_size`` items: every unit costs a task instance's start-up (fork, DAG parse,
    Execution API calls), so a full run of a large bank goes fastest in a few dozen big units, not ``bound`` small
    ones. ``names`` gives the item id (the project path) of a project id, for the unit's label.
    """
    if bound < 1 or batch_size < 1:
        raise ValueError("the mapping bound and the batch size must be at least 1")
    work = [("sync", pid) for pid in to_sync] + [("delete", pid) for pid in to_delete]
    if not work:
        return []
    size = 1 if len(work) <= bound else max(batch_size, math.ceil(len(work) / bound))
    units = []
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
