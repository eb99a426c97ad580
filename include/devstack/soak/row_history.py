"""What the rows did during the soak, which the final comparison cannot see once a later run repairs it.

**Rows deleted while their project was still in the bank**: transient data loss.

IMRT may delete an item only when its project is gone (deleted) or left the group and its subgroups (transferred
out). Every ``item_git`` row that vanished during the soak (:class:`devstack.soak.latency.RowWatcher`) is judged by
where the bank had its project when the row was seen gone: nowhere or outside the scope, the deletion was right; in
the group or a subgroup, it was wrong, unless the project had been transferred out before (it may have come back
since, after IMRT rightly deleted it).

**Rows that went back** to an older commit: a row showing the k-th item.json push of its project that later shows
an earlier one, which no run should write (runs are one at a time, and each writes the commit it read at its head).
"""

from __future__ import annotations

from dataclasses import dataclass

from .journal import DONE, Journal, Push
from .latency import Moved, Vanished
from .stack import GROUP


@dataclass(frozen=True)
class WrongDeletion:
    vanished: Vanished
    at: float  # soak seconds

    def describe(self) -> str:
        return (
            f"item_git row of project {self.vanished.project_id} (at {self.vanished.sha[:10]}) deleted at "
            f"{self.at:.1f} s while the project was at {self.vanished.project_path}"
        )


def in_scope(path: str | None) -> bool:
    return path is not None and path.startswith(GROUP + "/")


def was_moved_out(journal: Journal, project_id: int, before: float) -> bool:
    return any(e.kind == "transfer_out" and e.outcome == DONE and e.at <= before for e in journal.history(project_id))


def wrong_deletions(vanished: list[Vanished], journal: Journal) -> list[WrongDeletion]:
    found = []
    for gone in vanished:
        at = gone.at - journal.started
        if in_scope(gone.project_path) and not was_moved_out(journal, gone.project_id, at):
            found.append(WrongDeletion(gone, at))
    return found


@dataclass(frozen=True)
class WentBack:
    moved: Moved
    at: float  # soak seconds

    def describe(self) -> str:
        return (
            f"item_git row of project {self.moved.project_id} went back from {self.moved.before[:10]} to the "
            f"older push {self.moved.after[:10]} at {self.at:.1f} s"
        )


def went_back(moves: list[Moved], pushes: list[Push], journal: Journal) -> list[WentBack]:
    order = {(p.project_id, p.sha): index for index, p in enumerate(pushes) if p.expects_row}
    found = []
    for move in moves:
        before, after = order.get((move.project_id, move.before)), order.get((move.project_id, move.after))
        if before is not None and after is not None and after < before:
            found.append(WentBack(move, move.at - journal.started))
    return found
