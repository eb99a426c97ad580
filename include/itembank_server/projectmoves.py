"""Renaming and transferring projects: the row and the repository directory move together.

These are store-level changes: they fire no hook. Only changes made through the server's HTTP front ends do (the REST
routes call ``WebhookDispatcher.project_event``), as GitLab's system hooks follow its services, not its database.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from .bankrules import NotFoundError, ProjectExistsError, timestamp, validate_segment


class ProjectMoves:
    """Mixed into ``ItemBank``: project changes that move its path (``repos_dir/<full_path>.git``)."""

    def taken_fields(
        self, group_id: int, *, name: str | None = None, path: str | None = None, excluding: int | None = None
    ) -> list[str]:
        """Which of ``name`` (exact) and ``path`` (any case) another project of the group already has."""
        taken = []
        rows = self._rows("SELECT id, name, path FROM projects WHERE group_id = ?", (group_id,))
        others = [p for p in rows if p["id"] != excluding]
        if name is not None and any(p["name"] == name for p in others):
            taken.append("name")
        if path is not None and any(p["path"].lower() == path.lower() for p in others):
            taken.append("path")
        return taken

    def rename_project(self, project_id: int | str, *, name: str | None = None, path: str | None = None) -> dict:
        """Change the project's name and/or path; a new path moves its repository (the old git URL is gone).

        Raises ``ValueError`` for an invalid path and ``ProjectExistsError`` when the group has that path.
        Fires no hook.
        """
        project = self.project(project_id)
        new_path = project["path"] if path is None else path
        validate_segment(new_path, "project")
        if self.taken_fields(project["namespace"]["id"], path=new_path, excluding=project["id"]):
            raise ProjectExistsError(f"path {new_path!r} already taken in {project['namespace']['full_path']}")
        return self._move(project, project["namespace"], new_path, name or project["name"])

    def transfer_project(self, project_id: int | str, group: int | str | Mapping) -> dict:
        """Move the project into another existing group, keeping its name and path; its repository moves too.

        Raises ``NotFoundError`` for an unknown group, ``ValueError`` when the project is already there and
        ``ProjectExistsError`` when the target group has a project of that name or path. A project more visible than
        the target group gets the group's visibility (``Projects::TransferService#update_namespace_and_visibility``).
        Fires no hook.
        """
        project = self.project(project_id)
        target = self.group(group["id"] if isinstance(group, Mapping) else group)
        if target["id"] == project["namespace"]["id"]:
            raise ValueError("Project is already in this namespace.")
        if self.taken_fields(target["id"], name=project["name"], path=project["path"]):
            raise ProjectExistsError(f"name or path of {project['path']!r} already taken in {target['full_path']}")
        level = min(project["visibility_level"], target["visibility_level"])
        return self._move(project, target, project["path"], project["name"], level)

    def _move(self, project: dict, group: dict, path: str, name: str, visibility_level: int | None = None) -> dict:
        """Update the row and move the repository directory in one step, under the project's repository lock."""
        old_repo = self.repo_path(project)
        new_repo = self.repos_dir / group["full_path"] / f"{path}.git"
        with self._repo_lock(project["id"]), self._transaction() as db:
            db.execute(
                "UPDATE projects SET group_id = ?, name = ?, path = ?, full_path = ?, updated_at = ?,"
                " visibility_level = ? WHERE id = ?",
                (
                    group["id"],
                    name,
                    path,
                    f"{group['full_path']}/{path}",
                    timestamp(),
                    project["visibility_level"] if visibility_level is None else visibility_level,
                    project["id"],
                ),
            )
            if old_repo.exists() and old_repo != new_repo:
                if new_repo.exists():
                    shutil.rmtree(new_repo)  # a directory without a project row is garbage
                new_repo.parent.mkdir(parents=True, exist_ok=True)
                old_repo.rename(new_repo)
        moved = self.find_project(project["id"])
        if moved is None:
            raise NotFoundError(f"project {project['id']!r}")
        return moved
