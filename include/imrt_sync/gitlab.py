"""A small GitLab client: REST v4 for group projects, projects and project hooks, and GitLab's GraphQL endpoint for
the nightly sweep (:mod:`imrt_sync.sweep`).

Every call has a timeout. Reads, and GraphQL queries (POSTs that change nothing), are retried with exponential
back-off on 429 (honouring ``Retry-After``), 5xx, timeouts and dropped connections; hook creation is retried only
where GitLab cannot have acted (429, failed connect):
``GitLabSettings.retry_policy`` (:class:`~imrt_sync.transport.RetryPolicy`), which the ref-advertisement read shares.
The access token (``PRIVATE-TOKEN``) goes only to the configured scheme, host and port: a pagination link elsewhere
is refused and redirects are not followed (a 3xx is an error). TLS trust, a client certificate and proxies come from
``GitLabSettings.transport`` (:mod:`imrt_sync.transport`), passed with every request; a certificate that does not
verify is an error naming the host, not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, TypedDict
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .config import GitLabSettings, origin
from .errors import ImrtError, PermanentError
from .scope import GroupScope
from .transport import RETRY_STATUSES, tls_failure

log = logging.getLogger(__name__)

PER_PAGE = 100


class GitLabNamespace(TypedDict):
    """The fields of a project's ``namespace`` this service reads (GitLab sends more)."""

    full_path: str  # the group or subgroup the project is in, e.g. ``iat/science``


class GitLabProject(TypedDict):
    """The fields of a GitLab project this service reads (GitLab sends many more):
    https://docs.gitlab.com/api/projects/#get-a-single-project"""

    id: int
    path: str
    default_branch: str | None  # None for an empty repository
    http_url_to_repo: str
    namespace: GitLabNamespace


class GitLabError(RuntimeError, ImrtError):
    """GitLab did not answer as documented, or answered with an error after the retries.

    ``transient``: the failure may go away by itself (no answer, 429, 5xx, a listing that changed while it was paged),
    so trying again later makes sense; any other answer (401, 403, 404, a redirect, a certificate that does not
    verify) is permanent (:func:`imrt_sync.errors.is_transient`).
    """

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None, answer: str = ""):
        super().__init__(message)
        self.transient = transient
        self.status = status  # GitLab's HTTP status when it answered one
        self.answer = answer  # GitLab's error message, e.g. "404 Group Not Found"


class GroupNotReadable(GitLabError, PermanentError):
    """``GET /groups/:path`` answered 401, 403 or 404: GitLab's answer when the token's user lost access to the group,
    the token is wrong or revoked, or the group was renamed. Nothing GitLab says about its projects can be trusted
    as an absence then (a project the user cannot see is a 404 too)."""

    def __init__(self, group: str, cause: str, status: int | None):
        super().__init__(
            f"GitLab group {group} is not readable with the configured token ({cause}): "
            "lost access, wrong token or renamed group",
            status=status,
        )


