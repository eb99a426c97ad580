"""The persistent item bank: groups, projects and project webhooks in SQLite, one bare git repository per project."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import bank_repos
from .bank_repos import DEFAULT_AUTHOR_EMAIL, DEFAULT_AUTHOR_NAME, CommitSpec, FileContent
from .bankrules import ProjectExistsError
from .bankrules import validate_segment as _validate_segment
from .projectmembers import PROJECT_MEMBERS_SCHEMA, ProjectMemberStore
from .projectmoves import ProjectMoves
from .records import NotFoundError, timestamp
from .users import USERS_SCHEMA, UserStore
from .visibility import (
    PRIVATE,
    VisibilityError,
    VisibilityStore,
    level_of,
    migrate_visibility_columns,
    name_of,
    visible_projects_clause,
)
from .webhook_store import HOOK_SCHEMA, WebhookStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    path       TEXT NOT NULL,
    full_path  TEXT NOT NULL UNIQUE COLLATE NOCASE,
    full_name  TEXT NOT NULL,
    parent_id  INTEGER REFERENCES groups(id),
    created_at TEXT NOT NULL,
    visibility_level INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS projects (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id         INTEGER NOT NULL REFERENCES groups(id),
    name             TEXT NOT NULL,
    path             TEXT NOT NULL,
    full_path        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description      TEXT,
    default_branch   TEXT NOT NULL,
    archived         INTEGER NOT NULL DEFAULT 0,
    empty_repo       INTEGER NOT NULL DEFAULT 1,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_activity_at TEXT NOT NULL,
    visibility_level INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS projects_by_group ON projects (group_id, created_at, id);
"""

PROJECT_ORDER_COLUMNS = {
    "id": "p.id",
    "name": "p.name",
    "path": "p.path",
    "created_at": "p.created_at",
    "updated_at": "p.updated_at",
    "last_activity_at": "p.last_activity_at",
}


@dataclass(frozen=True)
class ProjectSpec:
    """A project to create in bulk, with the commits of its history (none: an empty repository).

    ``visibility`` ("private", "internal" or "public") is lowered to the group's if the group is less visible, as
    ``Projects::CreateService`` does.
    """

    path: str
    commits: Sequence[CommitSpec] = ()
    name: str | None = None
    default_branch: str = "main"
    archived: bool = False
    created_at: datetime | None = None
    visibility: str = "private"


