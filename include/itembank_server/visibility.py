"""Visibility levels of groups and projects, and who may see what (https://docs.gitlab.com/user/public_access/).

A public group or project is visible to every signed-in user (the server answers no anonymous request: a request
without a valid token is 401, as before), an internal one to every signed-in user, a private one to its members,
the members of its ancestor groups and administrators (https://docs.gitlab.com/user/permissions/). A private group
is also visible to a user who can see one of the projects in it or its subgroups (``GroupPolicy``'s ``has_projects``
enabling ``read_group``, with ``FindGroupProjects``: ``GroupProjectsFinder`` with ``include_subgroups``).

The levels are ``Gitlab::VisibilityLevel``'s (0, 10, 20). The model validations and their messages are GitLab's:
``Project#visibility_level_allowed_by_group`` ("public is not allowed in a private group.") and
``Group#visibility_level_allowed_by_projects``/``_by_sub_groups``/``_by_parent`` (app/models/group.rb), checked in
that order, every failing one adding its message.
"""

from __future__ import annotations

from collections.abc import Mapping

from .records import timestamp
from .users import GUEST, REPORTER

PRIVATE = 0
INTERNAL = 10
PUBLIC = 20
LEVELS = {"private": PRIVATE, "internal": INTERNAL, "public": PUBLIC}
NAMES = {level: name for name, level in LEVELS.items()}

_REACHABLE_GROUPS = """
WITH RECURSIVE reach(id) AS (
    SELECT group_id FROM members WHERE user_id = ?
    UNION SELECT g.id FROM groups g JOIN reach r ON g.parent_id = r.id
)
SELECT id FROM reach
"""


class VisibilityError(ValueError):
    """A change GitLab's model validations refuse: ``messages`` are the ``visibility_level`` errors."""

    def __init__(self, messages: list[str]):
        super().__init__(" ".join(messages))
        self.messages = messages


def level_of(visibility: str | int) -> int:
    """The level of ``"private"``/``"internal"``/``"public"`` (or of a level given as a number)."""
    if isinstance(visibility, int) and visibility in NAMES:
        return visibility
    if isinstance(visibility, str) and visibility in LEVELS:
        return LEVELS[visibility]
    raise ValueError(f"visibility must be one of {', '.join(LEVELS)}, not {visibility!r}")


def name_of(level: int) -> str:
    return NAMES[level]


def visible_projects_clause(user: Mapping | None) -> tuple[str, list]:
    """SQL over ``projects p`` keeping the projects ``user`` may see (``Project.public_or_visible_to_user``);
    None or an administrator: every project."""
    if user is None or user["admin"]:
        return "1", []
    clause = (
        f"(p.visibility_level >= {INTERNAL}"
        " OR p.id IN (SELECT project_id FROM project_members WHERE user_id = ?)"
        f" OR p.group_id IN ({_REACHABLE_GROUPS}))"
    )
    return clause, [user["id"], user["id"]]


def migrate_visibility_columns(db) -> None:
    """Give a bank made before visibility levels existed its columns: everything in it stays private."""
    for table in ("groups", "projects"):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if "visibility_level" not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN visibility_level INTEGER NOT NULL DEFAULT {PRIVATE}")


