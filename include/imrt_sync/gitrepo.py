"""Item repositories over git smart HTTP: remote heads, a fetch cache, and reads at a commit.

The token reaches git only through the environment (an ``http.extraHeader`` set with ``GIT_CONFIG_*``), never
through a command line, a URL or a repository's ``.git/config``, and only for repository URLs on the configured
GitLab's scheme, host and port (a project's ``http_url_to_repo`` is checked before use; redirects are not followed).
Remote heads are read without git: one HTTP request for the ref advertisement, parsed here (what ``git ls-remote``
does with protocol v0, minus two processes per call), retried like the GitLab client's reads (the GitLab settings'
:class:`~imrt_sync.transport.RetryPolicy`). Both use the GitLab settings' :class:`~imrt_sync.transport.Transport`
(CA bundle, client certificate, proxy), git through the same ``GIT_CONFIG_*`` environment as the token.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import git
import requests
from requests.adapters import HTTPAdapter

from .config import GitLabSettings, SyncSettings, field_defaults, origin
from .errors import TransientError
from .transport import RetryPolicy, Transport, tls_failure

ITEM_FILE = "item.json"
CREATE_BRANCH_PREFIX = "create_"
_BRANCH_REF = "refs/heads/"
_ADVERTISEMENT_TYPE = "application/x-git-upload-pack-advertisement"
_OBJECT_ID = re.compile(rb"^[0-9a-f]{40}([0-9a-f]{24})?$")
_GITLAB_DEFAULTS = field_defaults(GitLabSettings)
GIT_TIMEOUT = field_defaults(SyncSettings)["git_timeout"]
DEFAULT_RETRY_POLICY = RetryPolicy(_GITLAB_DEFAULTS["retries"], _GITLAB_DEFAULTS["backoff_factor"])


class GitFetchError(RuntimeError, TransientError):
    """git could not reach or read an item repository."""


class RepositoryNotFound(GitFetchError):
    """GitLab answered 404 for the repository: it is gone, or the token may no longer see it."""


@dataclass(frozen=True)
class Commit:
    sha: str
    committed_at: datetime
    author_name: str


@dataclass(frozen=True)
class ItemHistory:
    commits: tuple[Commit, ...]  # oldest first
    incremental: bool  # only the commits after the recorded one (else the whole history)


@dataclass(frozen=True)
class GitAccess:
    """The token and where it may go: repository URLs on ``origin`` (the GitLab base URL's scheme, host, port);
    ``transport``: how to reach it (CA bundle, client certificate, proxy), ``retry_policy``: how the ref
    advertisement is retried, and ``connect_timeout``: seconds to open its connection, all as for the GitLab REST
    client. ``timeout``: seconds a git command or the ref advertisement's answer may take."""

    token: str = field(repr=False)
    timeout: float = GIT_TIMEOUT
    origin: str = field(kw_only=True)
    transport: Transport = field(default=Transport(), kw_only=True)
    retry_policy: RetryPolicy = field(default=DEFAULT_RETRY_POLICY, kw_only=True)
    connect_timeout: float = field(default=_GITLAB_DEFAULTS["connect_timeout"], kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", origin(self.origin))

    @classmethod
    def for_gitlab(cls, settings: GitLabSettings, timeout: float = GIT_TIMEOUT) -> GitAccess:
        """Access to the repositories of the GitLab ``settings`` describe, with its token, transport and retries."""
        return cls(
            settings.token,
            timeout,
            origin=settings.base_url,
            transport=settings.transport,
            retry_policy=settings.retry_policy,
            connect_timeout=settings.connect_timeout,
        )

    def check(self, url: str) -> str:
        """``url`` when it is on the configured GitLab; GitFetchError otherwise (the token is not sent there)."""
        if origin(url) != self.origin:
            raise GitFetchError(
                f"refusing to send the access token to {origin(url)} (repository URL of another host than the "
                f"configured GitLab {self.origin})"
            )
        return url

    def authorization(self) -> str:
        """The HTTP ``Authorization`` header value: GitLab's ``oauth2:<token>`` basic auth."""
        return "Basic " + base64.b64encode(f"oauth2:{self.token}".encode()).decode()

    def environment(self, **config: str) -> dict[str, str]:
        """Environment for a git command: the token as an HTTP header, the transport's TLS and proxy settings, plus
        any ``config`` (``key=value``)."""
        settings = {
            "http.extraHeader": f"Authorization: {self.authorization()}",
            "http.followRedirects": "false",
            **self.transport.git_config(self.origin),
            **config,
        }
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_CONFIG_NOSYSTEM": "1"}
        env["GIT_CONFIG_COUNT"] = str(len(settings))
        for index, (key, value) in enumerate(settings.items()):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env


def remote_heads(url: str, access: GitAccess) -> dict[str, str]:
    """The commit at the tip of every branch of the remote repository, by branch name.

    One HTTP request, the smart-HTTP ref advertisement (``GET <url>/info/refs?service=git-upload-pack``, protocol
    v0), exactly the request ``git ls-remote`` makes with ``protocol.version=0``; it is read here instead of by a
    ``git`` and a ``git-remote-http`` process, which cost about 10 ms of CPU per project. The advertisement lists
    every ref, so the default branch and an item's ``create_<user>`` branch cost this one request together.
    """
    access.check(url)
    try:
        response = _http(access.retry_policy).get(
            f"{url.rstrip('/')}/info/refs",
            params={"service": "git-upload-pack"},
            headers={"Authorization": access.authorization(), "Pragma": "no-cache", "User-Agent": "git/imrt-sync"},
            timeout=(access.connect_timeout, access.timeout),
            allow_redirects=False,
            **access.transport.requests_options(),
        )
    except requests.exceptions.SSLError as exc:
        raise GitFetchError(f"git ls-remote {url} failed: {tls_failure(url, exc)}") from None
    except requests.RequestException as exc:
        raise GitFetchError(f"git ls-remote {url} failed: {type(exc).__name__}") from None
    if response.status_code != 200:
        message = response.text.strip().replace("\n", " ")[:400]
        failure = RepositoryNotFound if response.status_code == 404 else GitFetchError
        raise failure(f"git ls-remote {url} failed (HTTP {response.status_code}): {message}")
    if response.headers.get("Content-Type", "").split(";")[0].strip() != _ADVERTISEMENT_TYPE:
        raise GitFetchError(f"git ls-remote {url} failed: the server did not answer with a smart HTTP ref list")
    try:
        refs = list(_advertised_refs(response.content))
    except ValueError as exc:
        raise GitFetchError(f"git ls-remote {url} failed: {exc}") from None
    return {ref.removeprefix(_BRANCH_REF): sha for sha, ref in refs if ref.startswith(_BRANCH_REF)}


def first_create_branch(branches: Iterable[str]) -> str | None:
    """The first ``create_<user>`` branch in GitLab's branch order (by name), where the legacy service looked for an
    item still being created (SmarterApp/AP_IMRT_ItemIngestService@0.1.46,
    ``src/main/java/org/opentestsystem/ap/imrt/iis/client/GitlabClientImpl.java``, ``findCreateBranch``); None when
    there is none."""
    return min((name for name in branches if name.startswith(CREATE_BRANCH_PREFIX)), default=None)


def _advertised_refs(body: bytes) -> Iterator[tuple[str, str]]:
    """``(sha, ref)`` pairs of a protocol v0 upload-pack advertisement (pkt-lines, capabilities after a NUL)."""
    position, service_seen = 0, False
    while position < len(body):
        try:
            length = int(body[position : position + 4], 16)
        except ValueError:
            raise ValueError("malformed ref advertisement") from None
        if length == 0:  # flush-pkt
            position += 4
            continue
        if length < 4 or position + length > len(body):
            raise ValueError("malformed ref advertisement")
        line = body[position + 4 : position + length].rstrip(b"\n")
        position += length
        if line == b"# service=git-upload-pack":
            service_seen = True
            continue
        if line.startswith(b"ERR "):
            raise ValueError(line[4:].decode("utf-8", "replace")[:400])
        if not service_seen:
            raise ValueError("malformed ref advertisement")
        sha, _, ref = line.split(b"\0", 1)[0].partition(b" ")
        if not _OBJECT_ID.match(sha) or not ref:
            raise ValueError("malformed ref advertisement")
        yield sha.decode("ascii"), ref.decode("utf-8", "replace")
    if not service_seen:
        raise ValueError("empty ref advertisement")


_sessions: tuple[int, dict[RetryPolicy, requests.Session]] = (0, {})
_session_lock = threading.Lock()


def _http(retry_policy: RetryPolicy) -> requests.Session:
    """One keep-alive connection pool per process and retry policy (a forked child makes its own), shared by the
    planning threads."""
    global _sessions
    with _session_lock:
        if _sessions[0] != os.getpid():
            _sessions = (os.getpid(), {})
        sessions = _sessions[1]
        if retry_policy not in sessions:
            sessions[retry_policy] = _advertisement_session(retry_policy)
        return sessions[retry_policy]


def _advertisement_session(retry_policy: RetryPolicy) -> requests.Session:
    """A session for ref advertisements: a read, retried like the GitLab client's reads."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=32, max_retries=retry_policy.reads())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class ItemRepository:
    """A bare clone of one project kept in the cache directory, so later runs fetch only what is new."""

    def __init__(self, cache_dir: Path, project_id: int, url: str, access: GitAccess):
        self.path = cache_dir / f"{project_id}.git"
        self._url = access.check(url)
        self._access = access
        self._repo: git.Repo | None = None

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def __enter__(self) -> ItemRepository:
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

    def has_file(self, sha: str, path: str) -> bool:
        """Whether ``path`` is a file at commit ``sha``."""
        return self.blob_id(sha, path) is not None

    def blob_id(self, sha: str, path: str) -> str | None:
        """The blob id of file ``path`` at commit ``sha`` (what GitLab's GraphQL ``blobs { oid }`` answers); None
        when it is not a file there."""
        try:
            entry = self._open().commit(sha).tree / path
        except KeyError:
            return None
        return entry.hexsha if entry.type == "blob" else None

    def item_history(self, head: str, path: str, since: str | None) -> ItemHistory:
        """The commits reachable from ``head`` that changed ``path``, oldest first.

        Only those after ``since`` when ``since`` is an ancestor of ``head`` (an incremental history); otherwise,
        for a first sync or a rewritten branch, the whole history.
        """
        repo = self._open()
        if since == head:
            return ItemHistory((), incremental=True)
        # GitPython types is_ancestor's arguments as Commit; it hands them to git merge-base, which takes any rev.
        if since and self._has_commit(since) and repo.is_ancestor(since, head):  # type: ignore[arg-type]
            return ItemHistory(_oldest_first(repo.iter_commits(f"{since}..{head}", paths=path)), incremental=True)
        return ItemHistory(_oldest_first(repo.iter_commits(head, paths=path)), incremental=False)

    def _fetch(self, branch: str) -> Commit:
        repo = self._open()
        # Protocol v0: the ref advertisement comes with the first request, so a fetch is one request when the cache
        # is up to date and two when there is something to fetch (v2 adds an ``ls-refs`` request to each).
        repo.git.fetch(
            "--no-tags",
            "--prune",
            self._url,
            f"+refs/heads/{branch}:refs/heads/{branch}",
            env=self._access.environment(**{"protocol.version": "0"}),
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


def _oldest_first(commits: Iterator[git.Commit]) -> tuple[Commit, ...]:
    return tuple(_commit(c) for c in reversed(list(commits)))


def _commit(commit: git.Commit) -> Commit:
    return Commit(sha=commit.hexsha, committed_at=commit.committed_datetime, author_name=commit.author.name or "")


def _describe(exc: git.GitCommandError, url: str) -> str:
    stderr = (exc.stderr or "").strip().replace("\n", " ")
    return f"git {exc.command[1] if len(exc.command) > 1 else ''} {url} failed (exit {exc.status}): {stderr[:400]}"
