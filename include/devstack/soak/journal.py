"""What the soak did: every action with its outcome, and every push with the time ``git push`` returned.

Outcomes: ``done`` (the action happened: a push landed, a route answered as it does when it acts, a run started),
``refused`` (the system said no, as it may: a 409 from ``/sync`` while a run is active, a push GitLab refused) and
``skipped`` (nothing to act on: no archived project to unarchive, no running ``sync`` task to kill) and ``error``
(the soak's own call failed unexpectedly: reported, never expected). Only ``done`` counts as the kind having
happened.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

DONE, REFUSED, SKIPPED, ERROR = "done", "refused", "skipped", "error"


@dataclass(frozen=True)
class Entry:
    at: float  # seconds since the soak started
    kind: str
    outcome: str
    detail: str
    projects: tuple[int, ...] = ()  # the GitLab project ids the action touched

    def line(self) -> str:
        where = f" project {', '.join(map(str, self.projects))}" if self.projects else ""
        return f"{self.at:7.1f} s  {self.kind}{where}: {self.outcome}{', ' if self.detail else ''}{self.detail}"


@dataclass(frozen=True)
class Push:
    """One ``git push`` that landed. ``expects_row``: it changed ``item.json`` to a well-formed document, so a row
    is expected to show this commit (or a later one of the same project). ``position``: how many journal entries
    were recorded before it (the entries from that index on came after the push)."""

    project_id: int
    sha: str
    returned_at: float  # time.monotonic() when git push returned
    expects_row: bool
    position: int


class Journal:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.entries: list[Entry] = []
        self.pushes: list[Push] = []
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record(
        self, kind: str, outcome: str, detail: str = "", project_id: int | tuple[int, ...] | None = None
    ) -> Entry:
        """``project_id``: the project the action touched, or a tuple of them."""
        projects = () if project_id is None else project_id if isinstance(project_id, tuple) else (project_id,)
        entry = Entry(round(self.elapsed(), 1), kind, outcome, detail, projects)
        with self._lock:
            self.entries.append(entry)
        return entry

    def pushed(self, project_id: int, sha: str, *, expects_row: bool) -> None:
        with self._lock:
            self.pushes.append(Push(project_id, sha, time.monotonic(), expects_row, len(self.entries)))

    def done_kinds(self) -> set[str]:
        with self._lock:
            return {e.kind for e in self.entries if e.outcome == DONE}

    def counts(self) -> dict[str, Counter]:
        """Per kind, how many entries of each outcome."""
        found: dict[str, Counter] = defaultdict(Counter)
        with self._lock:
            for entry in self.entries:
                found[entry.kind][entry.outcome] += 1
        return dict(found)

    def history(self, project_id: int, since: int = 0) -> list[Entry]:
        """Every entry that touched the project, oldest first; ``since``: from that index of the entries on."""
        with self._lock:
            return [e for e in self.entries[since:] if project_id in e.projects]
