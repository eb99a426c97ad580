"""The push-latency case: real ``git push`` es over HTTP to the item bank server while a full sync runs under the
scheduler, each delivered by the server as a project hook to the stack's ``/webHook``; how long until each pushed
commit shows in ``item_git.current_commit_hash`` (push-to-row), and how each push's hook event ended.

The runs that take the events (``webhook__`` runs of ``item_synchronization_events``) are read from the receiver's
``imrt_webhook_event.run_id``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from imrt_sync import DAG_ID

from .bank import project_ids
from .cases import GROUP, TOKEN, nightly_counts
from .report import PushLatencyResult, describe_result, fmt_seconds, say
from .runners import DagRunner

PUSHES = 50
EVENT_TIMEOUT = 600.0  # seconds the events may take to end once the full sync ended
TERMINAL_EVENT_STATES = frozenset({"synced", "failed", "ignored"})


@dataclass(frozen=True)
class PushMade:
    project_id: int
    sha: str
    returned_at: float  # time.monotonic() when git push returned
    during_full_sync: bool  # the full sync was still running when git push returned


def push_targets(bank_root: Path, count: int, seed: int) -> list[dict]:
    """``count`` distinct published projects (their item.json on the default branch), chosen by ``seed``."""
    from itembank_server import ItemBank

    bank = ItemBank(bank_root)
    try:
        published = [p for p in bank.projects(GROUP) if bank.read_file(p["id"], "item.json") is not None]
    finally:
        bank.close()
    if len(published) < count:
        raise ValueError(f"the bank has {len(published)} published items, fewer than {count} pushes")
    return random.Random(f"pushes-{seed}").sample(published, count)


def edited_item_json(developer, project: dict, turn: int) -> bytes:
    """The project's item.json with one field changed (a well-formed document: the sync writes its row)."""
    document = json.loads(developer.read(project, "item.json"))
    document["bench_push"] = f"push {turn}"
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def make_pushes(developer, targets: list[dict], interval: float, still_running) -> list[PushMade]:
    """One commit to each target's item.json, pushed with ``git push``, ``interval`` seconds apart (a pace, not a
    wait on state); ``still_running()`` says whether the full sync was still running when the push returned."""
    made = []
    for turn, project in enumerate(targets):
        if turn:
            time.sleep(interval)
        content = edited_item_json(developer, project, turn)
        sha = developer.commit_and_push(project, {"item.json": content}, f"Bench push {turn}", "Bench Pusher")
        made.append(PushMade(project["id"], sha, time.monotonic(), bool(still_running())))
    return made


def event_rows(imrt_engine, shas: list[str]) -> list[dict]:
    """The receiver's record of the pushes' hook events: commit sha, status, run id."""
    import sqlalchemy as sa

    with imrt_engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT commit_sha, status, run_id FROM imrt_webhook_event WHERE commit_sha = ANY(:s) ORDER BY id"),
            {"s": shas},
        )
        return [dict(row._mapping) for row in rows]


def events_ended(imrt_engine, shas: list[str]) -> list[dict] | None:
    """The events, once every push has one and all of them ended; None until then."""
    rows = event_rows(imrt_engine, shas)
    if {r["commit_sha"] for r in rows} >= set(shas) and all(r["status"] in TERMINAL_EVENT_STATES for r in rows):
        return rows
    return None


def latencies(made: list[PushMade], first_seen: dict[tuple[int, str], float]) -> list[float | None]:
    """Each push's push-to-row seconds: from ``git push`` returning to its commit first seen in item_git (None:
    never seen)."""
    found = [first_seen.get((push.project_id, push.sha)) for push in made]
    return [None if seen is None else max(0.0, seen - push.returned_at) for push, seen in zip(made, found, strict=True)]


