"""Users, personal access tokens and group memberships of the item bank, and GitLab's access levels.

Access follows GitLab's permission model (https://docs.gitlab.com/user/permissions/): a user's role in a group is
the highest of its memberships in that group and its ancestor groups (membership is inherited by subgroups and
their projects, https://docs.gitlab.com/user/group/#inherited-membership); administrators can do everything
(https://docs.gitlab.com/administration/#administrator-access). Tokens are stored as SHA-256 digests only.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping

from .records import NotFoundError, timestamp

# Gitlab::Access levels, https://docs.gitlab.com/api/members/#roles
NO_ACCESS = 0
GUEST = 10
REPORTER = 20
DEVELOPER = 30
MAINTAINER = 40
OWNER = 50
ROLES = {"guest": GUEST, "reporter": REPORTER, "developer": DEVELOPER, "maintainer": MAINTAINER, "owner": OWNER}

ROOT_USERNAME = "root"

USERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    username   TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name       TEXT NOT NULL,
    email      TEXT,
    admin      INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS personal_access_tokens (
    token_sha256 TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    group_id     INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    access_level INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
"""

_ANCESTORS = """
WITH RECURSIVE lineage(id, parent_id) AS (
    SELECT id, parent_id FROM groups WHERE id = ?
    UNION ALL SELECT g.id, g.parent_id FROM groups g JOIN lineage l ON g.id = l.parent_id
)
SELECT max(m.access_level) FROM members m JOIN lineage l ON m.group_id = l.id WHERE m.user_id = ?
"""


class UserExistsError(ValueError):
    """A user with that username already exists."""


class MemberExistsError(ValueError):
    """The user is already a direct member of the group."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class UserStore:
    """The users part of :class:`~itembank_server.bank_store.ItemBank` (mixed in; uses its connection and lock)."""

    def create_user(
        self, username: str, *, name: str | None = None, email: str | None = None, admin: bool = False
    ) -> dict:
        try:
            with self._transaction() as db:  # type: ignore[attr-defined]
                cursor = db.execute(
                    "INSERT INTO users (username, name, email, admin, created_at) VALUES (?, ?, ?, ?, ?)",
                    (username, name or username, email, int(admin), timestamp()),
                )
        except sqlite3.IntegrityError:
            raise UserExistsError(f"username {username!r} is taken") from None
        return self.user(cursor.lastrowid)  # type: ignore[arg-type]

    def find_user(self, ref: int | str) -> dict | None:
        """The user with numeric id ``ref`` or username ``ref``, or None."""
        if isinstance(ref, int) or ref.isdigit():
            rows = self._rows("SELECT * FROM users WHERE id = ?", (int(ref),))  # type: ignore[attr-defined]
        else:
            rows = self._rows("SELECT * FROM users WHERE username = ?", (ref,))  # type: ignore[attr-defined]
        return _user_dict(rows[0]) if rows else None

    def user(self, ref: int | str) -> dict:
        found = self.find_user(ref)
        if found is None:
            raise NotFoundError(f"user {ref!r}")
        return found

    def ensure_user(self, username: str, *, admin: bool = False) -> dict:
        """The user named ``username``, created if absent (an existing user is returned unchanged)."""
        return self.find_user(username) or self.create_user(username, admin=admin)

    def add_token(self, user_id: int, token: str) -> None:
        """Let ``token`` authenticate as the user; a token already owned by another user is refused."""
        digest = token_digest(token)
        with self._transaction() as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT user_id FROM personal_access_tokens WHERE token_sha256 = ?", (digest,)).fetchone()
            if row is not None and row["user_id"] != user_id:
                raise ValueError("that token already belongs to another user")
            if row is None:
                db.execute(
                    "INSERT INTO personal_access_tokens (token_sha256, user_id, created_at) VALUES (?, ?, ?)",
                    (digest, user_id, timestamp()),
                )

    def user_for_token(self, token: str | None) -> dict | None:
        if not token:
            return None
        rows = self._rows(  # type: ignore[attr-defined]
            "SELECT u.* FROM users u JOIN personal_access_tokens t ON t.user_id = u.id WHERE t.token_sha256 = ?",
            (token_digest(token),),
        )
        return _user_dict(rows[0]) if rows else None

    # -- memberships -------------------------------------------------------------------------------

    def add_member(self, group: int | str | Mapping, user_id: int, access_level: int) -> dict:
        """Make the user a direct member of the group with ``access_level``."""
        group_id = self._group_id(group)
        self.user(user_id)
        try:
            with self._transaction() as db:  # type: ignore[attr-defined]
                db.execute(
                    "INSERT INTO members (group_id, user_id, access_level, created_at) VALUES (?, ?, ?, ?)",
                    (group_id, user_id, access_level, timestamp()),
                )
        except sqlite3.IntegrityError:
            raise MemberExistsError(f"user {user_id} is already a member of group {group_id}") from None
        return self.member(group_id, user_id)  # type: ignore[return-value]

    def remove_member(self, group: int | str | Mapping, user_id: int) -> bool:
        group_id = self._group_id(group)
        with self._transaction() as db:  # type: ignore[attr-defined]
            cursor = db.execute("DELETE FROM members WHERE group_id = ? AND user_id = ?", (group_id, user_id))
        return cursor.rowcount > 0

    def member(self, group: int | str | Mapping, user_id: int) -> dict | None:
        """The direct membership of the user in the group (user fields plus access_level), or None."""
        rows = self._rows(  # type: ignore[attr-defined]
            f"{MEMBER_SELECT} WHERE m.group_id = ? AND m.user_id = ?", (self._group_id(group), user_id)
        )
        return member_dict(rows[0]) if rows else None

    def members(self, group: int | str | Mapping) -> list[dict]:
        """The group's direct members, by user id."""
        sql = f"{MEMBER_SELECT} WHERE m.group_id = ? ORDER BY u.id"
        rows = self._rows(sql, (self._group_id(group),))  # type: ignore[attr-defined]
        return [member_dict(row) for row in rows]

    def access_level(self, user: Mapping, group_id: int) -> int:
        """The user's role in the group: its highest membership there or in an ancestor; OWNER for admins."""
        if user["admin"]:
            return OWNER
        level = self._rows(_ANCESTORS, (group_id, user["id"]))[0][0]  # type: ignore[attr-defined]
        return level or NO_ACCESS

    def _group_id(self, group: int | str | Mapping) -> int:
        if isinstance(group, Mapping):
            return int(group["id"])
        return int(self.group(group)["id"])  # type: ignore[attr-defined]


MEMBER_SELECT = (
    "SELECT u.*, m.access_level, m.created_at AS member_since FROM members m JOIN users u ON u.id = m.user_id"
)


def _user_dict(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "username": row["username"],
        "name": row["name"],
        "email": row["email"],
        "admin": bool(row["admin"]),
        "created_at": row["created_at"],
    }


def member_dict(row: sqlite3.Row) -> dict:
    return {**_user_dict(row), "access_level": row["access_level"], "member_since": row["member_since"]}
