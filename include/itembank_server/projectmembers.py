"""Project memberships, a user's role on a project, and memberships including inherited ones.

A user's role on a project is the highest of its direct project membership and its memberships of the project's
group and that group's ancestors; administrators have every right (https://docs.gitlab.com/user/permissions/,
https://docs.gitlab.com/user/project/members/#membership-types). "All members" of a group or project are its direct
members and those inherited from ancestor groups, one per user with the highest role
(https://docs.gitlab.com/api/members/#list-all-members-of-a-group-or-project-including-inherited-and-invited-members).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from .records import timestamp
from .users import MEMBER_SELECT, NO_ACCESS, OWNER, MemberExistsError, member_dict

PROJECT_MEMBERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS project_members (
    project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    access_level INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX IF NOT EXISTS project_members_by_user ON project_members (user_id);
"""

_PROJECT_MEMBER_SELECT = (
    "SELECT u.*, m.access_level, m.created_at AS member_since FROM project_members m JOIN users u ON u.id = m.user_id"
)

# Memberships of a group and its ancestors, nearest first (depth 0 is the group itself).
_LINEAGE_MEMBERS = f"""
WITH RECURSIVE lineage(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM groups WHERE id = ?
    UNION ALL SELECT g.id, g.parent_id, l.depth + 1 FROM groups g JOIN lineage l ON g.id = l.parent_id
)
{MEMBER_SELECT.replace("SELECT u.*", "SELECT u.*, l.depth, g.name AS group_name")}
JOIN lineage l ON l.id = m.group_id JOIN groups g ON g.id = m.group_id
"""


class ProjectMemberStore:
    """Mixed into ``ItemBank`` (uses its connection, lock, ``project`` and ``access_level``)."""

    def add_project_member(self, project: int | str | Mapping, user_id: int, access_level: int) -> dict:
        """Make the user a direct member of the project with ``access_level``; MemberExistsError if it is one."""
        project_id = self._project_id(project)
        self.user(user_id)  # type: ignore[attr-defined]
        try:
            with self._transaction() as db:  # type: ignore[attr-defined]
                db.execute(
                    "INSERT INTO project_members (project_id, user_id, access_level, created_at) VALUES (?, ?, ?, ?)",
                    (project_id, user_id, access_level, timestamp()),
                )
        except sqlite3.IntegrityError:
            raise MemberExistsError(f"user {user_id} is already a member of project {project_id}") from None
        return self.project_member(project_id, user_id)  # type: ignore[return-value]

    def remove_project_member(self, project: int | str | Mapping, user_id: int) -> bool:
        with self._transaction() as db:  # type: ignore[attr-defined]
            cursor = db.execute(
                "DELETE FROM project_members WHERE project_id = ? AND user_id = ?", (self._project_id(project), user_id)
            )
        return cursor.rowcount > 0

    def project_member(self, project: int | str | Mapping, user_id: int) -> dict | None:
        """The direct membership of the user in the project (user fields plus access_level), or None."""
        sql = f"{_PROJECT_MEMBER_SELECT} WHERE m.project_id = ? AND m.user_id = ?"
        rows = self._rows(sql, (self._project_id(project), user_id))  # type: ignore[attr-defined]
        return member_dict(rows[0]) if rows else None

    def project_members(self, project: int | str | Mapping) -> list[dict]:
        """The project's direct members, by user id."""
        sql = f"{_PROJECT_MEMBER_SELECT} WHERE m.project_id = ? ORDER BY u.id"
        return [member_dict(row) for row in self._rows(sql, (self._project_id(project),))]  # type: ignore[attr-defined]

    def project_access_level(self, user: Mapping, project: int | str | Mapping) -> int:
        """The user's role on the project: the highest of its project and group memberships; OWNER for admins."""
        if user["admin"]:
            return OWNER
        found = project if isinstance(project, Mapping) else self.project(project)  # type: ignore[attr-defined]
        direct = self.project_member(found, user["id"])
        group_level = self.access_level(user, found["namespace"]["id"])  # type: ignore[attr-defined]
        return max(direct["access_level"] if direct else NO_ACCESS, group_level)

    # -- memberships including inherited ones ------------------------------------------------------

    def all_group_members(self, group: int | str | Mapping) -> list[dict]:
        """The group's members and those of its ancestors: per user the highest membership, by user id."""
        return _highest_per_user(self._lineage_memberships(self._group_id(group)))  # type: ignore[attr-defined]

    def all_project_members(self, project: int | str | Mapping) -> list[dict]:
        """The project's members and those of its group and the group's ancestors, per user the highest."""
        found = project if isinstance(project, Mapping) else self.project(project)  # type: ignore[attr-defined]
        direct = [{**member, "depth": -1} for member in self.project_members(found)]
        return _highest_per_user(direct + self._lineage_memberships(found["namespace"]["id"]))

    def highest_inherited_membership(self, group_id: int, user_id: int, *, include_group: bool) -> dict | None:
        """The user's highest membership in the group's ancestors (and the group itself if ``include_group``),
        with ``group_name``: ``Member#highest_group_member`` for a member of the group (or of one of its projects).
        """
        rows = [
            row
            for row in self._lineage_memberships(group_id)
            if row["id"] == user_id and (include_group or row["depth"] > 0)
        ]
        return max(rows, key=lambda row: row["access_level"], default=None)

    def _lineage_memberships(self, group_id: int) -> list[dict]:
        rows = self._rows(_LINEAGE_MEMBERS, (group_id,))  # type: ignore[attr-defined]
        return [{**member_dict(row), "depth": row["depth"], "group_name": row["group_name"]} for row in rows]

    def _project_id(self, project: int | str | Mapping) -> int:
        if isinstance(project, Mapping):
            return int(project["id"])
        return int(self.project(project)["id"])  # type: ignore[attr-defined]


def _highest_per_user(memberships: list[dict]) -> list[dict]:
    """One membership per user: the highest role, the nearest membership among equals; by user id."""
    best: dict[int, dict] = {}
    for membership in sorted(memberships, key=lambda m: (-m["access_level"], m["depth"])):
        best.setdefault(membership["id"], membership)
    return [best[user_id] for user_id in sorted(best)]
