"""The sweep: every project of the group with its default branch, its head and whether ``item.json`` is there, read
through GitLab's GraphQL API, 100 projects a request (docs/how-a-run-works.md, "The sweep").

``group(fullPath) { projects(includeSubgroups, first: 100, after) }``, page after page until ``hasNextPage`` is
false, with ``rootRef``, the blob id of ``item.json`` and ``commit(ref: "HEAD")``, the head. ``Repository.commit``
is a 2025 addition: a GitLab that refuses the first page with it is swept without it (the sweep then reads only the
blob id of ``item.json``, which the listing compares with the one recorded at the last sync). No introspection
request: a nothing-changed run costs the pages, and the group's answer is the proof that it is readable.
:func:`branch_heads` reads other branches' heads (the create branches of items still being created), 40 projects a
request.

What GitLab answers for a repository, from its source (the paths are files of gitlab-org/gitlab):

* a missing repository is no error: ``Repository#empty?`` is true without one, so ``rootRef`` and ``commit`` are
  null and ``blobs`` is empty (app/models/repository.rb, app/graphql/resolvers/blobs_resolver.rb);
* a field resolved after the request's timeout is null with an ``errors[]`` entry whose ``path`` names it, the rest
  of the page intact (``Gitlab::Graphql::Timeout`` < ``GraphQL::Schema::Timeout``, lib/gitlab/graphql/timeout.rb);
* a failing Gitaly call is not a GraphQL execution error: ``GitlabSchema`` rescues none, so the controller answers
  the whole request with 500 ``Internal server error`` (``ERROR_STATUS_MAP``, ``StandardError => :internal``;
  ``Gitlab::Git::ResourceExhaustedError`` is 503), app/graphql/gitlab_schema.rb, app/controllers/graphql_controller.rb.

A project the sweep cannot vouch for (its repository errored, no default branch, no ``item.json``) is
:attr:`SweptProject.settled` false: the listing reads it on its own, never takes it as unchanged. A sweep that
cannot answer for the whole group (an HTTP error after the retries, a refused query, a page without its projects, a
null node: a project it cannot even name) raises :class:`SweepUnavailable`, and the run is listed through REST.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ImrtError
from .gitlab import GitLabClient, GitLabError
from .gitrepo import ITEM_FILE
from .scope import GroupScope

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # GitlabSchema default_max_page_size: a larger ``first`` is capped
BRANCHES_PER_QUERY = 40  # aliased project(fullPath) { repository { commit } } fields: well under complexity 250
PROJECT_GID = "gid://gitlab/Project/"

_SWEEP_QUERY = f"""
query Sweep($group: ID!, $includeSubgroups: Boolean!, $after: String) {{
  group(fullPath: $group) {{
    projects(includeSubgroups: $includeSubgroups, first: {PAGE_SIZE}, after: $after) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{
        id
        path
        fullPath
        repository {{
          rootRef
          blobs(paths: ["{ITEM_FILE}"]) {{ nodes {{ oid }} }}
          {{head}}
        }}
      }}
    }}
  }}
}}
"""


class SweepUnavailable(RuntimeError, ImrtError):
    """The sweep cannot answer for the whole group this run; the reason names what GitLab said (never a secret)."""


class QueryRefused(SweepUnavailable):
    """GitLab refused the query as a whole (``data`` null, e.g. a field this GitLab's schema does not have)."""


@dataclass(frozen=True)
class SweptProject:
    """One project as the sweep saw it."""

    project_id: int
    path: str
    full_path: str
    namespace: str | None
    default_branch: str | None
    head: str | None  # the default branch's head commit
    item_blob: str | None  # the blob id of item.json on the default branch
    answered: bool  # its repository fields came without an error

    @property
    def settled(self) -> bool:
        """Whether the sweep vouches for it: every repository field answered, a default branch with ``item.json``
        (its head too, when the sweep reads heads)."""
        return self.answered and self.default_branch is not None and self.item_blob is not None


def sweep_query(with_head: bool) -> str:
    """The sweep's page query, with the head of each project's default branch or without."""
    return _SWEEP_QUERY.replace("{head}", 'commit(ref: "HEAD") { sha }' if with_head else "")


def sweep_group(gitlab: GitLabClient, scope: GroupScope) -> list[SweptProject]:
    """Every project of the scope's group (and, in scope, its subgroups') that the token's user can see, with its
    head when this GitLab's GraphQL has ``Repository.commit`` (else ``head`` is None: compare ``item_blob``)."""
    with_head = True
    projects: list[SweptProject] = []
    variables: dict[str, Any] = {"group": scope.group, "includeSubgroups": scope.include_subgroups, "after": None}
    while True:
        try:
            answer = _answer(gitlab, sweep_query(with_head), variables)
        except QueryRefused as exc:
            if not with_head or variables["after"] is not None:
                raise
            log.info("sweeping by the blob id of %s: GitLab refused Repository.commit (%s)", ITEM_FILE, exc)
            with_head = False
            continue
        page = _projects_page(answer)
        projects += _page_projects(page)
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            break
        if not info.get("endCursor"):
            raise SweepUnavailable("GitLab announced a next page of projects without its cursor")
        variables["after"] = info["endCursor"]
    return [project for project in projects if scope.contains(project.namespace)]


def branch_heads(gitlab: GitLabClient, branches: Sequence[tuple[str, str]]) -> list[str | None]:
    """The head of each ``(project full path, branch)``, in order, :data:`BRANCHES_PER_QUERY` a request (aliased
    ``project(fullPath) { repository { commit(ref) { sha } } }``); None where GitLab gave none: no such project or
    branch, or an error at that project. :class:`SweepUnavailable` when a request failed as a whole."""
    heads: list[str | None] = []
    for start in range(0, len(branches), BRANCHES_PER_QUERY):
        chunk = branches[start : start + BRANCHES_PER_QUERY]
        variables: dict[str, Any] = {}
        for n, (full_path, branch) in enumerate(chunk):
            variables[f"p{n}"], variables[f"r{n}"] = full_path, branch
        data = _answer(gitlab, _branch_heads_query(len(chunk)), variables)["data"]
        heads += [_commit_sha(data.get(f"p{n}")) for n in range(len(chunk))]
    return heads


def _branch_heads_query(count: int) -> str:
    arguments = ", ".join(f"$p{n}: ID!, $r{n}: String!" for n in range(count))
    fields = " ".join(
        f"p{n}: project(fullPath: $p{n}) {{ repository {{ commit(ref: $r{n}) {{ sha }} }} }}" for n in range(count)
    )
    return f"query BranchHeads({arguments}) {{ {fields} }}"


def _commit_sha(project: Any) -> str | None:
    repository = project.get("repository") if isinstance(project, dict) else None
    commit = repository.get("commit") if isinstance(repository, dict) else None
    sha = commit.get("sha") if isinstance(commit, dict) else None
    return str(sha) if sha else None


def _answer(gitlab: GitLabClient, query: str, variables: dict[str, Any]) -> dict:
    """GitLab's answer; :class:`SweepUnavailable` when the request failed or the query was refused as a whole."""
    try:
        answer = gitlab.graphql(query, variables)
    except GitLabError as exc:
        raise SweepUnavailable(str(exc)) from None
    if answer.get("data") is None:
        raise QueryRefused(f"GitLab refused the GraphQL query: {_messages(answer)}")
    return answer


def _projects_page(answer: dict) -> dict:
    """The ``projects`` connection of the answer, with every error that names a field inside one of its nodes set on
    that node's ``_errors``; any other error (or no connection) makes the page unusable."""
    group = answer["data"].get("group")
    page = group.get("projects") if isinstance(group, dict) else None
    if not isinstance(page, dict) or not isinstance(page.get("nodes"), list):
        raise SweepUnavailable(f"GitLab did not list the group's projects: {_messages(answer) or 'group not visible'}")
    nodes = page["nodes"]
    for error in answer.get("errors") or ():
        index = _node_index(error.get("path"))
        if index is None or not 0 <= index < len(nodes) or not isinstance(nodes[index], dict):
            raise SweepUnavailable(f"GitLab answered the sweep with an error: {error.get('message')}")
        nodes[index]["_errors"] = True
    return page


def _node_index(path: Any) -> int | None:
    """The index of the project node a GraphQL error's ``path`` points into, e.g. ``["group", "projects", "nodes",
    3, "repository", "commit"]``; None when it points elsewhere."""
    if isinstance(path, list) and len(path) > 4 and path[:3] == ["group", "projects", "nodes"]:
        return path[3] if isinstance(path[3], int) else None
    return None


def _page_projects(page: Mapping) -> list[SweptProject]:
    projects = []
    for node in page["nodes"]:
        if not isinstance(node, dict):
            raise SweepUnavailable("GitLab answered a project of the group with null: the sweep cannot name it")
        projects.append(_swept_project(node))
    return projects


def _swept_project(node: Mapping) -> SweptProject:
    repository = node.get("repository")
    answered = isinstance(repository, dict) and not node.get("_errors")
    repository = repository if isinstance(repository, dict) else {}
    commit = repository.get("commit") or {}
    blobs = (repository.get("blobs") or {}).get("nodes") or ()
    return SweptProject(
        project_id=project_id(node.get("id")),
        path=str(node.get("path")),
        full_path=str(node.get("fullPath")),
        namespace=_namespace(node.get("fullPath")),
        default_branch=repository.get("rootRef"),
        head=commit.get("sha"),
        item_blob=next((str(blob["oid"]) for blob in blobs if isinstance(blob, dict) and blob.get("oid")), None),
        answered=answered,
    )


def _namespace(full_path: Any) -> str | None:
    """The group or subgroup of a project's full path, ``iat/science/item-1`` -> ``iat/science``."""
    return str(full_path).rpartition("/")[0] or None if full_path else None


def project_id(global_id: Any) -> int:
    """The project id of a GitLab global id, ``gid://gitlab/Project/42`` -> 42."""
    text = str(global_id)
    number = text.removeprefix(PROJECT_GID)
    if number == text or not number.isdigit():
        raise SweepUnavailable(f"GitLab answered a project id that is not a project's global id: {text[:80]!r}")
    return int(number)


def _messages(answer: Mapping) -> str:
    errors = answer.get("errors") or ()
    return "; ".join(str(error.get("message"))[:200] for error in errors if isinstance(error, dict))[:600]
