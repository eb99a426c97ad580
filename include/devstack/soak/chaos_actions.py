"""Chaos on GitLab and processes: GitLab faults for a while on the routes IMRT reads (:mod:`itembank_server.faults`),
a running ``sync`` task's process killed with SIGKILL, and the scheduler killed (with its task processes) and
started again.

Each action that breaks something leaves a follow-up that repairs it a few seconds later (or when the soak ends).
"""

from __future__ import annotations

import signal

import psutil

from imrt_compat.task_contract import SYNC
from imrt_sync import DAG_ID

from .journal import DONE, SKIPPED, Entry
from .world import World

FAULT_ROUTES = (
    "POST /api/graphql",  # the sweep: a 5xx, a slow or dropped page lists that run through REST
    "GET /api/v4/groups/:id",
    "GET /api/v4/groups/:id/projects",
    "GET /api/v4/projects/:id",
    "GET /api/v4/projects/:id/hooks",
    "git upload-pack",
)
HUNT_SECONDS = 120.0  # how long kill_task looks for a running sync task at most
SYNC_HOLD = {"endpoint": "GET /api/v4/projects/:id", "kind": "latency", "seconds": 4, "times": 2}


# ------------------------------------------------------------------------------------------------ faults


def fault_window(world: World) -> Entry:
    """A fault on one route for 5 to 15 s: 5xx answers, slow answers or dropped connections."""
    if world.fault_window:
        return world.journal.record("fault", SKIPPED, f"a window is open: {world.fault_window}")
    route = world.rng.choice(FAULT_ROUTES)
    kind = world.rng.choice(("status", "latency", "drop"))
    params = {
        "status": {"status": world.rng.choice((500, 502, 503))},
        "latency": {"seconds": round(world.rng.uniform(2, 5), 1)},
        "drop": {},
    }[kind]
    world.stack.server.faults.add(route, kind, **params)
    seconds = world.rng.uniform(5, 15)
    world.fault_window = f"{kind} {params} on {route}"
    world.follow_ups.add(seconds, "close_faults", lambda: close_faults(world))
    return world.journal.record("fault", DONE, f"{world.fault_window} for {seconds:.0f} s")


def close_faults(world: World) -> None:
    world.stack.server.faults.clear()
    world.journal.record("close_faults", DONE, world.fault_window)
    world.fault_window = ""


# ------------------------------------------------------------------------------------------------ processes


def running_sync_instances(world: World) -> list[dict]:
    found = []
    for run in world.active_runs():
        if run["state"] == "running":
            found += [
                ti
                for ti in world.stack.airflow.task_instances(run["dag_id"], run["dag_run_id"])
                if ti["task_id"] == SYNC and ti["state"] == "running"
            ]
    return found


def task_process(world: World, ti_id: str) -> psutil.Process | None:
    """The task runner of a task instance names itself ``airflow worker -- <ti id>``."""
    for pid in world.stack.airflow.pids():
        try:
            process = psutil.Process(pid)
            if " ".join(process.cmdline()).strip() == f"airflow worker -- {ti_id}":
                return process
        except psutil.Error:
            continue
    return None


def kill_running_sync(world: World) -> str | None:
    """SIGKILL the process of one running ``sync`` instance; what was killed, or None."""
    for ti in running_sync_instances(world):
        process = task_process(world, ti["id"])
        if process is None:
            continue
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
        return f"pid {process.pid}: sync {ti['rendered_map_index']} of {ti['dag_run_id']} (try {ti['try_number']})"
    return None


def kill_task(world: World) -> Entry:
    """Kill a running sync task now; else hold the item reads (4 s, twice) and hunt for one, in the active runs or,
    when none is active, in a full run started for it."""
    if world.scheduler_down:
        return world.journal.record("kill_task", SKIPPED, "the scheduler is down")
    killed = kill_running_sync(world)
    if killed:
        return world.journal.record("kill_task", DONE, killed)
    world.stack.server.faults.add(
        SYNC_HOLD["endpoint"], SYNC_HOLD["kind"], seconds=SYNC_HOLD["seconds"], times=SYNC_HOLD["times"]
    )
    run_id = None
    if not world.active_runs():
        run_id = world.stack.airflow.trigger(DAG_ID, conf={"mode": "full"})
        world.journal.record("dagrun_full", DONE, f"{run_id}, for kill_task")
    hunt_until = world.journal.elapsed() + HUNT_SECONDS
    world.follow_ups.add(0.5, "hunt_sync_task", lambda: hunt(world, run_id, hunt_until))
    return world.journal.record(
        "kill_task", SKIPPED, f"no sync task running now: hunting in {run_id or 'the active runs'}"
    )


def hunt(world: World, run_id: str | None, until: float) -> None:
    """Each loop turn: kill a running sync task if one shows, until ``until`` (soak seconds), the soak's end, or
    the end of ``run_id`` (when the hunt started one)."""
    killed = None if world.scheduler_down else kill_running_sync(world)
    if killed:
        world.journal.record("kill_task", DONE, killed)
        return
    ended = run_id is not None and world.stack.airflow.dag_run(DAG_ID, run_id)["state"] in ("success", "failed")
    if not ended and world.journal.elapsed() < until and world.remaining() > 0:
        world.follow_ups.add(0.5, "hunt_sync_task", lambda: hunt(world, run_id, until))
    else:
        world.journal.record("kill_task", SKIPPED, "no sync task showed running")


def restart_scheduler(world: World) -> Entry:
    """SIGKILL the scheduler and everything it started; start it again 3 to 8 s later."""
    if world.scheduler_down:
        return world.journal.record("restart_scheduler", SKIPPED, "already down")
    world.stack.airflow.kill("scheduler")
    world.scheduler_down = True
    seconds = world.rng.uniform(3, 8)
    world.follow_ups.add(seconds, "start_scheduler", lambda: start_scheduler(world))
    return world.journal.record("restart_scheduler", DONE, f"scheduler killed, restart in {seconds:.0f} s")


def start_scheduler(world: World) -> None:
    world.stack.airflow.restart("scheduler")
    world.scheduler_down = False
    world.journal.record("start_scheduler", DONE, "healthy again")