class GitLabClient:
    def __init__(self, settings: GitLabSettings):
        self.settings = settings
        self._api = settings.base_url.rstrip("/") + "/api/v4"
        self._graphql = settings.base_url.rstrip("/") + "/api/graphql"
        self._origin = settings.origin
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._transport = settings.transport.requests_options()
        self._reads = _session(settings, settings.retry_policy.reads())
        self._writes = _session(settings, settings.retry_policy.writes())
        self._queries = _session(settings, settings.retry_policy.queries())

    @property
    def origin(self) -> str:
        """The only scheme, host and port the token is sent to."""
        return self._origin

    def close(self) -> None:
        self._reads.close()
        self._writes.close()
        self._queries.close()

    def __enter__(self) -> GitLabClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def group(self, full_path: str) -> dict:
        """The group (``GET /groups/:id`` without its projects); :class:`GroupNotReadable` on 401, 403 or 404.

        https://docs.gitlab.com/api/groups/#get-a-single-group
        """
        try:
            group = self._get_json(f"/groups/{quote(full_path, safe='')}", {"with_projects": "false"})
        except GitLabError as exc:
            if exc.status in (401, 403, 404):
                raise GroupNotReadable(full_path, exc.answer or f"HTTP {exc.status}", exc.status) from None
            raise
        if group.get("full_path") != full_path:
            raise GitLabError(f"GitLab returned group {group.get('full_path')!r} for {full_path!r}")
        return group

    def group_projects(self, scope: GroupScope) -> Iterator[GitLabProject]:
        """Every project of the scope's group (with ``include_subgroups``: of its subgroups too) that the token's
        user can see, archived ones included, in id order. Projects shared with the group from other namespaces
        (GitLab lists them too, ``with_shared``) are left out.

        Keyset pagination (``pagination=keyset&order_by=id&sort=asc``, following ``Link: rel="next"`` until there is
        none: https://docs.gitlab.com/api/rest/#keyset-based-pagination) reaches the end of a listing of any size;
        with offset pagination the count GitLab announces in ``X-Total`` is checked too.
        https://docs.gitlab.com/api/groups/#list-projects
        """
        params = {
            "pagination": "keyset",
            "per_page": PER_PAGE,
            "order_by": "id",
            "sort": "asc",
            "include_subgroups": "true" if scope.include_subgroups else "false",
        }
        for project in self._paginate(f"/groups/{quote(scope.group, safe='')}/projects", params):
            if scope.contains(project.get("namespace", {}).get("full_path")):
                yield project

    def current_user(self) -> dict:
        """The token's user (``GET /user``; ``is_admin`` is present and true for administrators).
        https://docs.gitlab.com/api/users/#get-the-current-user"""
        return self._get_json("/user")

    def group_member(self, group: str, user_id: int) -> dict | None:
        """The user's membership of the group, inherited from ancestor groups or through group sharing included
        (``GET /groups/:id/members/all/:user_id``), or None when GitLab shows none: 404 (not a member, or the group
        is not visible) or 403 (the user may not read the group's members).
        https://docs.gitlab.com/api/members/#get-a-member-of-a-group-or-project-including-inherited-and-invited-members
        """
        path = f"/groups/{quote(group, safe='')}/members/all/{int(user_id)}"
        response = self._request(self._reads, "GET", path)
        if response.status_code in (403, 404):
            return None
        return _json(_checked(response))

    def project(self, project_id: int) -> GitLabProject | None:
        """The project, or None when GitLab answers 404: the project does not exist, or the token's user cannot see
        it (GitLab answers both the same, so a None proves nothing while the group is not readable)."""
        response = self._request(self._reads, "GET", f"/projects/{project_id}")
        if response.status_code == 404:
            return None
        return _json(_checked(response))

    def hooks(self, project_id: int) -> list[dict]:
        return list(self._paginate(f"/projects/{project_id}/hooks", {"per_page": PER_PAGE}))

    def create_hook(self, project_id: int, url: str, secret: str) -> dict:
        body = {"url": url, "push_events": True, "enable_ssl_verification": True}
        if secret:
            body["token"] = secret
        response = self._request(self._writes, "POST", f"/projects/{project_id}/hooks", json=body)
        return _json(_checked(response))

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """GitLab's answer to a GraphQL query (``POST /api/graphql``): the JSON object with ``data`` and, when a field
        or the whole query failed, ``errors`` (https://docs.gitlab.com/api/graphql/). An HTTP error (404 where there
        is no GraphQL endpoint, 5xx after the retries) is a :class:`GitLabError` as for REST."""
        body = {"query": query, "variables": variables or {}}
        answer = _json(_checked(self._request(self._queries, "POST", self._graphql, json=body)))
        if not isinstance(answer, dict):
            raise GitLabError("GitLab POST /api/graphql did not return a JSON object")
        return answer

    def _get_json(self, path: str, params: dict | None = None):
        return _json(_checked(self._request(self._reads, "GET", path, params=params)))

    def _paginate(self, path: str, params: dict) -> Iterator[Any]:
        """The records of every page, as GitLab sent them (JSON: the caller knows their shape)."""
        response = _checked(self._request(self._reads, "GET", path, params=params))
        announced = response.headers.get("X-Total")
        seen = 0
        while True:
            page = _json(response)
            if not isinstance(page, list):
                raise GitLabError(f"GitLab GET {path} did not return a list")
            seen += len(page)
            yield from page
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                break
            response = _checked(self._request(self._reads, "GET", next_url))
        if announced and announced.isdigit() and int(announced) != seen:
            # A page cut short, or records added or removed while the pages were read: a later try may read them all.
            raise GitLabError(f"GitLab GET {path} announced {announced} records but returned {seen}", transient=True)

    def _request(self, session: requests.Session, method: str, path_or_url: str, **kwargs) -> requests.Response:
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self._api + path_or_url
        if origin(url) != self._origin:
            raise GitLabError(
                f"GitLab {method} {_path_of(url)}: refusing to send the access token to {origin(url)}, "
                f"which is not the configured GitLab {self._origin}"
            )
        try:
            return session.request(
                method, url, timeout=self._timeout, allow_redirects=False, **self._transport, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            raise GitLabError(f"GitLab {method} {_path_of(url)}: {tls_failure(url, exc)}") from None
        except requests.RequestException as exc:
            raise GitLabError(f"GitLab {method} {_path_of(url)} failed: {type(exc).__name__}", transient=True) from None

    def update_hook(self, project_id: int, hook_id: int, url: str, secret: str) -> dict:
        """Edit the hook so it sends push events, verifies SSL and carries ``secret`` (``PUT`` requires ``url``;
        https://docs.gitlab.com/api/project_webhooks/#edit-a-project-webhook). Not retried: the task retries."""
        body = {"url": url, "push_events": True, "enable_ssl_verification": True, "token": secret}
        response = self._request(self._writes, "PUT", f"/projects/{project_id}/hooks/{hook_id}", json=body)
        return _json(_checked(response))

    def delete_hook(self, project_id: int, hook_id: int) -> bool:
        """Remove the hook; False when it was already gone
        (https://docs.gitlab.com/api/project_webhooks/#delete-project-webhook)."""
        response = self._request(self._reads, "DELETE", f"/projects/{project_id}/hooks/{hook_id}")
        if response.status_code == 404:
            return False
        _checked(response)
        return True


def _session(settings: GitLabSettings, retry: Retry) -> requests.Session:
    session = requests.Session()
    session.headers["PRIVATE-TOKEN"] = settings.token
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _checked(response: requests.Response) -> requests.Response:
    if 300 <= response.status_code < 400:
        raise GitLabError(
            f"GitLab {response.request.method} {_path_of(response.url)} answered {response.status_code} "
            "(a redirect): not followed, the access token goes only to the configured GitLab",
            status=response.status_code,
        )
    if response.status_code >= 400:
        answer = _message(response)
        raise GitLabError(
            f"GitLab {response.request.method} {_path_of(response.url)} answered {response.status_code}: {answer}",
            transient=response.status_code in RETRY_STATUSES,
            status=response.status_code,
            answer=answer,
        )
    return response


def _json(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        raise GitLabError(f"GitLab {_path_of(response.url)} did not return JSON") from None


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]


def _path_of(url: str) -> str:
    return requests.utils.urlparse(url).path
