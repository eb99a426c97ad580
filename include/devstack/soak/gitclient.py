"""The developer's git: one clone per project, edited and pushed with the git CLI over the item bank's smart HTTP.

The token travels as an ``http.extraHeader`` in ``GIT_CONFIG_*`` environment variables (never in a command line,
a remote URL or a repository's config), as GitLab takes it: basic auth ``oauth2:<token>``. The author of each commit
is chosen per push (``GIT_AUTHOR_*``); the committer is always the developer.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from devstack.git_env import isolated_git_env

GIT_TIMEOUT = 120
CLONE_ATTEMPTS = 3


class GitFailed(RuntimeError):
    """A git command failed (its stderr, which never holds the token, is the message)."""


class DeveloperGit:
    def __init__(self, server_url: str, token: str, work_dir: Path, username: str = "developer") -> None:
        self.server_url = server_url
        self.root = work_dir / "checkouts"
        self.root.mkdir(parents=True, exist_ok=True)
        home = work_dir / "git-home"
        home.mkdir(parents=True, exist_ok=True)
        self._env = {
            **isolated_git_env(home, token),
            "GIT_COMMITTER_NAME": username,
            "GIT_COMMITTER_EMAIL": f"{username}@example.org",
        }

    def remote_url(self, project: dict) -> str:
        return f"{self.server_url}/{project['path_with_namespace']}.git"

    def checkout_dir(self, project_id: int) -> Path:
        return self.root / str(project_id)

    def has_checkout(self, project_id: int) -> bool:
        return (self.checkout_dir(project_id) / ".git").is_dir()

    def checkout(self, project: dict) -> Path:
        """The project's clone, made now if missing (retried: a fault window may refuse a clone), pointing at the
        project's current URL (after a rename or a transfer)."""
        path = self.checkout_dir(project["id"])
        if not self.has_checkout(project["id"]):
            self._clone(project, path)
        else:
            self._git("remote", "set-url", "origin", self.remote_url(project), cwd=path)
        return path

    def _clone(self, project: dict, path: Path) -> None:
        for attempt in range(1, CLONE_ATTEMPTS + 1):
            shutil.rmtree(path, ignore_errors=True)
            try:
                self._git("clone", "--quiet", self.remote_url(project), str(path), cwd=self.root)
                return
            except GitFailed:
                if attempt == CLONE_ATTEMPTS:
                    raise
                time.sleep(1.0)  # a pause between attempts, not a wait on state

    def forget(self, project_id: int) -> None:
        shutil.rmtree(self.checkout_dir(project_id), ignore_errors=True)

    def read(self, project: dict, name: str) -> bytes | None:
        """A file of the clone's work tree (the last pushed state: the developer is the only writer)."""
        file = self.checkout(project) / name
        return file.read_bytes() if file.exists() else None

    def commit_and_push(self, project: dict, files: dict[str, bytes], message: str, author: str) -> str:
        """Write ``files``, commit them as ``author`` and push to the default branch; return the pushed sha.

        A push that fails drops the clone (its unpushed commit with it): the next push starts from a fresh clone of
        what the server has."""
        path = self.checkout(project)
        for name, content in files.items():
            (path / name).write_bytes(content)
        email = author.lower().replace(" ", ".") + "@example.org"
        env = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": email}
        self._git("add", "--", *files, cwd=path)
        self._git("commit", "--quiet", "--allow-empty", "-m", message, cwd=path, env=env)
        try:
            self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{project['default_branch']}", cwd=path)
        except GitFailed:
            self.forget(project["id"])
            raise
        return self._git("rev-parse", "HEAD", cwd=path)

    def _git(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={**self._env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
        if result.returncode != 0:
            raise GitFailed(f"git {args[0]} failed ({result.returncode}): {result.stderr.strip()[-300:]}")
        return result.stdout.strip()
