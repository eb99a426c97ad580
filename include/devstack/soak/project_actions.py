"""Actions on projects through the item bank server's GitLab REST routes, as the administrator: create (then the
developer pushes its item.json with git), delete, rename, transfer (out to another group and back, and between the
group and its subgroups), archive and unarchive.

Moves that take an item out of scope, or between namespaces, leave alone the items whose head the soak made
malformed (:mod:`devstack.soak.git_actions`): their expected rows are "the rows they had", which a move would change.
"""

from __future__ import annotations

from itembank_server import make_item_document
from itembank_server.item_documents import ITEM_TYPES

from .git_actions import AUTHOR_NAMES, document_bytes
from .gitclient import GitFailed
from .journal import DONE, REFUSED, SKIPPED, Entry
from .stack import GROUP, OUTSIDE, SUBGROUPS
from .world import World

SCOPE_NAMESPACES = (GROUP, *SUBGROUPS)


def movable(world: World) -> list[dict]:
    return [p for p in world.projects_in_scope() if p["id"] not in world.malformed]


def answered(world: World, kind: str, answer, project_id: int, detail: str) -> Entry:
    outcome = DONE if answer.ok else REFUSED
    return world.journal.record(kind, outcome, f"{detail}: {answer.short()}", project_id)


def create(world: World) -> Entry:
    """``POST /projects`` in the group or a subgroup, then the first push of item.json (a new item id)."""
    namespace = GROUP if world.rng.random() < 0.6 else world.rng.choice(SUBGROUPS)
    item_id = str(next(world.new_ids))
    answer = world.rest.create_project(world.group(namespace)["id"], item_id)
    if not answer.ok:
        return world.journal.record("create", REFUSED, f"{namespace}/{item_id}: {answer.short()}")
    project = answer.body
    document = make_item_document(item_id, world.rng.choice(ITEM_TYPES), world.rng)
    author = world.rng.choice(AUTHOR_NAMES)
    try:
        sha = world.git.commit_and_push(project, {"item.json": document_bytes(document)}, "Create item", author)
    except GitFailed as error:
        return world.journal.record(
            "create", REFUSED, f"created {project['path_with_namespace']}, first push failed: {error}", project["id"]
        )
    world.journal.pushed(project["id"], sha, expects_row=True)
    return world.journal.record(
        "create",
        DONE,
        f"{project['path_with_namespace']}, item {item_id}, first push {sha[:10]} by {author}",
        project["id"],
    )


def delete(world: World) -> Entry:
    project = world.pick(world.projects_in_scope())
    if project is None:
        return world.journal.record("delete", SKIPPED, "no project")
    answer = world.rest.delete_project(project["id"])
    if answer.ok:
        world.git.forget(project["id"])
        world.malformed.pop(project["id"], None)
    return answered(world, "delete", answer, project["id"], project["path_with_namespace"])


def rename(world: World) -> Entry:
    """A new path (and name) in the same namespace: the old URL is gone, the item id stays."""
    project = world.pick(world.projects_in_scope())
    if project is None:
        return world.journal.record("rename", SKIPPED, "no project")
    base = project["path"].split("-r")[0]
    new_path = f"{base}-r{world.rng.randint(100, 999)}"
    answer = world.rest.rename_project(project["id"], new_path)
    return answered(world, "rename", answer, project["id"], f"{project['path_with_namespace']} -> {new_path}")


def transfer(world: World, kind: str, project: dict | None, target: str) -> Entry:
    if project is None:
        return world.journal.record(kind, SKIPPED, f"no project to move to {target}")
    answer = world.rest.transfer_project(project["id"], target)
    return answered(world, kind, answer, project["id"], f"{project['path_with_namespace']} -> {target}")


def transfer_out(world: World) -> Entry:
    """To a group outside the configured one: GitLab's positive statement that the item left the bank."""
    return transfer(world, "transfer_out", world.pick(movable(world)), OUTSIDE)


def transfer_back(world: World) -> Entry:
    """A project that was transferred out comes back, to the group or a subgroup."""
    target = GROUP if world.rng.random() < 0.6 else world.rng.choice(SUBGROUPS)
    return transfer(world, "transfer_back", world.pick(world.outside_projects()), target)


def transfer_within(world: World) -> Entry:
    """Between the group and its subgroups (either way), staying in scope."""
    project = world.pick(movable(world))
    if project is None:
        return world.journal.record("transfer_within", SKIPPED, "no project")
    targets = [n for n in SCOPE_NAMESPACES if n != project["namespace"]["full_path"]]
    return transfer(world, "transfer_within", project, world.rng.choice(targets))


def archive(world: World) -> Entry:
    project = world.pick([p for p in world.projects_in_scope() if not p["archived"]])
    if project is None:
        return world.journal.record("archive", SKIPPED, "no unarchived project")
    answer = world.rest.archive_project(project["id"], True)
    return answered(world, "archive", answer, project["id"], project["path_with_namespace"])


def unarchive(world: World) -> Entry:
    project = world.pick([p for p in world.projects_in_scope() if p["archived"]])
    if project is None:
        return world.journal.record("unarchive", SKIPPED, "no archived project")
    answer = world.rest.archive_project(project["id"], False)
    return answered(world, "unarchive", answer, project["id"], project["path_with_namespace"])
