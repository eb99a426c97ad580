"""Actions that push with real git as the developer: item.json edits (a new workflow status, by the same or another
author), malformed item.json and its fix, README-only pushes and bursts of pushes.

Every item.json edit gives the document a workflow status it never had (``<status> #<n>``), so each push changes the
file and is the new "last commit touching item.json". A malformed push goes only to an item whose row already shows
its last item.json commit, and the item gets no other item.json push until its fix (see :mod:`devstack.soak.oracle`,
which relies on it); moves that would take it out of scope skip it meanwhile.
"""

from __future__ import annotations

import itertools
import json

import sqlalchemy as sa

from itembank_server.item_documents import AUTHORS, WORKFLOW_STATUSES

from .gitclient import GitFailed
from .journal import DONE, REFUSED, SKIPPED, Entry
from .world import World

AUTHOR_NAMES = tuple(name for name, _, _ in AUTHORS)
_edits = itertools.count(1)


def document_bytes(document: dict) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def last_item_json_author(world: World, project: dict) -> str | None:
    commits = world.bank.log(project["id"], "item.json")
    return commits[0]["author_name"] if commits else None


def edit_status(document: dict, world: World) -> str:
    status = f"{world.rng.choice(WORKFLOW_STATUSES)} #{next(_edits)}"
    document.setdefault("workflow", {})["workflowStatusCode"] = status
    return status


def push_document(world: World, kind: str, project: dict, document: dict, author: str, what: str) -> Entry:
    """Commit and push item.json; the journal gets the push (a row is expected to show it)."""
    try:
        sha = world.git.commit_and_push(project, {"item.json": document_bytes(document)}, what, author)
    except GitFailed as error:
        return world.journal.record(kind, REFUSED, str(error), project["id"])
    world.journal.pushed(project["id"], sha, expects_row=True)
    return world.journal.record(kind, DONE, f"{sha[:10]} {what} by {author}", project["id"])


def well_formed_items(world: World) -> list[dict]:
    """Pushable items whose head item.json is not one the soak made malformed."""
    return [p for p in world.pushable_items() if p["id"] not in world.malformed]


def current_document(world: World, project: dict) -> dict | None:
    raw = world.git.read(project, "item.json")
    try:
        document = json.loads(raw) if raw else None
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def push_edit(world: World, kind: str, project: dict, *, new_author: bool) -> Entry:
    try:
        document = current_document(world, project)
    except GitFailed as error:
        return world.journal.record(kind, REFUSED, f"clone: {error}", project["id"])
    if document is None:
        return world.journal.record(kind, SKIPPED, "no well-formed item.json in the clone", project["id"])
    previous = last_item_json_author(world, project)
    authors = [a for a in AUTHOR_NAMES if a != previous] if new_author else list(AUTHOR_NAMES)
    author = world.rng.choice(authors)
    status = edit_status(document, world)
    detail = f"status {status}" + (f", author {previous} -> {author}" if new_author else "")
    return push_document(world, kind, project, document, author, detail)


def push_status(world: World) -> Entry:
    project = world.pick(well_formed_items(world))
    if project is None:
        return world.journal.record("push_status", SKIPPED, "no item to push to")
    return push_edit(world, "push_status", project, new_author=False)


def push_author(world: World) -> Entry:
    project = world.pick(well_formed_items(world))
    if project is None:
        return world.journal.record("push_author", SKIPPED, "no item to push to")
    return push_edit(world, "push_author", project, new_author=True)


def push_burst(world: World) -> Entry:
    """3 to 6 pushes in a row to 1 to 3 items, as fast as git goes."""
    targets = well_formed_items(world)
    if not targets:
        return world.journal.record("push_burst", SKIPPED, "no item to push to")
    chosen = world.rng.sample(targets, k=min(len(targets), world.rng.randint(1, 3)))
    pushes = world.rng.randint(3, 6)
    landed = 0
    for number in range(pushes):
        entry = push_edit(world, "burst_push", chosen[number % len(chosen)], new_author=world.rng.random() < 0.3)
        landed += entry.outcome == DONE
    outcome = DONE if landed else REFUSED
    return world.journal.record("push_burst", outcome, f"{landed} of {pushes} pushes to {len(chosen)} items landed")


def row_shows_last_commit(world: World, project: dict) -> str | None:
    """The project's last item.json commit when ``item_git`` already shows it, else None."""
    commits = world.bank.log(project["id"], "item.json")
    if not commits:
        return None
    with world.stack.imrt.connect() as conn:
        recorded = conn.scalar(
            sa.text("SELECT current_commit_hash FROM item_git WHERE project_id = :p"), {"p": project["id"]}
        )
    return recorded if recorded == commits[0]["sha"] else None


def push_malformed(world: World) -> Entry:
    """Cut item.json in half (no longer JSON) on an item whose row is up to date."""
    candidates = [p for p in well_formed_items(world) if row_shows_last_commit(world, p)]
    project = world.pick(candidates)
    if project is None:
        return world.journal.record("push_malformed", SKIPPED, "no item whose row shows its last commit")
    good_sha = row_shows_last_commit(world, project)
    author = world.rng.choice(AUTHOR_NAMES)
    try:
        raw = world.git.read(project, "item.json") or b"{}"
        broken = raw[: len(raw) // 2]
        sha = world.git.commit_and_push(project, {"item.json": broken}, "half an item.json", author)
    except GitFailed as error:
        return world.journal.record("push_malformed", REFUSED, str(error), project["id"])
    world.malformed[project["id"]] = good_sha
    world.journal.pushed(project["id"], sha, expects_row=False)
    return world.journal.record(
        "push_malformed", DONE, f"{sha[:10]} malformed item.json by {author} (row at {good_sha[:10]})", project["id"]
    )


def fix_malformed(world: World) -> Entry:
    """Push the last well-formed document back, with a new status."""
    candidates = [p for p in world.pushable_items() if p["id"] in world.malformed]
    project = world.pick(candidates)
    if project is None:
        return world.journal.record("fix_malformed", SKIPPED, "no malformed item to fix")
    good = world.bank.read_file(project["id"], "item.json", ref=world.malformed[project["id"]])
    document = json.loads(good)
    status = edit_status(document, world)
    entry = push_document(
        world, "fix_malformed", project, document, world.rng.choice(AUTHOR_NAMES), f"fixed, status {status}"
    )
    if entry.outcome == DONE:
        del world.malformed[project["id"]]
    return entry


def push_readme(world: World) -> Entry:
    """A push that changes only README.md: the head moves, the last item.json commit does not."""
    project = world.pick(world.pushable_items())
    if project is None:
        return world.journal.record("push_readme", SKIPPED, "no project to push to")
    text = f"# Item {project['path']}\n\nNote {next(_edits)}.\n".encode()
    author = world.rng.choice(AUTHOR_NAMES)
    try:
        sha = world.git.commit_and_push(project, {"README.md": text}, "README only", author)
    except GitFailed as error:
        return world.journal.record("push_readme", REFUSED, str(error), project["id"])
    world.journal.pushed(project["id"], sha, expects_row=False)
    return world.journal.record("push_readme", DONE, f"{sha[:10]} README.md by {author}", project["id"])
