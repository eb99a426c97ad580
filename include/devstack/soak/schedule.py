"""Which action comes next, and the action loop.

Every kind has a weight (pushes are most of the traffic) and, for the disruptive ones and the REST triggers, a
condition: not while the scheduler is down, not in the last ``CALM_SECONDS`` of the soak (so that quiescence starts
from a stack that can settle), process disruptions ``PROCESS_SPACING`` apart and access changes ``ACCESS_SPACING``
apart (a killed task is retried 30 s later, 60 s the next time: a stack that is always broken shows little).

Coverage comes first: while some kinds have not happened yet (no ``done`` entry), the next action is one of them
most of the time, so that a short soak still does every kind; the legacy ``POST /sync/{id}`` and ``POST /sync``
open the soak, while the stack is idle after its first sync. Between actions the loop pauses 0.2 to 1.5 s (pacing,
drawn from the seed).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from . import access_actions, chaos_actions, git_actions, project_actions, triggers
from .journal import DONE, ERROR
from .world import World

CALM_SECONDS = 30.0
COVERAGE_SHARE = 0.7
PROCESS_SPACING = 45.0  # seconds between two process disruptions (kill_task, restart_scheduler)
ACCESS_SPACING = 20.0  # seconds between two access changes (access_flap, access_narrow)
PROCESS_KINDS = ("kill_task", "restart_scheduler")
ACCESS_KINDS = ("access_flap", "access_narrow")


def always(world: World) -> bool:
    return True


def calm_allows(world: World) -> bool:
    """Disruption only before the last CALM_SECONDS, and never while the scheduler is down."""
    return world.remaining() > CALM_SECONDS and not world.scheduler_down


def spaced(world: World, kinds: tuple[str, ...], seconds: float) -> bool:
    """None of ``kinds`` happened in the last ``seconds``: a stack that is always being broken shows little."""
    last = max((e.at for e in world.journal.entries if e.kind in kinds and e.outcome == DONE), default=None)
    return last is None or world.journal.elapsed() - last >= seconds


def process_chaos_allowed(world: World) -> bool:
    return calm_allows(world) and spaced(world, PROCESS_KINDS, PROCESS_SPACING)


def access_change_allowed(world: World) -> bool:
    return calm_allows(world) and not world.access_removed and spaced(world, ACCESS_KINDS, ACCESS_SPACING)


def rest_trigger_allowed(world: World, name: str) -> bool:
    """A REST trigger waits for room in the queue, except the first of its kind: on a busy machine the queue can stay
    full for the whole soak, and every kind must happen."""
    return calm_allows(world) and (triggers.queue_has_room(world) or name not in world.journal.done_kinds())


@dataclass(frozen=True)
class Kind:
    name: str
    run: Callable[[World], object]
    weight: float
    ready: Callable[[World], bool] = always


KINDS = (
    Kind("sync_all", triggers.sync_all, 1),
    Kind("push_status", git_actions.push_status, 14),
    Kind("push_author", git_actions.push_author, 6),
    Kind("push_burst", git_actions.push_burst, 3),
    Kind("push_readme", git_actions.push_readme, 3),
    Kind("push_malformed", git_actions.push_malformed, 2, lambda w: len(w.malformed) < 3),
    Kind("fix_malformed", git_actions.fix_malformed, 2, lambda w: bool(w.malformed)),
    Kind("create", project_actions.create, 3),
    Kind("delete", project_actions.delete, 1.5),
    Kind("rename", project_actions.rename, 1.5),
    Kind("transfer_out", project_actions.transfer_out, 1),
    Kind("transfer_back", project_actions.transfer_back, 1, lambda w: bool(w.outside_projects())),
    Kind("transfer_within", project_actions.transfer_within, 1.5),
    Kind("archive", project_actions.archive, 1),
    Kind("unarchive", project_actions.unarchive, 1, lambda w: any(p["archived"] for p in w.projects_in_scope())),
    Kind("access_flap", access_actions.access_flap, 1, access_change_allowed),
    Kind("access_narrow", access_actions.access_narrow, 1, access_change_allowed),
    Kind("visibility", access_actions.visibility, 1.5),
    Kind("fault", chaos_actions.fault_window, 1.5, lambda w: calm_allows(w) and not w.fault_window),
    Kind(
        "kill_task",
        chaos_actions.kill_task,
        1,
        lambda w: process_chaos_allowed(w) and not w.follow_ups.has("hunt_sync_task"),
    ),
    Kind(
        "restart_scheduler",
        chaos_actions.restart_scheduler,
        0.5,
        lambda w: process_chaos_allowed(w) and not w.follow_ups.has("hunt_sync_task"),
    ),
    Kind("sync_item", triggers.sync_item, 1),
    Kind("dagrun_full", triggers.dagrun_full, 0.7, lambda w: rest_trigger_allowed(w, "dagrun_full")),
    Kind(
        "dagrun_incremental", triggers.dagrun_incremental, 0.7, lambda w: rest_trigger_allowed(w, "dagrun_incremental")
    ),
    Kind("dagrun_item_ids", triggers.dagrun_item_ids, 1, lambda w: rest_trigger_allowed(w, "dagrun_item_ids")),
)
KIND_NAMES = tuple(kind.name for kind in KINDS)
OPENING = ("sync_item", "sync_all")  # the legacy triggers, while the stack is idle (see devstack.soak.triggers)


def choose(world: World) -> Kind:
    ready = [kind for kind in KINDS if kind.ready(world)]
    done = world.journal.done_kinds()
    attempted = world.journal.counts()
    opening = next((name for name in OPENING if name not in attempted), None)
    if opening:
        return next(kind for kind in KINDS if kind.name == opening)
    uncovered = [kind for kind in ready if kind.name not in done]
    if uncovered and world.rng.random() < COVERAGE_SHARE:
        return world.rng.choice(uncovered)
    return world.rng.choices(ready, weights=[kind.weight for kind in ready])[0]


def run_one(world: World, kind: Kind) -> None:
    try:
        kind.run(world)
    except Exception as error:
        world.journal.record(
            kind.name, ERROR, f"{type(error).__name__}: {error} at {traceback.extract_tb(error.__traceback__)[-1].name}"
        )


def run_follow_ups(world: World, everything: bool = False) -> None:
    try:
        world.follow_ups.run_all() if everything else world.follow_ups.run_due()
    except Exception as error:
        world.journal.record("follow_up", ERROR, f"{type(error).__name__}: {error}")
        if everything:
            run_follow_ups(world, everything=True)


def run_actions(world: World, say: Callable[[str], None]) -> None:
    """Act until the soak's end, then run every follow-up (restore access, close faults, start the scheduler)."""
    last_said = 0.0
    while world.remaining() > 0:
        run_follow_ups(world)
        run_one(world, choose(world))
        if time.monotonic() - last_said > 30:
            last_said = time.monotonic()
            done = world.journal.done_kinds() & set(KIND_NAMES)
            say(
                f"{world.journal.elapsed():.0f} s: {len(world.journal.entries)} actions, "
                f"{len(done)} of {len(KINDS)} kinds done"
            )
        time.sleep(min(world.rng.uniform(0.2, 1.5), max(world.remaining(), 0)))
    run_follow_ups(world, everything=True)
