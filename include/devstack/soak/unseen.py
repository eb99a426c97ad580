"""Why a push was never seen in a row: each push the latency counts (:mod:`devstack.soak.latency`) for which no
``item_git`` row ever showed it or a later item.json push of its project, explained by what the soak knows of its
project: the journal after the push, and the end state (the oracle's expected item, the final rows).

The reasons, tried in this order:

* **project deleted later**: a ``delete`` of the project was done after the push, and the bank expects no item of
  it at the end. IMRT rightly deleted the row, and had only until then to show the push;
* **moved out of scope later**: the last ``transfer_out``/``transfer_back`` done after the push was a transfer out,
  and the bank expects no item of it in the group at the end: the same, for a project that left the group;
* **in the final rows, missed by the watcher**: the rows read after quiescence show the push or a later one. The
  watcher's last look is after quiescence too, so this should not happen: it would be the soak's fault, not IMRT's;
* **no item.json that parses at the end**: the project is in scope but the oracle expects no item of it;
* **superseded by a malformed head**: the head's item.json is malformed and the oracle expects an earlier commit
  (the rows the item had before the push);
* **unexplained**: none of these. The project is in scope at the end and the bank expects this push or a later one,
  yet no row ever showed either: IMRT lost the push (the comparison then finds its row stale or missing too; this
  names the push).

Archived projects and access are no reason: IMRT syncs archived projects, and at the end the soak has given the sync
user back its access (visibility does not matter to a Maintainer of the group), so each such push is unexplained.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .compare import Row
from .journal import DONE, Entry, Journal
from .latency import Counted
from .oracle import Expected

DELETED = "project deleted later"
MOVED_OUT = "moved out of scope later"
WATCHER_MISSED = "in the final rows, missed by the watcher"
NEVER_PARSED = "no item.json that parses at the end"
MALFORMED = "superseded by a malformed head"
UNEXPLAINED = "unexplained"
REASONS = (DELETED, MOVED_OUT, WATCHER_MISSED, NEVER_PARSED, MALFORMED, UNEXPLAINED)

DEPARTURES = {"delete": DELETED, "transfer_out": MOVED_OUT}
SCOPE_CHANGES = ("delete", "transfer_out", "transfer_back")


@dataclass(frozen=True)
class EndState:
    """The bank's expected items and IMRT's ``item_git`` commits at the end, by GitLab project id."""

    expected: dict[int, Expected]
    rows: dict[int, str]

    @classmethod
    def of(cls, expected: list[Expected], rows: list[Row]) -> EndState:
        return cls(
            {e.project_id: e for e in expected if e.project_id is not None},
            {r.project_id: r.sha for r in rows if r.project_id is not None and r.sha is not None},
        )


@dataclass(frozen=True)
class Unseen:
    counted: Counted
    reason: str
    at: float  # soak seconds when git push returned
    departed_after: float | None = None  # seconds from the push to its project's deletion or move out
    expected: Expected | None = None
    row_sha: str | None = None

    def describe(self) -> str:
        push = self.counted.push
        want = f"bank expects {self.expected.sha[:10]}" if self.expected else "bank expects no item"
        return (
            f"push {push.sha[:10]} to project {push.project_id} at {self.at:.1f} s: {self.reason}; {want}, "
            f"row at {(self.row_sha or '-')[:10]}"
        )


def departure(journal: Journal, counted: Counted) -> Entry | None:
    """The deletion of the push's project, or its last move out of scope when it never came back; None when, as far
    as the journal says, the project was in scope at the end."""
    after = journal.history(counted.push.project_id, since=counted.push.position)
    changes = [e for e in after if e.kind in SCOPE_CHANGES and e.outcome == DONE]
    return changes[-1] if changes and changes[-1].kind in DEPARTURES else None


def end_state_reason(counted: Counted, expected: Expected | None, row_sha: str | None) -> str:
    if row_sha in counted.shown_by:
        return WATCHER_MISSED
    if expected is None:
        return NEVER_PARSED
    if expected.head_malformed and expected.sha not in counted.shown_by:
        return MALFORMED
    return UNEXPLAINED


def classify(counted: Counted, journal: Journal, end: EndState) -> Unseen:
    project_id = counted.push.project_id
    at = counted.push.returned_at - journal.started
    expected, row_sha = end.expected.get(project_id), end.rows.get(project_id)
    gone = departure(journal, counted)
    if gone is not None and expected is None:
        return Unseen(counted, DEPARTURES[gone.kind], at, max(0.0, gone.at - at), expected, row_sha)
    return Unseen(counted, end_state_reason(counted, expected, row_sha), at, None, expected, row_sha)


def classify_unseen(unseen: list[Counted], journal: Journal, end: EndState) -> list[Unseen]:
    return [classify(counted, journal, end) for counted in unseen]


def count(unseen: list[Unseen], reason: str) -> int:
    return sum(u.reason == reason for u in unseen)


def breakdown(unseen: list[Unseen]) -> str:
    """``5 pushes never seen in a row: 3 project deleted later (gone at most 37 s after the push), ...``"""
    counts = Counter(u.reason for u in unseen)
    parts = []
    for reason in REASONS:
        waits = [u.departed_after for u in unseen if u.reason == reason and u.departed_after is not None]
        parts.append(
            f"{counts[reason]} {reason}" + (f" (gone at most {max(waits):.0f} s after the push)" if waits else "")
        )
    return f"{len(unseen)} pushes never seen in a row: " + ", ".join(parts)
