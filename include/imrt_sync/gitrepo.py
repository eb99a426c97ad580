"""Item repositories over git smart HTTP: remote heads, a fetch cache, and reads at a commit.

The token reaches git only through the environment (an ``http.extraHeader`` set with ``GIT_CONFIG_*``), never
through a command line, a URL or a repository's ``.git/config``.
"""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git

ITEM_FILE = "item.json"


class GitFetchError(RuntimeError):
    """git could not reach or read an item repository."""


@dataclass(frozen=True)
class Commit:
    sha: str
    committed_at: datetime
    author_name: str


@dataclass(frozen=True)
class GitAccess:
    token: str
    timeout: float = 300.0

    def environment(self, **config: str) -> dict[str, str]:
        """Environment for a git command: the token as an HTTP header, plus any ``config`` (``key=value``)."""
        basic = base64.b64encode(f"oauth2:{self.token}".encode()).decode()
        settings = {"http.extraHeader": f"Authorization: Basic {basic}", **config}
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_CONFIG_NOSYSTEM": "1"}
        env["GIT_CONFIG_COUNT"] = str(len(settings))
        for index, (key, value) in enumerate(settings.items()):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env


def remote_head(url: str, branch: str, access: GitAccess) -> str | None:
    """The commit at the tip of ``branch`` in the remote repository, or None when the branch does not exist.

    Protocol v0 makes this one HTTP request (the ref advertisement) instead of two.
    """
    env = access.environment(**{"protocol.version": "0"})
    try:
        out = git.Git().ls_remote(url, f"refs/heads/{branch}", env=env, kill_after_timeout=access.timeout)
    except git.GitCommandError as exc:
        raise GitFetchError(_describe(exc, url)) from None
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


class ItemRepository:
    """A bare clone of one project kept in the cache directory, so later runs fetch only what is new."""

    def __init__(self, cache_dir: Path, project_id: int, url: str, access: GitAccess):
        self.path = cache_dir / f"{project_id}.git"
        self._url = url
        self._access = access
        self._repo: git.Repo | None = None

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def __enter__(self) -> "ItemRepository":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def fetch(self, branch: str) -> Commit:
        """Bring the branch up to date from the remote; return its head commit."""
        try:
            return self._fetch(branch)
        except (git.GitError, ValueError):
            # A previous attempt may have been killed half-way: start again from an empty clone, once.
            self.close()
            shutil.rmtree(self.path, ignore_errors=True)
        try:
            return self._fetch(branch)
        except git.GitCommandError as exc:
            raise GitFetchError(_describe(exc, self._url)) from None
        except (git.GitError, ValueError) as exc:
            raise GitFetchError(f"git fetch {self._url} failed: {type(exc).__name__}: {exc}") from None

    def read(self, sha: str, path: str, max_bytes: int) -> bytes | None:
        """The content of ``path`` at commit ``sha``; None when absent. Raises ValueError over ``max_bytes``."""
        try:
            blob = self._open().commit(sha).tree / path
        except KeyError:
            return None
        if blob.type != "blob":
            return None
        if blob.size > max_bytes:
            raise ValueError(f"{path} is {blob.size} bytes, more than the limit of {max_bytes}")
        return blob.data_stream.read()

    def commits_touching(self, head: str, path: str, since: str | None) -> list[Commit]:
        """Commits reachable from ``head`` (not from ``since``) that changed ``path``, oldest first."""
        repo = self._open()
        rev = head
        if since and since != head and self._has_commit(since) and repo.is_ancestor(since, head):
            rev = f"{since}..{head}"
        elif since == head:
            return []
        return [_commit(c) for c in reversed(list(repo.iter_commits(rev, paths=path)))]

    def _fetch(self, branch: str) -> Commit:
        repo = self._open()
        repo.git.fetch(
            "--no-tags",
            "--prune",
            self._url,
            f"+refs/heads/{branch}:refs/heads/{branch}",
            env=self._access.environment(),
            kill_after_timeout=self._access.timeout,
        )
        return _commit(repo.commit(f"refs/heads/{branch}"))

    def _open(self) -> git.Repo:
        if self._repo is None:
            if (self.path / "HEAD").exists():
                self._repo = git.Repo(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._repo = git.Repo.init(self.path, bare=True)
        return self._repo

    def _has_commit(self, sha: str) -> bool:
        try:
            self._open().git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except git.GitCommandError:
            return False


def _commit(commit: git.Commit) -> Commit:
    return Commit(sha=commit.hexsha, committed_at=commit.committed_datetime, author_name=commit.author.name or "")


def _describe(exc: git.GitCommandError, url: str) -> str:
    stderr = (exc.stderr or "").strip().replace("\n", " ")
    return f"git {exc.command[1] if len(exc.command) > 1 else ''} {url} failed (exit {exc.status}): {stderr[:400]}"
