"""The planning-only case: ``open_run`` (the list_ids task's work: list the group, read each project's head and
hooks, compare with IMRT, plan) over a generated bank with nothing changed since the last sync, at sizes (100,000
projects) whose full sync this machine cannot run in a session.

The bank is generated with shared objects (``generate_bank(..., shared_objects=True)``: one ``git fast-import``, each
repository a skeleton with git alternates), every project given IMRT's webhook as ``dispatch_webhooks`` creates it.
IMRT's database is then filled with what a full sync of that bank writes *for what planning reads*:

* ``item_git`` (project id, path, ``ingest_source``: the default branch, or the create branch of an item still
  being created) and ``item`` (``is_being_created``), one row per project;
* ``imrt_project_head`` (``head_sha``: the default branch's head; ``source_head_sha``: the create branch's head of an
  item still being created, else NULL; ``item_blob_oid``: the blob id of ``item.json`` at that head, if any);
* ``imrt_project_hook`` (the project's hook id and the fingerprint of the webhook secret), and
  ``imrt_project_hook_check`` (the hook checked now, as the sync's ``dispatch_webhooks`` records it).

Planning reads exactly these (``ItemStore.recorded_heads``, ``items_being_created``, ``recorded_count``,
``recorded_item_blobs``, ``WebhookRegistry.recorded``, ``checked_at``); ``tests/integration/test_bench_planning.py``
checks, on a small bank, that these columns equal what a real full sync writes, and that planning over the fill
finds nothing to do. The item's other columns are placeholders (an empty ``item_json``, empty texts): the filled
database serves this case only, which never syncs an item. (A real sync of 100,000 items takes hours here;
replicating a small sync's rows would copy documents that do not match the projects.)
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .bank import BankServer
from .cases import GROUP, PLANNING, SEED, WEBHOOK_SECRET, WEBHOOK_URL
from .report import CaseResult, say

FILL_BATCH = 5000


@dataclass(frozen=True)
class RecordedProject:
    """What a full sync records of one project, for what planning reads."""

    project_id: int
    path: str
    branch: str  # item_git.ingest_source: the branch item.json was read from
    head: str  # imrt_project_head.head_sha: the default branch's head
    source_head: str | None  # imrt_project_head.source_head_sha: the create branch's head (items being created)
    item_blob: str | None  # imrt_project_head.item_blob_oid: item.json's blob id at ``head`` (None without one)
    hook_id: int  # imrt_project_hook.hook_id: IMRT's webhook on the project


def planning_bank(data_dir: Path, size: int) -> Path:
    """The generated bank of ``size`` projects for the planning case, every project hooked (generated once, then
    reused); its directory."""
    from itembank_server import ItemBank, generate_bank

    root = data_dir / "banks" / f"{size}-seed{SEED}-planning"
    marker = root / "bench-complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    say(f"generating a planning bank of {size:,} projects (shared objects) in {root} (cached for later runs) ...")
    started = time.monotonic()
    bank = ItemBank(root)
    try:
        bank.create_group(GROUP)
        projects = generate_bank(bank, GROUP, count=size, seed=SEED, shared_objects=True)
        bank.add_hooks(
            [p["id"] for p in projects], WEBHOOK_URL, token=WEBHOOK_SECRET, push_events=True
        )  # as dispatch_webhooks creates them (GitLabClient.create_hook)
    finally:
        bank.close()
    seconds = time.monotonic() - started
    marker.write_text(json.dumps({"size": size, "seed": SEED, "seconds": seconds}) + "\n")
    say(f"generated in {seconds:.0f} s")
    return root


def recorded_projects(bank_root: Path) -> list[RecordedProject]:
    """What a full sync of the bank records, read from the bank: each project's branches and IMRT's hook."""
    from itembank_server import ItemBank

    bank = ItemBank(bank_root)
    try:
        recorded = []
        for project in bank.projects(GROUP):
            hooks = [h for h in bank.hooks(project["id"]) if h["url"] == WEBHOOK_URL]
            create = _create_branch(bank, project)
            recorded.append(
                RecordedProject(
                    project_id=project["id"],
                    path=project["path"],
                    branch=create or project["default_branch"],
                    head=bank.head(project["id"]) or "",
                    source_head=bank.head(project["id"], create) if create else None,
                    item_blob=_item_blob(bank, project),
                    hook_id=hooks[0]["id"],
                )
            )
        return recorded
    finally:
        bank.close()


def _item_blob(bank, project: dict) -> str | None:
    from itembank_server.bank_repos import blob_ids

    found = blob_ids(bank.repo_path(project), project["default_branch"], ["item.json"])
    return found[0][1] if found else None


def _create_branch(bank, project: dict) -> str | None:
    """The ``create_<user>`` branch of an item still being created (its loose ref: pushed after the bank was
    written), None for a published item."""
    heads = bank.repo_path(project) / "refs" / "heads"
    found = sorted(p.name for p in heads.glob("create_*")) if heads.is_dir() else []
    return found[0] if found else None


def fill_imrt(imrt_url, projects: Sequence[RecordedProject], webhook_secret: str = WEBHOOK_SECRET) -> None:
    """Write ``projects`` into IMRT's (prepared, empty) database as a full sync records them, for planning."""
    import sqlalchemy as sa

    from imrt_sync import schema
    from imrt_sync.project_webhooks import secret_fingerprint

    fingerprint = secret_fingerprint(webhook_secret)
    now = datetime.now(UTC)
    engine = sa.create_engine(imrt_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for start in range(0, len(projects), FILL_BATCH):
                batch = projects[start : start + FILL_BATCH]
                keys = range(start + 1, start + 1 + len(batch))
                conn.execute(schema.item.insert(), [_item_row(key, p, now) for key, p in zip(keys, batch, strict=True)])
                conn.execute(
                    schema.item_git.insert(), [_git_row(key, p, now) for key, p in zip(keys, batch, strict=True)]
                )
                conn.execute(
                    schema.imrt_project_head.insert(),
                    [
                        {
                            "project_id": p.project_id,
                            "head_sha": p.head,
                            "source_head_sha": p.source_head,
                            "item_blob_oid": p.item_blob,
                        }
                        for p in batch
                    ],
                )
                conn.execute(
                    schema.imrt_project_hook_check.insert(),
                    [{"project_id": p.project_id, "checked_at": now} for p in batch],
                )
                conn.execute(
                    schema.imrt_project_hook.insert(),
                    [
                        {"project_id": p.project_id, "hook_id": p.hook_id, "secret_fingerprint": fingerprint}
                        for p in batch
                    ],
                )
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('item', 'key'), (SELECT max(key) FROM item))"))
    finally:
        engine.dispose()


