"""What every action shares: the stack, the seeded random source, the journal, the developer's git, the REST client,
the soak's own memory of what it did to projects (which heads it made malformed) and its follow-ups (what an action
must undo later: access to restore, a fault window to close, a scheduler to start again)."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from imrt_sync import DAG_ID, EVENTS_DAG_ID

from .bankrest import BankRest
from .gitclient import DeveloperGit
from .journal import Journal
from .stack import GROUP, OUTSIDE, SoakStack

ACTIVE_RUN_STATES = ("queued", "running")


@dataclass
class FollowUp:
    due: float  # time.monotonic()
    name: str
    action: Callable[[], None]


@dataclass
class FollowUps:
    """Deferred steps, run when due (each loop turn) or all at once when the soak ends."""

    pending: list[FollowUp] = field(default_factory=list)

    def add(self, after_seconds: float, name: str, action: Callable[[], None]) -> None:
        self.pending.append(FollowUp(time.monotonic() + after_seconds, name, action))

    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.pending)

    def run_due(self) -> None:
        now = time.monotonic()
        for follow_up in [f for f in self.pending if f.due <= now]:
            self.pending.remove(follow_up)
            follow_up.action()

    def run_all(self) -> None:
        while self.pending:
            self.pending.pop(0).action()


@dataclass
class World:
    stack: SoakStack
    rng: random.Random
    journal: Journal
    git: DeveloperGit
    rest: BankRest
    ends_at: float  # time.monotonic() when the action phase ends
    follow_ups: FollowUps = field(default_factory=FollowUps)
    malformed: dict[int, str] = field(default_factory=dict)  # project id -> the well-formed item.json sha before
    new_ids: itertools.count = field(default_factory=lambda: itertools.count(320000))
    scheduler_down: bool = False
    access_removed: bool = False
    fault_window: str = ""
    _active_runs_cache: tuple[float, list[dict]] = (float("-inf"), [])

    # ---------------------------------------------------------------------------------------- the bank's projects

    @property
    def bank(self):
        return self.stack.bank

    def projects_in_scope(self) -> list[dict]:
        """The group's and its subgroups' projects, as the item bank's store has them now."""
        return self.bank.projects(GROUP, include_subgroups=True)

    def outside_projects(self) -> list[dict]:
        return self.bank.projects(OUTSIDE)

    def pushable_items(self) -> list[dict]:
        """Projects in scope that hold an item the developer can push to (not archived)."""
        return [p for p in self.projects_in_scope() if not p["archived"] and not p["empty_repo"]]

    def group(self, full_path: str) -> dict:
        return self.bank.group(full_path)

    def pick(self, choices: list):
        return self.rng.choice(choices) if choices else None

    def remaining(self) -> float:
        return self.ends_at - time.monotonic()

    # ------------------------------------------------------------------------------------------------- Airflow

    def active_runs(self, max_age: float = 0.0) -> list[dict]:
        """The queued and running runs of both DAGs (each names its ``dag_id``); ``max_age``: an answer up to that many
        seconds old will do."""
        cached_at, runs = self._active_runs_cache
        if max_age and time.monotonic() - cached_at <= max_age:
            return runs
        runs = []
        for dag_id in (DAG_ID, EVENTS_DAG_ID):
            response = self.stack.airflow.api(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"state": list(ACTIVE_RUN_STATES), "limit": 100}
            )
            response.raise_for_status()
            runs += response.json()["dag_runs"]
        self._active_runs_cache = (time.monotonic(), runs)
        return runs