class ItemBank(UserStore, ProjectMemberStore, VisibilityStore, WebhookStore, ProjectMoves):
    """Groups, projects and hooks of a GitLab-like item bank, persisted under ``root``."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.repos_dir = self.root / "repos"
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._repo_locks: dict[int, threading.Lock] = {}
        self._db = sqlite3.connect(self.root / "itembank.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA + USERS_SCHEMA + HOOK_SCHEMA)
        migrate_visibility_columns(self._db)
        self._db.executescript(PROJECT_MEMBERS_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- storage helpers ---------------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence | Mapping = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _repo_lock(self, project_id: int) -> threading.Lock:
        with self._lock:
            return self._repo_locks.setdefault(project_id, threading.Lock())

    # -- groups ------------------------------------------------------------------------------------

    def create_group(self, full_path: str, *, name: str | None = None, visibility: str | None = None) -> dict:
        """The group at ``full_path``, created (with missing parents) if needed.

        ``visibility`` ("private", the default, "internal" or "public") is the new groups' level, missing parents
        included; given for an existing group it changes that group's (:meth:`set_group_visibility`). A level above
        an existing parent's raises :class:`VisibilityError` with GitLab's message.
        """
        segments = full_path.strip("/").split("/")
        for segment in segments:
            _validate_segment(segment, "group")
        level = PRIVATE if visibility is None else level_of(visibility)
        with self._transaction() as db:
            parent: sqlite3.Row | None = None
            for depth, segment in enumerate(segments, start=1):
                path = "/".join(segments[:depth])
                row = db.execute("SELECT * FROM groups WHERE full_path = ?", (path,)).fetchone()
                if row is None:
                    leaf_name = name if (name and depth == len(segments)) else segment
                    row = self._insert_group(db, parent, leaf_name, segment, path, level)
                parent = row
        group = self._group_dict(parent)
        if visibility is not None and group["visibility_level"] != level:
            group = self.set_group_visibility(group, level)
        return group

    def _insert_group(
        self, db: sqlite3.Connection, parent: sqlite3.Row | None, name: str, segment: str, path: str, level: int
    ) -> sqlite3.Row:
        if parent is not None and level > parent["visibility_level"]:
            parent_name = name_of(parent["visibility_level"])
            raise VisibilityError(
                [f"{name_of(level)} is not allowed since the parent group has a {parent_name} visibility."]
            )
        full_name = f"{parent['full_name']} / {name}" if parent else name
        db.execute(
            "INSERT INTO groups (name, path, full_path, full_name, parent_id, created_at, visibility_level)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, segment, path, full_name, parent["id"] if parent else None, timestamp(), level),
        )
        return db.execute("SELECT * FROM groups WHERE full_path = ?", (path,)).fetchone()

    def find_group(self, ref: int | str, *, by_path: bool = False) -> dict | None:
        """The group with numeric id ``ref`` (int or digit string) or full path ``ref``, or None; ``by_path``: ``ref``
        is a full path even when it is all digits (GraphQL's ``fullPath`` arguments)."""
        if isinstance(ref, int) or (ref.isdigit() and not by_path):
            rows = self._rows("SELECT * FROM groups WHERE id = ?", (int(ref),))
        else:
            rows = self._rows("SELECT * FROM groups WHERE full_path = ?", (ref,))
        return self._group_dict(rows[0]) if rows else None

    def group(self, ref: int | str) -> dict:
        found = self.find_group(ref)
        if found is None:
            raise NotFoundError(f"group {ref!r}")
        return found

    def _resolve_group(self, group: int | str | Mapping) -> dict:
        if isinstance(group, Mapping):
            return self.group(group["id"])
        found = self.find_group(group)
        if found is not None:
            return found
        if isinstance(group, str) and not group.isdigit():
            return self.create_group(group)
        raise NotFoundError(f"group {group!r}")

    @staticmethod
    def _group_dict(row: sqlite3.Row) -> dict:
        keys = ("id", "name", "path", "full_path", "full_name", "parent_id", "created_at", "visibility_level")
        return {k: row[k] for k in keys}

    # -- projects ----------------------------------------------------------------------------------

    def create_project(
        self,
        group: int | str | Mapping,
        path: str,
        files: Mapping[str, FileContent] | None = None,
        *,
        author_name: str = DEFAULT_AUTHOR_NAME,
        author_email: str = DEFAULT_AUTHOR_EMAIL,
        message: str = "Create item",
        default_branch: str = "main",
        committed_at: datetime | None = None,
        name: str | None = None,
        archived: bool = False,
        created_at: datetime | None = None,
        visibility: str = "private",
    ) -> dict:
        """Create a project whose repository holds one commit with ``files`` (an empty repository if None).

        ``visibility`` is lowered to the group's when the group is less visible (``Projects::CreateService``).
        """
        commits = []
        if files is not None:
            commits.append(CommitSpec(files, message, author_name, author_email, committed_at))
        spec = ProjectSpec(path, commits, name, default_branch, archived, created_at or committed_at, visibility)
        return self.create_projects(group, [spec])[0]

    def create_projects(
        self,
        group: int | str | Mapping,
        specs: Iterable[ProjectSpec],
        *,
        workers: int | None = None,
        shared_objects: bool = False,
    ) -> list[dict]:
        """Create many projects at once: repositories are written in parallel, rows in one transaction.

        ``shared_objects``: every history is written by one ``git fast-import`` into the bank's shared object store
        (``bank_repos.SHARED_STORE``) and each repository is a skeleton pointing at it (git alternates) with its
        branch ref written directly: the same commits and shas, written in minutes for 100,000 projects where one
        fast-import per repository takes hours.

        Fires no hook: only changes made through the HTTP front ends do (``POST /projects`` fires project_create).
        """
        group_row = self._resolve_group(group)
        specs = list(specs)
        self._check_new_paths(group_row, specs)
        with_history = [spec for spec in specs if spec.commits]
        if with_history and shared_objects:
            self._write_linked_repos(group_row, with_history)
        elif with_history:
            workers = workers or max(2, (os.cpu_count() or 2) * 2)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda spec: self._write_new_repo(group_row, spec), with_history))
        return self._insert_projects(group_row, specs)

    def _write_linked_repos(self, group: dict, specs: Sequence[ProjectSpec]) -> None:
        store = self.root / bank_repos.SHARED_STORE
        heads = bank_repos.write_shared_histories(store, [spec.commits for spec in specs])
        for spec, head in zip(specs, heads, strict=True):
            repo = self.repos_dir / group["full_path"] / f"{spec.path}.git"
            shutil.rmtree(repo, ignore_errors=True)  # a stale directory without a project row is garbage
            bank_repos.init_linked_repo(repo, spec.default_branch, store, head)

    def _check_new_paths(self, group: dict, specs: Sequence[ProjectSpec]) -> None:
        seen: set[str] = set()
        for spec in specs:
            _validate_segment(spec.path, "project")
            if spec.path.lower() in seen:
                raise ProjectExistsError(f"duplicate project path {spec.path!r}")
            seen.add(spec.path.lower())
        existing = {
            row["path"].lower() for row in self._rows("SELECT path FROM projects WHERE group_id = ?", (group["id"],))
        }
        clash = sorted(seen & existing)
        if clash:
            raise ProjectExistsError(f"project path(s) already taken in {group['full_path']}: {', '.join(clash[:5])}")

    def _write_new_repo(self, group: dict, spec: ProjectSpec) -> None:
        repo = self.repos_dir / group["full_path"] / f"{spec.path}.git"
        shutil.rmtree(repo, ignore_errors=True)  # a stale directory without a project row is garbage
        bank_repos.init_bare_repo(repo, spec.default_branch)
        bank_repos.fast_import(repo, spec.default_branch, spec.commits, want_shas=False)

    def _insert_projects(self, group: dict, specs: Sequence[ProjectSpec]) -> list[dict]:
        created = []
        now = timestamp()
        with self._transaction() as db:
            for spec in specs:
                commit_times = [timestamp(c.committed_at) if c.committed_at else now for c in spec.commits]
                created_at = (
                    timestamp(spec.created_at) if spec.created_at else (commit_times[0] if commit_times else now)
                )
                last_activity = max([created_at, *commit_times])
                level = min(level_of(spec.visibility), group["visibility_level"])
                cursor = db.execute(
                    "INSERT INTO projects (group_id, name, path, full_path, default_branch, archived, empty_repo,"
                    " created_at, updated_at, last_activity_at, visibility_level)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        group["id"],
                        spec.name or spec.path,
                        spec.path,
                        f"{group['full_path']}/{spec.path}",
                        spec.default_branch,
                        int(spec.archived),
                        int(not spec.commits),
                        created_at,
                        last_activity,
                        last_activity,
                        level,
                    ),
                )
                created.append(
                    self._project_from_values(
                        group,
                        id=cursor.lastrowid,
                        name=spec.name or spec.path,
                        path=spec.path,
                        description=None,
                        default_branch=spec.default_branch,
                        archived=spec.archived,
                        empty_repo=not spec.commits,
                        created_at=created_at,
                        updated_at=last_activity,
                        last_activity_at=last_activity,
                        visibility_level=level,
                    )
                )
        return created

    _PROJECT_SELECT = (
        "SELECT p.*, g.name AS g_name, g.path AS g_path, g.full_path AS g_full_path, g.full_name AS g_full_name,"
        " g.parent_id AS g_parent_id, g.created_at AS g_created_at, g.visibility_level AS g_visibility_level"
        " FROM projects p JOIN groups g ON g.id = p.group_id"
    )

    def find_project(self, ref: int | str, *, by_path: bool = False) -> dict | None:
        """The project with numeric id ``ref`` (int or digit string) or full path ``ref``, or None; ``by_path``:
        ``ref`` is a full path even when it is all digits."""
        if isinstance(ref, int) or (ref.isdigit() and not by_path):
            rows = self._rows(f"{self._PROJECT_SELECT} WHERE p.id = ?", (int(ref),))
        else:
            rows = self._rows(f"{self._PROJECT_SELECT} WHERE p.full_path = ?", (ref,))
        return self._project_dict(rows[0]) if rows else None

    def project(self, project_id: int | str) -> dict:
        found = self.find_project(project_id)
        if found is None:
            raise NotFoundError(f"project {project_id!r}")
        return found

    def projects(self, group: int | str, *, include_subgroups: bool = False) -> list[dict]:
        """All projects of the group, oldest id first."""
        return self.list_projects(
            self.group(group)["id"], order_by="id", sort="asc", include_subgroups=include_subgroups
        )

    def list_projects(
        self,
        group_id: int | None,
        *,
        order_by: str = "created_at",
        sort: str = "desc",
        archived: bool | None = None,
        include_subgroups: bool = False,
        id_after: int | None = None,
        id_before: int | None = None,
        offset: int = 0,
        limit: int | None = None,
        visible_to: Mapping | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[dict]:
        """One window of a group's projects (every group's when ``group_id`` is None), ordered like GitLab (``id``
        as tie-breaker in the same direction).

        ``id_after``/``id_before`` keep only ids above/below them (``ProjectsFinder``'s filters of the same names);
        ``visible_to`` (a user) keeps only the projects that user may see; ``ids`` only those ids.
        """
        direction = {"asc": "ASC", "desc": "DESC"}[sort]
        where, params = self._project_filter(
            group_id, archived, include_subgroups, id_after, id_before, visible_to, ids
        )
        order = f"{PROJECT_ORDER_COLUMNS[order_by]} {direction}"
        if order_by != "id":
            order += f", p.id {direction}"
        sql = f"{self._PROJECT_SELECT} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        rows = self._rows(sql, [*params, -1 if limit is None else limit, offset])
        return [self._project_dict(row) for row in rows]

    def count_projects(
        self,
        group_id: int | None,
        *,
        archived: bool | None = None,
        include_subgroups: bool = False,
        id_after: int | None = None,
        id_before: int | None = None,
        cap: int | None = None,
        visible_to: Mapping | None = None,
        ids: Sequence[int] | None = None,
    ) -> int:
        """How many projects match, counting at most ``cap`` (GitLab's limited count)."""
        where, params = self._project_filter(
            group_id, archived, include_subgroups, id_after, id_before, visible_to, ids
        )
        inner = f"SELECT 1 FROM projects p WHERE {where} LIMIT ?"
        return self._rows(f"SELECT count(*) FROM ({inner})", [*params, -1 if cap is None else cap])[0][0]

    def _project_filter(
        self,
        group_id: int | None,
        archived: bool | None,
        include_subgroups: bool,
        id_after: int | None = None,
        id_before: int | None = None,
        visible_to: Mapping | None = None,
        ids: Sequence[int] | None = None,
    ) -> tuple[str, list]:
        clauses: list[str]
        params: list
        if group_id is None:
            clauses, params = ["1"], []
        elif include_subgroups:
            full_path = self.group(group_id)["full_path"]
            clauses = ["p.group_id IN (SELECT id FROM groups WHERE full_path = ? OR full_path LIKE ? ESCAPE '\\')"]
            params = [full_path, full_path.replace("_", "\\_").replace("%", "\\%") + "/%"]
        else:
            clauses, params = ["p.group_id = ?"], [group_id]
        if archived is not None:
            clauses.append("p.archived = ?")
            params.append(int(archived))
        if id_after is not None:
            clauses.append("p.id > ?")
            params.append(id_after)
        if id_before is not None:
            clauses.append("p.id < ?")
            params.append(id_before)
        if ids is not None:
            clauses.append(f"p.id IN ({', '.join('?' * len(ids))})" if ids else "0")
            params.extend(ids)
        if visible_to is not None:
            visible, visible_params = visible_projects_clause(visible_to)
            clauses.append(visible)
            params.extend(visible_params)
        return " AND ".join(clauses), params

    def _project_dict(self, row: sqlite3.Row) -> dict:
        group = {
            "id": row["group_id"],
            "name": row["g_name"],
            "path": row["g_path"],
            "full_path": row["g_full_path"],
            "full_name": row["g_full_name"],
            "parent_id": row["g_parent_id"],
            "created_at": row["g_created_at"],
            "visibility_level": row["g_visibility_level"],
        }
        fields = (
            "id",
            "name",
            "path",
            "description",
            "default_branch",
            "created_at",
            "updated_at",
            "last_activity_at",
            "visibility_level",
        )
        return self._project_from_values(
            group, archived=bool(row["archived"]), empty_repo=bool(row["empty_repo"]), **{k: row[k] for k in fields}
        )

    def _project_from_values(self, group: dict, **values) -> dict:
        return {
            **values,
            "path_with_namespace": f"{group['full_path']}/{values['path']}",
            "name_with_namespace": f"{group['full_name']} / {values['name']}",
            "namespace": group,
        }

    def set_archived(self, project_id: int | str, archived: bool = True) -> dict:
        """Archive or unarchive the project; it stays listed (``archived=`` filters it). Fires no hook."""
        project = self.project(project_id)
        with self._transaction() as db:
            db.execute(
                "UPDATE projects SET archived = ?, updated_at = ? WHERE id = ?",
                (int(archived), timestamp(), project["id"]),
            )
        return self.project(project["id"])

    def delete_project(self, project_id: int | str) -> None:
        """Remove the project, its hooks and its repository: it is a 404 on the API and over git afterwards.

        Fires no hook: only changes made through the HTTP front ends do (they call ``WebhookDispatcher``).
        """
        project = self.project(project_id)
        with self._repo_lock(project["id"]):
            with self._transaction() as db:
                db.execute("DELETE FROM hooks WHERE project_id = ?", (project["id"],))
                db.execute("DELETE FROM projects WHERE id = ?", (project["id"],))
            shutil.rmtree(self.repo_path(project), ignore_errors=True)

    # -- repositories ------------------------------------------------------------------------------

    def repo_path(self, project: int | str | Mapping) -> Path:
        if not isinstance(project, Mapping):
            project = self.project(project)
        return self.repos_dir / f"{project['path_with_namespace']}.git"

    def ensure_repo(self, project: Mapping) -> Path:
        """The project's bare repository, created empty if the project has none yet."""
        repo = self.repo_path(project)
        if not bank_repos.is_repo(repo):
            with self._repo_lock(project["id"]):
                if not bank_repos.is_repo(repo):
                    bank_repos.init_bare_repo(repo, project["default_branch"])
        return repo

    def push_commit(
        self,
        project_id: int | str,
        files: Mapping[str, FileContent] | None = None,
        *,
        message: str = "Update item",
        author_name: str = DEFAULT_AUTHOR_NAME,
        author_email: str = DEFAULT_AUTHOR_EMAIL,
        committed_at: datetime | None = None,
        branch: str | None = None,
        delete: Sequence[str] = (),
    ) -> str:
        """Add one commit on ``branch`` (default branch if None); return its sha."""
        commit = CommitSpec(files or {}, message, author_name, author_email, committed_at, tuple(delete))
        return self.push_commits(project_id, [commit], branch=branch)[-1]

    def push_commits(
        self, project_id: int | str, commits: Sequence[CommitSpec], *, branch: str | None = None
    ) -> list[str]:
        """Add ``commits`` in order on ``branch``; a new branch starts from the default branch's head."""
        if not commits:
            return []
        project = self.project(project_id)
        branch = branch or project["default_branch"]
        repo = self.ensure_repo(project)
        with self._repo_lock(project["id"]):
            parent = bank_repos.resolve_ref(repo, f"refs/heads/{branch}") or bank_repos.resolve_ref(
                repo, f"refs/heads/{project['default_branch']}"
            )
            shas = bank_repos.fast_import(repo, branch, commits, parent=parent)
        self._record_push(project, [c.committed_at for c in commits])
        return shas

    def _record_push(self, project: Mapping, commit_times: Sequence[datetime | None]) -> None:
        latest = max(timestamp(t) if t else timestamp() for t in commit_times)
        with self._transaction() as db:
            db.execute(
                "UPDATE projects SET empty_repo = 0, last_activity_at = max(last_activity_at, ?),"
                " updated_at = max(updated_at, ?) WHERE id = ?",
                (latest, latest, project["id"]),
            )

    def repository_lock(self, project_id: int) -> threading.Lock:
        """The lock serialising writes to the project's repository (a git push holds it while refs move)."""
        return self._repo_lock(project_id)

    def record_git_push(
        self, project_id: int, *, has_branches: bool, default_branch: str | None, pushed_at: datetime | None = None
    ) -> dict:
        """Record a push through git smart HTTP, as GitLab's push event does.

        ``empty_repo`` is ``repository.empty?``, i.e. no branches (``Repository#has_visible_content?`` is
        ``branch_count > 0``). ``last_activity_at`` (and ``updated_at``) move only when the previous activity is
        an hour old or more: ``Event#reset_project_activity`` updates ``WHERE last_activity_at <=
        RESET_PROJECT_ACTIVITY_INTERVAL.ago`` (1 hour; app/models/event.rb, "Restrict last_activity_at updates
        to one per hour", https://gitlab.com/gitlab-org/gitlab-foss/-/merge_requests/6391, still so per
        https://gitlab.com/gitlab-org/gitlab/-/issues/16729). ``default_branch``, when given, is the repository's
        new root ref.
        """
        now = timestamp(pushed_at)
        hour_ago = timestamp((pushed_at or datetime.now(UTC)) - timedelta(hours=1))
        with self._transaction() as db:
            db.execute("UPDATE projects SET empty_repo = ? WHERE id = ?", (int(not has_branches), project_id))
            if default_branch:
                db.execute("UPDATE projects SET default_branch = ? WHERE id = ?", (default_branch, project_id))
            db.execute(
                "UPDATE projects SET last_activity_at = ?, updated_at = ? WHERE id = ? AND last_activity_at <= ?",
                (now, now, project_id, hour_ago),
            )
        return self.project(project_id)

    def head(self, project_id: int | str, branch: str | None = None) -> str | None:
        """The sha at the tip of ``branch`` (default branch if None), None if the branch has no commits."""
        project = self.project(project_id)
        ref = f"refs/heads/{branch or project['default_branch']}"
        return bank_repos.resolve_ref(self.repo_path(project), ref)

    def read_file(self, project_id: int | str, path: str, ref: str | None = None) -> bytes | None:
        """The content of ``path`` at ``ref`` (default branch if None), None if absent."""
        project = self.project(project_id)
        repo = self.repo_path(project)
        if not bank_repos.is_repo(repo) or project["empty_repo"]:
            return None
        return bank_repos.read_blob(repo, ref or f"refs/heads/{project['default_branch']}", path)

    def log(self, project_id: int | str, path: str | None = None, ref: str | None = None) -> list[dict]:
        """Commits of ``ref`` (default branch if None), newest first, optionally only those touching ``path``."""
        project = self.project(project_id)
        if project["empty_repo"]:
            return []
        return bank_repos.log(self.repo_path(project), ref or f"refs/heads/{project['default_branch']}", path)