def _item_row(key: int, project: RecordedProject, now: datetime) -> dict:
    placeholders = ("subject", "grade", "workflow_status", "item_type", "dok", "item_created_by", "updated_by")
    return {
        "key": key,
        "id": int(project.path),
        "item_created_at": now,
        "item_json": {},
        "workflow_status_set_at": now,
        "is_being_created": project.source_head is not None,
        "classification": "",
        "organization_type_id": "",
        "organization_name": "",
        **dict.fromkeys(placeholders, ""),
    }


def _git_row(key: int, project: RecordedProject, now: datetime) -> dict:
    return {
        "item_key": key,
        "project_id": project.project_id,
        "project_path": project.path,
        "current_commit_hash": project.source_head or project.head,
        "current_commit_date": now,
        "ingest_source": project.branch,
        "updated_by": "",
    }


def measure_planning(options, size: int, admin_url, pgdata: Path) -> CaseResult:
    """The planning case at ``size``: the bank served by its own server, IMRT filled, then ``open_run`` timed with
    the requests it made, the rows it wrote and the memory it took."""
    import os

    from ..postgres import ensure_database
    from ..project import prepare_imrt_database
    from .probes import (
        MemorySampler,
        foreign_cpu_delta,
        foreign_cpu_seconds,
        postmaster_pids,
        settled_table_writes,
        with_children,
        writes_delta,
    )
    from .report import PLANNING_PHASE, expected_plan_problems, split_counters

    bank_root = planning_bank(options.data_dir, size)
    work = options.data_dir / "work" / f"planning-{size}"
    work.mkdir(parents=True, exist_ok=True)
    database = f"bench_imrt_planning_{size}"
    imrt_url = ensure_database(admin_url, database, recreate=True)
    prepare_imrt_database(imrt_url)
    started = time.monotonic()
    fill_imrt(imrt_url, recorded_projects(bank_root))
    say(f"  IMRT filled with {size:,} synced projects in {time.monotonic() - started:.0f} s")
    server = BankServer(bank_root, work / "itembank-server.log").start()
    try:
        writes_before = settled_table_writes(admin_url, database)
        server.reset_counters()
        others = lambda: server.pids() | postmaster_pids(pgdata)  # noqa: E731
        groups = {
            "process": lambda: with_children(os.getpid()) - others(),
            "postgres": lambda: postmaster_pids(pgdata),
            "itembank": server.pids,
        }
        ours = lambda: with_children(os.getpid()) | postmaster_pids(pgdata)  # noqa: E731
        foreign_before = foreign_cpu_seconds(ours)
        load_start = os.getloadavg()[0]
        with MemorySampler(groups) as sampler:
            plan, wall = timed_open_run(options, server.url, imrt_url, work / "git-cache")
        foreign = foreign_cpu_delta(foreign_before, foreign_cpu_seconds(ours))
        rest, graphql, git = split_counters(server.counters())
        rows = writes_delta(writes_before, settled_table_writes(admin_url, database))
    finally:
        server.stop()
    problems = expected_plan_problems(PLANNING, plan, size, {}, first=False)
    result = CaseResult(
        size=size,
        case=PLANNING,
        mode="direct",
        wall=wall,
        status="PLANNED",
        expectation="ok" if not problems else "; ".join(problems),
        listed=int(plan.get("total_ids", 0)),
        changed=0,
        rest=rest,
        graphql=graphql,
        git=git,
        rows=rows,
        memory=sampler.peaks,
        phases={PLANNING_PHASE: wall},
        load=(load_start, os.getloadavg()[0]),
        foreign_cpu=foreign,
    )
    result.reference = "yes" if result.item_rows == 0 else f"NO: planning wrote {result.item_rows} item rows"
    return result


def timed_open_run(options, gitlab_url: str, imrt_url, git_cache: Path) -> tuple[dict, float]:
    """``open_run`` of an incremental run, as the list_ids task calls it: (the plan, seconds)."""
    import sqlalchemy as sa

    from imrt_sync import pipeline
    from imrt_sync.config import RunParams
    from imrt_sync.contracts import RunContext

    from .runners import run_settings

    settings = run_settings(options, gitlab_url, git_cache)
    run = RunContext(f"bench__planning__{time.time_ns()}", RunParams(mode="incremental"))
    engine = sa.create_engine(imrt_url, pool_pre_ping=True, pool_size=max(4, options.concurrency))
    try:
        started = time.monotonic()
        planned = pipeline.open_run(run, engine, lambda: settings)
        return planned["plan"], time.monotonic() - started
    finally:
        engine.dispose()