def event_result(
    size: int, made: list[PushMade], events: list[dict], verdict: dict, wall: float, pushes_seconds: float
) -> PushLatencyResult:
    """How each push's hook event ended (by sha; ``no event`` when the receiver has none) and the runs that took
    them, read from ``imrt_webhook_event.run_id`` (whatever DAG those runs belong to)."""
    by_sha = {row["commit_sha"]: row for row in events}
    runs: dict[str, int] = {}
    for row in events:
        if row["run_id"]:
            runs[row["run_id"]] = runs.get(row["run_id"], 0) + 1
    during, ended = sum(p.during_full_sync for p in made), verdict.get("status")
    return PushLatencyResult(
        size=size,
        during=f"(d) mode=full ({during} of {len(made)} pushes returned while it ran; it ended {ended})",
        event_states=[by_sha[p.sha]["status"] if p.sha in by_sha else "no event" for p in made],
        runs=runs,
        full_sync_wall=wall,
        pushes_seconds=pushes_seconds,
        made=made,
    )


def measure_push_latency(options, size: int, admin_url, pgdata: Path, references) -> PushLatencyResult:
    """(a) the first full sync (it creates the hooks, pointing at this stack's /webHook), then a ``mode=full`` run
    with ``PUSHES`` pushes made while it runs; the pushes' latency, their events, and the end state once every event
    ended, compared with one full sync of the bank as the pushes left it."""
    import sqlalchemy as sa

    from ..soak.gitclient import DeveloperGit
    from ..soak.latency import RowWatcher
    from .probes import imrt_snapshot

    say(f"\n=== {size:,} items, push latency (DAG mode) ===")
    with DagRunner(options, size, admin_url, pgdata, hooks_to_stack=True) as runner:
        runner.references = references
        say(f"--- {size:,} items, base: (a) first full sync (hooks to {runner.webhook_url}) ...")
        base = runner.measure("a", len(project_ids(runner.bank_root)), nightly_counts(size), first=True)
        for line in describe_result(base):
            say(f"    {line}")
        assert runner.server is not None
        targets = push_targets(runner.bank_root, PUSHES, size)
        developer = DeveloperGit(runner.server.url, TOKEN, runner.work / "developer")
        for project in targets:
            developer.checkout(project)  # cloned before the run: the pushes alone are timed
        engine = sa.create_engine(runner.imrt_url, pool_pre_ping=True)
        try:
            with RowWatcher(engine, locate=lambda _pid: None) as watcher:
                say(f"--- {size:,} items, (d) mode=full with {PUSHES} pushes made while it runs ...")
                result = pushes_during_full_sync(runner, developer, targets, engine, options.push_interval)
                watcher.look()
            result.latencies = latencies(result.made, watcher.first_seen)
            result.reference = references.compare(runner, imrt_snapshot(runner.imrt_url))
        finally:
            engine.dispose()
    return result


def pushes_during_full_sync(runner, developer, targets: list[dict], engine, interval: float) -> PushLatencyResult:
    """Trigger a ``mode=full`` run, make the pushes once it runs, wait for it to end and for every push's event to
    end; the result without the latencies (the caller's row watcher has them)."""
    from ..soak.waiting import poll_until

    started = time.time()
    run_id = runner.trigger("d")
    state = lambda: runner.stack.dag_run(DAG_ID, run_id)["state"]  # noqa: E731
    poll_until(lambda: state() != "queued", 120, "the full sync to start")
    mark = time.monotonic()
    made = make_pushes(developer, targets, interval, lambda: state() == "running")
    pushes_seconds = time.monotonic() - mark
    _, verdict, phases, _ = runner.finish(run_id, started)
    shas = [p.sha for p in made]
    events = poll_until(lambda: events_ended(engine, shas), EVENT_TIMEOUT, "every push's event to end")
    say(f"    pushes made in {fmt_seconds(pushes_seconds)}; the full sync ended {verdict.get('status')}")
    return event_result(runner.size, made, events, verdict, phases["wall"], pushes_seconds)
