"""Push-to-row latency: from the moment ``git push`` returned to the moment ``item_git`` first showed the pushed
commit (or a later push of the same project, which absorbs it: its content is live once a later commit is).

A watcher thread polls ``item_git`` every ``PERIOD`` seconds for the whole soak, quiescence included. Only pushes
that changed item.json to a well-formed document count; a push no row ever showed is counted apart, and
:mod:`devstack.soak.unseen` says why (its project deleted or moved out of scope before IMRT showed it, ...).

The same watcher notes every ``item_git`` row that disappears, with where its project was in the bank at that
moment (``locate``: the project's full path, None when the bank no longer has it), and every change of a row's
commit: see :mod:`devstack.soak.row_history`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from .journal import Push

PERIOD = 0.25


@dataclass(frozen=True)
class Vanished:
    project_id: int
    sha: str
    at: float  # time.monotonic() when the watcher noticed
    project_path: str | None  # where the bank had the project then (None: no such project any more)


@dataclass(frozen=True)
class Moved:
    """A row's ``current_commit_hash`` changed from ``before`` to ``after``."""

    project_id: int
    before: str
    after: str
    at: float  # time.monotonic() when the watcher noticed


class RowWatcher:
    """Records when each (project id, current_commit_hash) of ``item_git`` was first seen, and rows that vanish."""

    def __init__(self, engine: sa.Engine, locate: Callable[[int], str | None]) -> None:
        self.engine = engine
        self.locate = locate
        self.first_seen: dict[tuple[int, str], float] = {}
        self.vanished: list[Vanished] = []
        self.moves: list[Moved] = []
        self.errors = 0
        self._present: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-row-watcher", daemon=True)

    def __enter__(self) -> RowWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(10)
        self.look()

    def _loop(self) -> None:
        while not self._stop.wait(PERIOD):
            self.look()

    def look(self) -> None:
        now = time.monotonic()
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT project_id, current_commit_hash FROM item_git")).all()
        except sa.exc.SQLAlchemyError:
            self.errors += 1
            return
        for project_id, sha in rows:
            self.first_seen.setdefault((project_id, sha), now)
        present = dict(rows)
        for project_id in self._present.keys() - present.keys():
            self.vanished.append(Vanished(project_id, self._present[project_id], now, self.locate(project_id)))
        for project_id, sha in present.items():
            before = self._present.get(project_id)
            if before is not None and before != sha:
                self.moves.append(Moved(project_id, before, sha, now))
        self._present = present


@dataclass(frozen=True)
class Latency:
    measured: int
    unseen: int
    p50: float | None
    p95: float | None
    worst: float | None

    def describe(self) -> str:
        if not self.measured:
            return f"no push reached a row ({self.unseen} never seen)"
        return (
            f"p50 {self.p50:.1f} s, p95 {self.p95:.1f} s, max {self.worst:.1f} s over {self.measured} pushes "
            f"({self.unseen} pushes never seen in a row)"
        )


@dataclass(frozen=True)
class Counted:
    """A push the latency counts, with the shas whose row would show it: its own and those of the later counted
    pushes of its project (whose content is live once theirs is)."""

    push: Push
    shown_by: tuple[str, ...]


def counted_pushes(pushes: list[Push]) -> list[Counted]:
    counted = [push for push in pushes if push.expects_row]
    return [
        Counted(push, tuple(p.sha for p in counted[index:] if p.project_id == push.project_id))
        for index, push in enumerate(counted)
    ]


def first_shown(counted: Counted, first_seen: dict[tuple[int, str], float]) -> float | None:
    """When a row first showed the push or a later one of its project; None: never."""
    project_id = counted.push.project_id
    seen = [first_seen[(project_id, sha)] for sha in counted.shown_by if (project_id, sha) in first_seen]
    return min(seen) if seen else None


def push_latencies(pushes: list[Push], first_seen: dict[tuple[int, str], float]) -> tuple[list[float], list[Counted]]:
    """The latency of every counted push a row showed, and the counted pushes no row ever showed."""
    latencies, unseen = [], []
    for counted in counted_pushes(pushes):
        shown = first_shown(counted, first_seen)
        if shown is None:
            unseen.append(counted)
        else:
            latencies.append(max(0.0, shown - counted.push.returned_at))
    return latencies, unseen


def summarize(pushes: list[Push], first_seen: dict[tuple[int, str], float]) -> Latency:
    latencies, unseen = push_latencies(pushes, first_seen)
    if not latencies:
        return Latency(0, len(unseen), None, None, None)
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[18] if len(latencies) > 1 else latencies[0]
    return Latency(len(latencies), len(unseen), statistics.median(latencies), p95, max(latencies))