class VisibilityStore:
    """Mixed into ``ItemBank``: reading and changing visibility, and what a user may see."""

    # -- changing visibility -----------------------------------------------------------------------

    def set_group_visibility(self, group: int | str | Mapping, visibility: str | int) -> dict:
        """Change the group's visibility; raises :class:`VisibilityError` with GitLab's messages when one of its
        projects or subgroups is more visible than the new level, or its parent less visible. Fires no hook."""
        target = self.group(group["id"] if isinstance(group, Mapping) else group)  # type: ignore[attr-defined]
        level = level_of(visibility)
        with self._transaction() as db:  # type: ignore[attr-defined]
            problems = self._group_visibility_problems(db, target, level)
            if problems:
                raise VisibilityError(problems)
            db.execute("UPDATE groups SET visibility_level = ? WHERE id = ?", (level, target["id"]))
        return self.group(target["id"])  # type: ignore[attr-defined]

    def set_project_visibility(self, project: int | str | Mapping, visibility: str | int) -> dict:
        """Change the project's visibility; raises :class:`VisibilityError` ("public is not allowed in a private
        group.") when its group is less visible. Fires no hook."""
        found = self.project(project["id"] if isinstance(project, Mapping) else project)  # type: ignore[attr-defined]
        level = level_of(visibility)
        with self._transaction() as db:  # type: ignore[attr-defined]
            group_level = db.execute(
                "SELECT visibility_level FROM groups WHERE id = ?", (found["namespace"]["id"],)
            ).fetchone()[0]
            if level > group_level:
                raise VisibilityError([f"{name_of(level)} is not allowed in a {name_of(group_level)} group."])
            db.execute(
                "UPDATE projects SET visibility_level = ?, updated_at = ? WHERE id = ?",
                (level, timestamp(), found["id"]),
            )
        return self.project(found["id"])  # type: ignore[attr-defined]

    def _group_visibility_problems(self, db, group: Mapping, level: int) -> list[str]:
        name = name_of(level)
        problems = []
        higher_project = db.execute(
            "SELECT 1 FROM projects WHERE group_id = ? AND visibility_level > ? LIMIT 1", (group["id"], level)
        ).fetchone()
        if higher_project:
            problems.append(f"{name} is not allowed since this group contains projects with higher visibility.")
        higher_subgroup = db.execute(
            "SELECT 1 FROM groups WHERE parent_id = ? AND visibility_level > ? LIMIT 1", (group["id"], level)
        ).fetchone()
        if higher_subgroup:
            problems.append(f"{name} is not allowed since there are sub-groups with higher visibility.")
        if group["parent_id"] is not None:
            parent_level = db.execute(
                "SELECT visibility_level FROM groups WHERE id = ?", (group["parent_id"],)
            ).fetchone()[0]
            if level > parent_level:
                problems.append(
                    f"{name} is not allowed since the parent group has a {name_of(parent_level)} visibility."
                )
        return problems

    # -- who sees what -----------------------------------------------------------------------------

    def can_read_group(self, user: Mapping, group: Mapping) -> bool:
        """``read_group``: administrators, internal and public groups, members of the group or an ancestor, and
        users who can see a project in the group or its subgroups (``has_projects``)."""
        if user["admin"] or group["visibility_level"] >= INTERNAL:
            return True
        if self.access_level(user, group["id"]) >= GUEST:  # type: ignore[attr-defined]
            return True
        count_projects = self.count_projects  # type: ignore[attr-defined]
        return count_projects(group["id"], include_subgroups=True, visible_to=user, cap=1) > 0

    def can_read_group_members(self, user: Mapping, group: Mapping) -> bool:
        """``read_group_member``: ``read_group``, except for users without a membership in a private group
        (``GroupPolicy#can_read_group_member?``)."""
        level = self.access_level(user, group["id"])  # type: ignore[attr-defined]
        if group["visibility_level"] == PRIVATE and level < GUEST:
            return False
        return self.can_read_group(user, group)

    def can_read_project(self, user: Mapping, project: Mapping, level: int | None = None) -> bool:
        """``read_project``: any role on the project (``level``, computed if None), or an internal or public
        project (``public_user_access``)."""
        if project["visibility_level"] >= INTERNAL:
            return True
        if level is None:
            level = self.project_access_level(user, project)  # type: ignore[attr-defined]
        return level >= GUEST

    def can_download_code(self, user: Mapping, project: Mapping, level: int | None = None) -> bool:
        """``download_code``: Reporter or above, or any signed-in user of an internal or public project
        (``public_access``); a Guest of a private project may not (https://docs.gitlab.com/user/permissions/)."""
        if project["visibility_level"] >= INTERNAL:
            return True
        if level is None:
            level = self.project_access_level(user, project)  # type: ignore[attr-defined]
        return level >= REPORTER
