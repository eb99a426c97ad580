"""Access and visibility, through the members API and ``PUT /groups|projects/:id``:

* ``access_flap``: the sync user taken out of the group (it then sees nothing private of it), put back 4 to 12 s
  later;
* ``access_narrow``: the sync user taken out of the group but made a Maintainer of the first subgroup, so it still
  reads the group (GitLab shows a group to whoever sees a project below it) but only the subgroup's projects: the
  group's own projects answer 404 to it although they exist; put back 4 to 12 s later;
* ``visibility``: the group or a project made internal or private again (GitLab refuses a project more visible
  than its group, and a group less visible than its projects: refusals are answers too). An internal project is
  readable by any signed-in user, so while access is removed IMRT may read some projects and not others.

Visibility is left as it is at the end: the sync user, a Maintainer of the group again, reads every project.
"""

from __future__ import annotations

from itembank_server.users import MAINTAINER

from .journal import DONE, REFUSED, SKIPPED, Entry
from .stack import GROUP, SUBGROUPS, SYNC_USER
from .world import World


def sync_user_id(world: World) -> int:
    return world.stack.users[SYNC_USER]["id"]


def access_flap(world: World) -> Entry:
    return take_access(world, "access_flap", narrow_to=None)


def access_narrow(world: World) -> Entry:
    return take_access(world, "access_narrow", narrow_to=SUBGROUPS[0])


def take_access(world: World, kind: str, narrow_to: str | None) -> Entry:
    if world.access_removed:
        return world.journal.record(kind, SKIPPED, "access already taken")
    answer = world.rest.remove_member(world.group(GROUP)["id"], sync_user_id(world))
    if not answer.ok:
        return world.journal.record(kind, REFUSED, f"remove from {GROUP}: {answer.short()}")
    world.access_removed = True
    detail = f"{SYNC_USER} removed from {GROUP}"
    if narrow_to:
        added = world.rest.add_member(world.group(narrow_to)["id"], sync_user_id(world), MAINTAINER)
        detail += f", added to {narrow_to} as Maintainer: {added.status}"
    seconds = world.rng.uniform(4, 12)
    world.follow_ups.add(seconds, "restore_access", lambda: restore_access(world, narrow_to))
    return world.journal.record(kind, DONE, f"{detail}, for {seconds:.0f} s")


def restore_access(world: World, narrowed_to: str | None) -> None:
    """The sync user a Maintainer of the group again (and no longer a direct member of the subgroup)."""
    answer = world.rest.add_member(world.group(GROUP)["id"], sync_user_id(world), MAINTAINER)
    detail = f"{SYNC_USER} back in {GROUP}: {answer.status}"
    if narrowed_to:
        removed = world.rest.remove_member(world.group(narrowed_to)["id"], sync_user_id(world))
        detail += f", removed from {narrowed_to}: {removed.status}"
    world.access_removed = world.bank.member(world.group(GROUP)["id"], sync_user_id(world)) is None
    world.journal.record("restore_access", REFUSED if world.access_removed else DONE, detail)


def visibility(world: World) -> Entry:
    """Flip a project, or a group, between private and internal; mostly changes GitLab allows (a project may be
    internal only in an internal group, a group private only when nothing in it is internal), now and then one it
    refuses."""
    flippable = [
        p
        for p in world.projects_in_scope()
        if p.get("visibility_level", 0) > 0 or p["namespace"].get("visibility_level", 0) > 0
    ]
    if flippable and world.rng.random() < 0.7:
        project = world.rng.choice(flippable)
        now = "private" if project.get("visibility_level", 0) == 0 else "internal"
        wanted = "internal" if now == "private" else "private"
        answer = world.rest.set_project_visibility(project["id"], wanted)
        return answered(world, answer, f"{project['path_with_namespace']} {now} -> {wanted}", project["id"])
    group = world.group(world.rng.choice((GROUP, GROUP, SUBGROUPS[0])))
    now = "private" if group.get("visibility_level", 0) == 0 else "internal"
    wanted = "internal" if now == "private" else "private"
    answer = world.rest.set_group_visibility(group["id"], wanted)
    return answered(world, answer, f"{group['full_path']} {now} -> {wanted}")


def answered(world: World, answer, detail: str, project_id: int | None = None) -> Entry:
    return world.journal.record("visibility", DONE if answer.ok else REFUSED, f"{detail}: {answer.short()}", project_id)
