"""GitLab's GraphQL API, the part a sync sweep uses: ``POST``/``GET /api/graphql`` on graphql-core.

What it models, each from GitLab's source (the paths below are files of
https://gitlab.com/gitlab-org/gitlab/-/blob/master/, e.g. ``app/graphql/gitlab_schema.rb``):

* The endpoint (``app/controllers/graphql_controller.rb``, ``GraphqlController#execute``; ``config/routes/api.rb``:
  ``match '/api/graphql', via: [:get, :post]``): ``query``, ``variables`` (an object or a JSON string,
  ``Gitlab::Graphql::Variables``) and ``operationName`` from the query string, a JSON body or a form body; a JSON array
  body is an Apollo batch (``_json``, ``execute_multiplex``). A query over ``MAX_QUERY_SIZE`` (10,000) characters is 422
  ``Query too large``; bad ``variables`` are 422; an unknown token is 401 ``Invalid token`` (``authorize_access_api!``).
  Errors the controller renders are ``{"errors": [{"message": ...}]}``. An exception that is not a GraphQL execution
  error (here: a failing Gitaly call) fails the whole request with 500 ``Internal server error``
  (``handle_exception``/``handle_internal_error`` in production): ``GitlabSchema`` (app/graphql/gitlab_schema.rb)
  has no ``rescue_from`` turning a Gitaly error into a field error, ``Resolvers::BlobsResolver`` rescues none, and
  the controller's ``ERROR_STATUS_MAP`` maps ``StandardError`` to 500 (``Gitlab::Git::ResourceExhaustedError`` to 503,
  not modelled). So a broken repository is a whole-request 500 here, not ``null`` plus ``errors[]``; the latter comes
  only from the timeout below.
* Authentication as for REST (``authenticate_sessionless_user!(:graphql_api)``: ``PRIVATE-TOKEN``,
  ``Authorization: Bearer``, ``private_token``/``access_token``). GitLab answers a request without a token for
  public data only; this server models no anonymous access (as its REST API, every request needs a token), so a
  request without one is 401 too.
* Limits (``app/graphql/gitlab_schema.rb``; https://docs.gitlab.com/ee/api/graphql/index.html#max-query-complexity):
  complexity 250 for a signed-in user, 300 for an administrator; depth 20; ``default_max_page_size 100`` (a larger
  ``first``/``last`` is capped, graphql-ruby's ``Pagination::Connection#limit_pagination_argument``);
  ``validate_max_errors 5``; graphql-ruby's messages ``Query has complexity of N, which exceeds max complexity of M``
  and ``Query has depth of N, which exceeds max depth of M``, answered as ``{"errors": [{"message": ...}]}`` with no
  ``data``.
* Complexity as GitLab scores it (``app/graphql/types/base_field.rb``: ``complexity_for``, ``base_complexity``,
  ``field_resolver_complexity``, ``connection_complexity_multiplier``; ``app/graphql/resolvers/base_resolver.rb``:
  ``resolver_complexity``, ``complexity_multiplier``): a plain field costs 1 (2 when it ``calls_gitaly``) plus its
  children; a field with a resolver costs its children plus the resolver's own complexity (1, +1 with ``sort``, +5
  with ``search``; ``NamespaceProjectsResolver`` +10, ``BlobsResolver`` + the number of ``paths``) plus 1 when it
  calls Gitaly, and a connection then multiplies that by ``1 + min(first, last, 100) * 0.01``: the children are
  counted once, and 100 items double them. ``queryComplexity { score limit }`` (``Types::QueryComplexityType``)
  reports both.
* The request timeout (``Gitlab::Graphql::Timeout`` < graphql-ruby's ``GraphQL::Schema::Timeout``,
  ``gitlab.graphql_timeout``, 30 s by default): a field that starts after the deadline resolves to ``null`` with the
  error ``Timeout on Type.field`` (a ``GraphQL::ExecutionError``: ``message``, ``locations``, ``path``); what
  resolved before it is kept.
* Types and fields: ``Query.group(fullPath)`` (``Types::GroupType``), ``Query.project(fullPath)``,
  ``Query.projects(ids:)`` (``Resolvers::ProjectsResolver``: every project the user may see, newest id first),
  ``Group.projects(includeSubgroups, includeArchived, ids)`` (``Resolvers::NamespaceProjectsResolver``), Project
  ``id`` (``gid://gitlab/Project/N``), ``fullPath``, ``path``, ``name``, ``nameWithNamespace``, ``archived``,
  ``visibility``, ``webUrl``, ``httpUrlToRepo``, ``createdAt``, ``lastActivityAt``, ``repository``
  (``Types::RepositoryType``: ``rootRef``, ``empty``, ``exists``, ``blobs(paths, ref)`` with ``oid``/``path``/
  ``name`` (``Resolvers::BlobsResolver``), ``commit(ref)`` (``Resolvers::Repositories::CommitResolver``),
  ``tree(path, ref) { lastCommit }`` (``Resolvers::TreeResolver``, ``Resolvers::LastCommitResolver``)). Connections
  have ``nodes``, ``edges { cursor node }``, ``pageInfo { hasNextPage hasPreviousPage startCursor endCursor }`` and
  ``count`` (``Types::CountableConnectionType``). Project connections are keyset-paged by id, newest first, with
  GitLab's opaque cursors (``Gitlab::Graphql::Pagination::Keyset::Connection``: base64url of ``{"id":"N"}``, a bad
  one is ``Please provide a valid cursor``); blob connections are graphql-ruby's ``ArrayConnection``.
* Who sees what: exactly the REST rules (:mod:`itembank_server.visibility`): a group or project the user may not see
  is ``null`` (``authorize :read_group``/``:read_project``), listings leave out the projects it may not see, and a
  repository whose code it may not read is ``null`` (``RepositoryType`` ``authorize :read_code``).
* Repositories as Gitaly answers through GitLab's ``Repository`` (``app/models/repository.rb``,
  ``lib/gitlab/repository_cache_adapter.rb`` ``no_repository_fallback``): a missing repository is not an error:
  ``exists`` false, ``empty`` true, ``rootRef`` null, ``blobs`` empty, ``commit`` and ``tree`` null. A missing
  path gives no blob; an unknown ref gives no commit.

Faults and counts as for REST: each request counts once under ``POST /api/graphql`` or ``GET /api/graphql``, and
``latency``/``status``/``drop`` faults on those endpoints act before the answer. A project's repository reads (each
Gitaly-calling field) take faults of the endpoint :data:`GITALY_ENDPOINT` and of any ``path_regex`` fault matching
``/<full path>.git`` (the faults of the project's git): ``latency`` delays the read (past the timeout, the fields
after it time out), ``status`` makes the Gitaly call fail, so the request answers 500.

Not modelled: anonymous access, mutations and subscriptions, fields and arguments not listed above (GitLab's
schema has thousands), GitLab's ``RecursionAnalyzer``, the query-string token limit and the limit on a batch's
summed complexity (each query of a batch is limited on its own here); parse and validation error
messages are graphql-core's (graphql-ruby words them differently; both answer 200 with ``errors`` and no ``data``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qsl

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute,
    get_named_type,
    parse,
    validate,
)
from graphql.execution.values import (
    VariableValues,
    get_argument_values,
    get_directive_values,
    get_variable_values,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef, TypeNameMetaFieldDef
from graphql.utilities import get_operation_ast

from . import bank_repos
from .faults import Faults
from .responses import Response, json_response
from .visibility import name_of

logger = logging.getLogger(__name__)

GRAPHQL_PATH = "/api/graphql"
ENDPOINTS = ("GET /api/graphql", "POST /api/graphql")
# The fault and counter key of a project's repository reads (Gitaly calls); faults match "/<full path>.git".
GITALY_ENDPOINT = "gitaly repository"
MAX_QUERY_SIZE = 10_000  # GraphqlController::MAX_QUERY_SIZE
DEFAULT_MAX_PAGE_SIZE = 100  # GitlabSchema default_max_page_size
AUTHENTICATED_MAX_COMPLEXITY = 250  # GitlabSchema::AUTHENTICATED_MAX_COMPLEXITY
ADMIN_MAX_COMPLEXITY = 300  # GitlabSchema::ADMIN_MAX_COMPLEXITY
AUTHENTICATED_MAX_DEPTH = 20  # GitlabSchema::AUTHENTICATED_MAX_DEPTH
VALIDATE_MAX_ERRORS = 5  # GitlabSchema validate_max_errors
DEFAULT_TIMEOUT = 30.0  # gitlab.yml graphql_timeout (config/gitlab.yml.example), seconds
INTERNAL_ERROR = "Internal server error"  # GraphqlController#handle_internal_error outside development and test
INVALID_CURSOR = "Please provide a valid cursor"  # Gitlab::Graphql::Pagination::Keyset::Connection
EMPTY_DOCUMENT = "Unexpected end of document"  # graphql-ruby's parse error for an empty query string

SDL = """
"Time represented in ISO 8601."
scalar Time

type Query {
  "Find a group."
  group(fullPath: ID!): Group
  "Find a project."
  project(fullPath: ID!): Project
  "Find projects visible to the current user."
  projects(ids: [ID!], after: String, before: String, first: Int, last: Int): ProjectConnection
  "Information about the complexity of the GraphQL query."
  queryComplexity: QueryComplexity
}

type QueryComplexity {
  "GraphQL query complexity limit."
  limit: Int
  "GraphQL query complexity score."
  score: Int
}

type Group {
  id: ID!
  fullPath: ID!
  fullName: String!
  name: String!
  path: String!
  visibility: String
  webUrl: String!
  "Projects within this namespace."
  projects(
    includeSubgroups: Boolean = false
    includeArchived: Boolean = true
    ids: [ID!]
    after: String
    before: String
    first: Int
    last: Int
  ): ProjectConnection!
}

type Project {
  id: ID!
  fullPath: ID!
  path: String!
  name: String!
  nameWithNamespace: String!
  archived: Boolean
  visibility: String
  webUrl: String
  httpUrlToRepo: String
  createdAt: Time
  lastActivityAt: Time
  "Git repository of the project."
  repository: Repository
}

type ProjectConnection {
  count: Int!
  edges: [ProjectEdge]
  nodes: [Project]
  pageInfo: PageInfo!
}

type ProjectEdge {
  cursor: String!
  node: Project
}

type PageInfo {
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
}

type Repository {
  "Blobs contained within the repository"
  blobs(paths: [String!]!, ref: String, after: String, before: String, first: Int, last: Int): RepositoryBlobConnection
  "Get a single commit from the repository."
  commit(ref: String!): Commit
  "Indicates repository has no visible content."
  empty: Boolean!
  "Indicates a corresponding Git repository exists on disk."
  exists: Boolean!
  "Default branch of the repository."
  rootRef: String
  "Tree of the repository."
  tree(path: String = "", ref: String, recursive: Boolean = false): Tree
}

type RepositoryBlobConnection {
  count: Int!
  edges: [RepositoryBlobEdge]
  nodes: [RepositoryBlob]
  pageInfo: PageInfo!
}

type RepositoryBlobEdge {
  cursor: String!
  node: RepositoryBlob
}

type RepositoryBlob {
  name: String
  oid: String!
  path: String!
}

type Tree {
  "Last commit for the tree."
  lastCommit: Commit
}

type Commit {
  sha: String!
  shortId: String!
  title: String
}
"""


@dataclass(frozen=True)
class Cost:
    """How GitLab scores one field (``Types::BaseField``): ``resolver`` fields add ``resolver`` (the resolver's
    ``resolver_complexity`` for the arguments) to their children; others cost 1; ``gitaly`` adds 1 either way;
    ``connection`` fields are then multiplied by ``1 + min(first, last, 100) * multiplier``."""

    resolver: Callable[[Mapping[str, Any]], int] | None = None
    gitaly: bool = False
    connection: bool = False
    multiplier: float = 0.01


def _base_resolver(args: Mapping[str, Any]) -> int:
    """``Resolvers::BaseResolver.resolver_complexity``: 1, +1 with ``sort``, +5 with ``search``."""
    return 1 + (1 if args.get("sort") else 0) + (5 if args.get("search") else 0)


COSTS: dict[tuple[str, str], Cost] = {
    ("Query", "group"): Cost(resolver=_base_resolver),  # Resolvers::GroupResolver
    ("Query", "project"): Cost(resolver=_base_resolver),  # Resolvers::ProjectResolver
    ("Query", "projects"): Cost(resolver=_base_resolver, connection=True),  # Resolvers::ProjectsResolver
    # Resolvers::NamespaceProjectsResolver.resolver_complexity: super + 10
    ("Group", "projects"): Cost(resolver=lambda args: _base_resolver(args) + 10, connection=True),
    # Types::RepositoryType: calls_gitaly: true on each of these
    ("Repository", "rootRef"): Cost(gitaly=True),
    ("Repository", "empty"): Cost(gitaly=True),
    ("Repository", "exists"): Cost(gitaly=True),
    # Resolvers::BlobsResolver.resolver_complexity: super + paths.size
    ("Repository", "blobs"): Cost(
        resolver=lambda args: _base_resolver(args) + len(args.get("paths") or ()), gitaly=True, connection=True
    ),
    ("Repository", "commit"): Cost(resolver=_base_resolver, gitaly=True),  # Resolvers::Repositories::CommitResolver
    ("Repository", "tree"): Cost(resolver=_base_resolver, gitaly=True),  # Resolvers::TreeResolver
    ("Tree", "lastCommit"): Cost(resolver=_base_resolver, gitaly=True),  # Resolvers::LastCommitResolver
    ("Commit", "title"): Cost(gitaly=True),  # Types::Repositories::CommitType
}


class ExecutionError(Exception):
    """A ``GraphQL::ExecutionError``: its message goes into ``errors`` (with ``locations`` and ``path``) and the
    field is ``null``; the rest of the query still resolves."""


class GitalyError(RuntimeError):
    """A Gitaly call failed: not an execution error, so GitLab answers the whole request with 500."""


class RequestError(Exception):
    """The controller refuses the request before execution: ``render_error(message, status:)``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# -- ids and cursors ---------------------------------------------------------------------------------------------


def global_id(model: str, record_id: int | str) -> str:
    """``GlobalID``'s URI for a record, e.g. ``gid://gitlab/Project/12``."""
    return f"gid://gitlab/{model}/{record_id}"


_GID = re.compile(r"^gid://gitlab/(?P<model>[A-Za-z][A-Za-z0-9:]*)/(?P<id>[^/?#]+)$")


def parse_gid(value: str, expected: str) -> int:
    """``GitlabSchema.parse_gid(value, expected_type:)``: the record id, or its argument errors."""
    match = _GID.match(value)
    if match is None:
        raise ExecutionError(f"{value} is not a valid GitLab ID.")
    if match["model"] != expected:
        raise ExecutionError(f"{value} is not a valid ID for {expected}.")
    try:
        return int(match["id"])
    except ValueError:
        raise ExecutionError(f"{value} is not a valid ID for {expected}.") from None


def encode_cursor(text: str) -> str:
    """graphql-ruby's ``Base64Encoder.encode``: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ExecutionError(INVALID_CURSOR) from None


def _cap(value: int | None) -> int | None:
    """graphql-ruby's ``limit_pagination_argument``: negative is 0, above the max page size is the max page size."""
    if value is None:
        return None
    return 0 if value < 0 else min(value, DEFAULT_MAX_PAGE_SIZE)


def _page_size(first: int | None, last: int | None) -> tuple[int | None, int | None, int]:
    """The capped ``first``/``last`` (``first`` defaults to the max page size when neither is given) and the
    ``limit_value`` of the page."""
    if first is not None and last is not None:
        raise ExecutionError("Can only provide either `first` or `last`, not both")
    first, last = _cap(first), _cap(last)
    if first is None and last is None:
        first = DEFAULT_MAX_PAGE_SIZE
    return first, last, min(v for v in (first, last, DEFAULT_MAX_PAGE_SIZE) if v is not None)


def id_cursor(record_id: int) -> str:
    """``Keyset::Connection#cursor_for``: the encoded JSON of the node's order attributes, each as a string
    (``Gitlab::Pagination::Keyset::Order#cursor_attributes_for_node``), here the id alone: ``{"id":"12"}``."""
    return encode_cursor(json.dumps({"id": str(record_id)}, separators=(",", ":")))


def _cursor_id(cursor: str) -> int:
    try:
        value = json.loads(decode_cursor(cursor))
        return int(value["id"])
    except (ValueError, TypeError, KeyError):
        raise ExecutionError(INVALID_CURSOR) from None


def _connection(nodes: list, cursor: Callable[[Any], str], has_next: bool, has_previous: bool, count) -> dict:
    edges = [{"cursor": cursor(node), "node": node} for node in nodes]
    return {
        "nodes": nodes,
        "edges": edges,
        "count": lambda _info: count(),
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def keyset_connection(
    fetch: Callable[..., list], count: Callable[[], int], cursor: Callable[[Any], str], args: Mapping[str, Any]
) -> dict:
    """A page of projects, newest id first, as ``Gitlab::Graphql::Pagination::Keyset::Connection`` pages them:
    ``after``/``before`` cursors bound the ids, ``first``/``last`` take ``limit_value`` (+1 to know whether more
    follow). ``fetch(id_after=, id_before=, limit=, sort=)`` lists the matching projects."""
    first, last, limit = _page_size(args.get("first"), args.get("last"))
    after, before = args.get("after"), args.get("before")
    id_before = _cursor_id(after) if after else None  # descending: after a cursor means older ids
    id_after = _cursor_id(before) if before else None
    has_previous = bool(after)
    if last is not None:
        rows = fetch(id_after=id_after, id_before=id_before, limit=limit + 1, sort="asc")
        has_previous = has_previous or len(rows) > limit
        nodes = list(reversed(rows[:limit]))
        has_next = bool(before)
    else:
        rows = fetch(id_after=id_after, id_before=id_before, limit=limit + 1, sort="desc")
        nodes = rows[:limit]
        has_next = bool(before) or len(rows) > limit
    return _connection(nodes, cursor, has_next, has_previous, count)


def array_connection(items: list, args: Mapping[str, Any]) -> dict:
    """graphql-ruby's ``GraphQL::Pagination::ArrayConnection``: cursors are the encoded 1-based positions."""
    first, last, _limit = _page_size(args.get("first"), args.get("last"))
    after, before = args.get("after"), args.get("before")

    def index(cursor: str) -> int:
        try:
            return int(decode_cursor(cursor))
        except ValueError:
            raise ExecutionError(INVALID_CURSOR) from None

    start = index(after) if after else 0
    end = index(before) - 1 if before else len(items)
    sliced = items[start : max(end, start)]
    positions = {id(item): n for n, item in enumerate(items, start=1)}
    has_previous = len(sliced) > last if last is not None else start > 0
    has_next = len(sliced) > first if first is not None else bool(before) and end < len(items)
    if first is not None:
        sliced = sliced[:first]
    if last is not None:
        sliced = sliced[-last:] if last else []
    return _connection(
        sliced, lambda item: encode_cursor(str(positions[id(item)])), has_next, has_previous, lambda: len(items)
    )


# -- execution context -------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What the resolvers see: the user, the bank and the limits of this query."""

    api: GraphqlApi
    user: dict
    limit: int
    deadline: float
    score: int = 0

    def gitaly(self, project: Mapping) -> None:
        """One Gitaly call for the project's repository: apply its faults (latency, then failure)."""
        path = f"/{project['path_with_namespace']}.git"
        faults = self.api.faults.take(GITALY_ENDPOINT, path, ("latency", "status"))
        if "latency" in faults and self.api.stopping.wait(float(faults["latency"].params["seconds"])):
            raise GitalyError("server stopping")
        if "status" in faults:
            raise GitalyError(f"injected Gitaly failure for {project['path_with_namespace']}")


@dataclass
class RepositoryNode:
    """``Repository`` of one project."""

    project: dict
    path: Any  # pathlib.Path of the bare repository

    @property
    def exists(self) -> bool:
        return bank_repos.is_repo(self.path)

    def branch_count(self) -> int:
        return sum(1 for ref in bank_repos.list_refs(self.path) if ref.startswith("refs/heads/"))

    def root_ref(self) -> str | None:
        """``Repository#root_ref``: the branch HEAD names, when it exists (null for a missing or empty repository,
        ``no_repository_fallback``)."""
        if not self.exists:
            return None
        target = bank_repos.head_target(self.path)
        if target is None or not target.startswith("refs/heads/") or bank_repos.resolve_ref(self.path, target) is None:
            return None
        return target[len("refs/heads/") :]

    def empty(self) -> bool:
        """``Repository#empty?``: ``!exists? || !has_visible_content?`` (no branch)."""
        return not self.exists or self.branch_count() == 0


_BAD_REF = re.compile(r"(^[-/.]|\.\.|[\x00-\x20~^:?*\[\\\x7f]|@\{|//|/\.|\.lock$|\.lock/|[/.]$)")


def valid_ref(ref: str) -> bool:
    """``Gitlab::GitRefValidator.validate(ref, skip_head_ref_check: true)`` (lib/gitlab/git_ref_validator.rb):
    git's ``check-ref-format`` rules for a branch or tag name."""
    return bool(ref) and _BAD_REF.search(ref) is None


# -- resolvers ---------------------------------------------------------------------------------------------------


def _ctx(info: GraphQLResolveInfo) -> Context:
    return info.context


def _time(value: str | None) -> str | None:
    """``Types::TimeType``: ISO 8601 in seconds (``2024-01-05T10:20:30Z``)."""
    if not value:
        return None
    return re.sub(r"\.\d+Z$", "Z", value)


def _group(group: Mapping, info: GraphQLResolveInfo) -> dict:
    base = _ctx(info).api.base_url()
    return {
        **group,
        "id": global_id("Group", group["id"]),
        "group_id": group["id"],
        "fullPath": group["full_path"],
        "fullName": group["full_name"],
        "visibility": name_of(group["visibility_level"]),
        "webUrl": f"{base}/groups/{group['full_path']}",
    }


def _project(project: Mapping, info: GraphQLResolveInfo) -> dict:
    base = _ctx(info).api.base_url()
    full_path = project["path_with_namespace"]
    return {
        "record": project,
        "id": global_id("Project", project["id"]),
        "fullPath": full_path,
        "path": project["path"],
        "name": project["name"],
        "nameWithNamespace": project["name_with_namespace"],
        "archived": project["archived"],
        "visibility": name_of(project["visibility_level"]),
        "webUrl": f"{base}/{full_path}",
        "httpUrlToRepo": f"{base}/{full_path}.git",
        "createdAt": _time(project["created_at"]),
        "lastActivityAt": _time(project["last_activity_at"]),
    }


def resolve_group(_root, info: GraphQLResolveInfo, fullPath: str) -> dict | None:
    """``Query.group``: null when there is no such group or the user may not see it (``read_group``)."""
    ctx = _ctx(info)
    bank = ctx.api.bank
    group = bank.find_group(fullPath, by_path=True)
    if group is None or not bank.can_read_group(ctx.user, group):
        return None
    return _group(group, info)


def resolve_project(_root, info: GraphQLResolveInfo, fullPath: str) -> dict | None:
    """``Query.project``: null when there is no such project or the user may not see it (``read_project``)."""
    ctx = _ctx(info)
    bank = ctx.api.bank
    project = bank.find_project(fullPath, by_path=True)
    if project is None or not bank.can_read_project(ctx.user, project):
        return None
    return _project(project, info)


def _project_connection(info: GraphQLResolveInfo, group_id: int | None, args: Mapping[str, Any], **filters) -> dict:
    ctx = _ctx(info)
    bank = ctx.api.bank
    ids = args.get("ids")
    if ids is not None:
        filters["ids"] = [parse_gid(value, "Project") for value in ids]
    filters["visible_to"] = ctx.user

    def fetch(**window) -> list:
        rows = bank.list_projects(group_id, order_by="id", **window, **filters)
        return [_project(row, info) for row in rows]

    count = lambda: bank.count_projects(group_id, **filters)  # noqa: E731
    return keyset_connection(fetch, count, lambda node: id_cursor(node["record"]["id"]), args)


def resolve_projects(_root, info: GraphQLResolveInfo, **args) -> dict:
    """``Query.projects`` (``ProjectsResolver``/``ProjectsFinder``): every project the user may see, by ``ids``."""
    return _project_connection(info, None, args)


def resolve_group_projects(group: Mapping, info: GraphQLResolveInfo, **args) -> dict:
    """``Group.projects`` (``NamespaceProjectsResolver``/``Namespaces::ProjectsFinder``): the group's projects (and
    its subgroups' with ``includeSubgroups``) the user may see; ``includeArchived: false`` leaves archived ones out."""
    filters: dict[str, Any] = {"include_subgroups": bool(args.get("includeSubgroups"))}
    if args.get("includeArchived") is False:
        filters["archived"] = False
    return _project_connection(info, group["group_id"], args, **filters)


def resolve_repository(project: Mapping, info: GraphQLResolveInfo) -> RepositoryNode | None:
    """``Project.repository``: null when the user may not read the code (``read_code``: Reporter, or any user of an
    internal or public project)."""
    ctx = _ctx(info)
    bank = ctx.api.bank
    record = project["record"]
    if not bank.can_download_code(ctx.user, record):
        return None
    if record["empty_repo"]:
        # a project without history gets its (empty) repository when first used, as over git; GitLab creates it
        # with the project (Projects::CreateService). One with history whose repository is gone stays missing.
        return RepositoryNode(record, bank.ensure_repo(record))
    return RepositoryNode(record, bank.repo_path(record))


def resolve_root_ref(repo: RepositoryNode, info: GraphQLResolveInfo) -> str | None:
    _ctx(info).gitaly(repo.project)
    return repo.root_ref()


def resolve_empty(repo: RepositoryNode, info: GraphQLResolveInfo) -> bool:
    _ctx(info).gitaly(repo.project)
    return repo.empty()


def resolve_exists(repo: RepositoryNode, info: GraphQLResolveInfo) -> bool:
    _ctx(info).gitaly(repo.project)
    return repo.exists


def resolve_blobs(repo: RepositoryNode, info: GraphQLResolveInfo, paths: list[str], **args) -> dict:
    """``Resolvers::BlobsResolver``: ``[]`` for an empty repository; ``ref`` defaults to the root ref and must be a
    valid ref name (``Ref is not valid``); the blobs of ``paths`` that exist at ``ref`` (``blobs_at``, one Gitaly
    ``GetBlobs``), in the order asked."""
    _ctx(info).gitaly(repo.project)
    ref = args.get("ref")
    if repo.empty():
        return array_connection([], args)
    ref = ref or repo.root_ref() or "HEAD"
    if not valid_ref(ref):
        raise ExecutionError("Ref is not valid")
    blobs = [
        {"oid": oid, "path": name, "name": PurePosixPath(name).name}
        for name, oid in bank_repos.blob_ids(repo.path, ref, paths)
    ]
    return array_connection(blobs, args)


def _commit(repo: RepositoryNode, sha: str, info: GraphQLResolveInfo) -> dict:
    def title(_info: GraphQLResolveInfo) -> str:
        _ctx(info).gitaly(repo.project)
        return bank_repos.commit_title(repo.path, sha)

    return {"sha": sha, "shortId": sha[:8], "title": title}


def resolve_commit(repo: RepositoryNode, info: GraphQLResolveInfo, ref: str) -> dict | None:
    """``Resolvers::Repositories::CommitResolver``: ``repository.commit(ref)``, null for an empty or unknown ref
    (one Gitaly ``FindCommit``)."""
    _ctx(info).gitaly(repo.project)
    if not ref or not repo.exists:
        return None
    sha = bank_repos.commit_id(repo.path, ref)
    return None if sha is None else _commit(repo, sha, info)


def resolve_tree(repo: RepositoryNode, info: GraphQLResolveInfo, path: str = "", **args) -> dict | None:
    """``Resolvers::TreeResolver``: null unless the repository exists; ``ref`` defaults to HEAD."""
    _ctx(info).gitaly(repo.project)
    if not repo.exists:
        return None
    return {"repo": repo, "ref": args.get("ref") or "HEAD", "path": path or ""}


def resolve_last_commit(tree: Mapping, info: GraphQLResolveInfo) -> dict | None:
    """``Resolvers::LastCommitResolver``: ``last_commit_for_path(ref, path)``, Gitaly's ``LastCommitForPath``, i.e.
    ``git log -1 -- <path>``: not always the head, since commits that leave the tree unchanged are skipped."""
    repo: RepositoryNode = tree["repo"]
    _ctx(info).gitaly(repo.project)
    head = bank_repos.commit_id(repo.path, tree["ref"])
    if head is None:
        return None
    sha = bank_repos.last_commit_for_path(repo.path, head, tree["path"])
    return None if sha is None else _commit(repo, sha, info)


def resolve_query_complexity(_root, info: GraphQLResolveInfo) -> dict:
    ctx = _ctx(info)
    return {"score": ctx.score, "limit": ctx.limit}


RESOLVERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("Query", "group"): resolve_group,
    ("Query", "project"): resolve_project,
    ("Query", "projects"): resolve_projects,
    ("Query", "queryComplexity"): resolve_query_complexity,
    ("Group", "projects"): resolve_group_projects,
    ("Project", "repository"): resolve_repository,
    ("Repository", "rootRef"): resolve_root_ref,
    ("Repository", "empty"): resolve_empty,
    ("Repository", "exists"): resolve_exists,
    ("Repository", "blobs"): resolve_blobs,
    ("Repository", "commit"): resolve_commit,
    ("Repository", "tree"): resolve_tree,
    ("Tree", "lastCommit"): resolve_last_commit,
}


_REPOSITORY_COMMIT_SDL = """  "Get a single commit from the repository."
  commit(ref: String!): Commit
"""


def make_schema(repository_commit: bool = True) -> GraphQLSchema:
    """The schema; without ``repository_commit``, a GitLab from before ``Repository.commit``
    (``Resolvers::Repositories::CommitResolver``, gitlab-org/gitlab!179542, 2025)."""
    sdl = SDL if repository_commit else SDL.replace(_REPOSITORY_COMMIT_SDL, "")
    schema = build_schema(sdl)
    for (type_name, field_name), resolver in RESOLVERS.items():
        object_type = schema.type_map[type_name]
        assert isinstance(object_type, GraphQLObjectType)
        if field_name in object_type.fields:
            object_type.fields[field_name].resolve = resolver
    return schema


def timeout_middleware(next_resolver, root, info: GraphQLResolveInfo, **args):
    """``GraphQL::Schema::Timeout``: a field that starts after the deadline is ``Timeout on Type.field``."""
    if time.monotonic() > _ctx(info).deadline:
        raise ExecutionError(f"Timeout on {info.parent_type.name}.{info.field_name}")
    return next_resolver(root, info, **args)


# -- complexity and depth ----------------------------------------------------------------------------------------


@dataclass
class _Analysis:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    max_depth: int = field(default=0)

    def fields(self, selection_set: SelectionSetNode | None) -> dict[str, list[FieldNode]]:
        """The selection's fields by response key, fragments inlined, ``@skip``/``@include`` applied (the same field
        selected twice is merged and counted once, as graphql-ruby's analysis does)."""
        merged: dict[str, list[FieldNode]] = {}
        self._collect(selection_set, merged, set())
        return merged

    def _collect(self, selection_set, merged: dict[str, list[FieldNode]], seen: set[str]) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                merged.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                self._collect(selection.selection_set, merged, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in seen:
                    self._collect(fragment.selection_set, merged, seen | {name})

    def _included(self, node) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self._variable_values)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self._variable_values)
        return not (include is not None and include.get("if") is False)

    @property
    def _variable_values(self) -> VariableValues:
        return VariableValues(sources={}, coerced=self.variables)

    def score(self, parent: GraphQLNamedType, nodes: list[FieldNode], depth: int) -> int:
        """GitLab's complexity of one field (``Types::BaseField#complexity_for`` and ``field_resolver_complexity``)."""
        self.max_depth = max(self.max_depth, depth)
        name = nodes[0].name.value
        definition = self._definition(parent, name)
        child = 0
        if definition is not None:
            child_type = get_named_type(definition.type)
            children: dict[str, list[FieldNode]] = {}
            for node in nodes:
                for key, more in self.fields(node.selection_set).items():
                    children.setdefault(key, []).extend(more)
            child = sum(self.score(child_type, group, depth + 1) for group in children.values())
        cost = COSTS.get((parent.name, name))
        if cost is None:
            return 1 + child
        if cost.resolver is None:
            return 1 + (1 if cost.gitaly else 0) + child
        args = self._arguments(definition, nodes[0])
        complexity: float = child + cost.resolver(args) + (1 if cost.gitaly else 0)
        if cost.connection:
            limit = min(v for v in (args.get("first"), args.get("last"), DEFAULT_MAX_PAGE_SIZE) if v is not None)
            complexity += complexity * (limit * cost.multiplier)
        return int(complexity)

    def _definition(self, parent: GraphQLNamedType, name: str):
        if name == "__typename":
            return TypeNameMetaFieldDef
        if parent is self.schema.query_type and name == "__schema":
            return SchemaMetaFieldDef
        if parent is self.schema.query_type and name == "__type":
            return TypeMetaFieldDef
        fields = getattr(parent, "fields", None)
        return fields.get(name) if fields else None

    def _arguments(self, definition, node: FieldNode) -> dict[str, Any]:
        try:
            return get_argument_values(definition, node, self._variable_values)
        except GraphQLError:
            return {}


def analyse(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode, variables: dict
) -> tuple[int, int]:
    """The query's complexity score and depth (root fields at depth 1)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    analysis = _Analysis(schema, fragments, variables)
    root = schema.query_type
    assert root is not None
    score = sum(analysis.score(root, nodes, 1) for nodes in analysis.fields(operation.selection_set).values())
    return score, analysis.max_depth


# -- the endpoint ------------------------------------------------------------------------------------------------


class GraphqlApi:
    """Answers ``/api/graphql`` requests for the server (authentication, counting and HTTP faults are the
    server's, as for REST)."""

    def __init__(
        self,
        bank,
        base_url: Callable[[], str],
        faults: Faults,
        stopping: threading.Event,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        repository_commit: bool = True,
    ):
        self.bank = bank
        self.base_url = base_url
        self.faults = faults
        self.stopping = stopping
        self.timeout = timeout
        self.schema = make_schema(repository_commit)

    def handle(
        self, method: str, query: list[tuple[str, str]], headers: Mapping[str, str], body: bytes, user: dict
    ) -> Response:
        """One request of ``user`` (already authenticated): the JSON answer, or the controller's error."""
        try:
            params = self._params(method, query, headers, body)
            if isinstance(params, list):
                return json_response(200, self._multiplex(params, user))
            if len(str(params.get("query") or "")) > MAX_QUERY_SIZE:
                raise RequestError(422, "Query too large")
            return json_response(200, self._run_entry(params, user))
        except RequestError as error:
            return error_response(error.status, str(error))
        except (GitalyError, bank_repos.GitError) as error:
            logger.info("GraphQL request failed on a repository: %s", error)
            return error_response(500, INTERNAL_ERROR)
        except Exception:
            logger.exception("GraphQL request failed")
            return error_response(500, INTERNAL_ERROR)

    def _run_entry(self, params: Mapping, user: dict) -> dict:
        """One query of a request: its ``query``, ``variables`` and ``operationName`` parameters."""
        query, operation = str(params.get("query") or ""), params.get("operationName") or None
        return self.run(query, variables(params.get("variables")), operation, user)

    def _multiplex(self, queries: list, user: dict) -> list[dict]:
        """Apollo batching (``_json``): every query runs, the answer is the list of their results."""
        entries = [q if isinstance(q, dict) else {} for q in queries]
        if sum(len(str(q.get("query") or "")) for q in entries) > MAX_QUERY_SIZE:
            raise RequestError(422, "Query too large")
        return [self._run_entry(entry, user) for entry in entries]

    @staticmethod
    def _params(method: str, query: list[tuple[str, str]], headers: Mapping[str, str], body: bytes) -> dict | list:
        """Rails' ``params``: the query string, then the body (JSON or form) on top; a JSON array is ``_json``."""
        params: dict[str, Any] = dict(query)
        if method != "POST" or not body:
            return params
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/json" or content_type.endswith("+json"):
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise RequestError(400, "400 Bad Request") from None
            if isinstance(parsed, list):
                return parsed
            if isinstance(parsed, dict):
                params.update(parsed)
        elif content_type == "application/x-www-form-urlencoded":
            params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        return params

    def run(self, text: str, values: dict, operation_name: str | None, user: dict) -> dict:
        """Parse, validate, analyse and execute one query as ``GitlabSchema.execute`` does."""
        if not text.strip():
            return {"errors": [{"message": EMPTY_DOCUMENT, "locations": []}]}
        try:
            document = parse(text)
        except GraphQLError as error:
            return {"errors": [error.formatted]}
        problems = validate(self.schema, document, max_errors=VALIDATE_MAX_ERRORS)
        if problems:
            return {"errors": [problem.formatted for problem in problems[:VALIDATE_MAX_ERRORS]]}
        limit = ADMIN_MAX_COMPLEXITY if user.get("admin") else AUTHENTICATED_MAX_COMPLEXITY
        context = Context(self, user, limit, time.monotonic() + self.timeout)
        operation = get_operation_ast(document, operation_name)
        if operation is not None:
            coerced = get_variable_values(self.schema, operation.variable_definitions or (), values)
            if isinstance(coerced, list):
                return {"errors": [error.formatted for error in coerced]}
            context.score, depth = analyse(self.schema, document, operation, coerced.coerced)
            errors = []
            if depth > AUTHENTICATED_MAX_DEPTH:
                errors.append(f"Query has depth of {depth}, which exceeds max depth of {AUTHENTICATED_MAX_DEPTH}")
            if context.score > limit:
                errors.append(f"Query has complexity of {context.score}, which exceeds max complexity of {limit}")
            if errors:
                return {"errors": [{"message": message} for message in errors]}
        result = execute(
            self.schema,
            document,
            context_value=context,
            variable_values=values,
            operation_name=operation_name,
            middleware=[timeout_middleware],
        )
        assert not hasattr(result, "__await__")
        answer: dict[str, Any] = {"data": result.data}  # type: ignore[union-attr]
        errors = result.errors or []  # type: ignore[union-attr]
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, ExecutionError | GraphQLError):
                raise original  # not a GraphQL::ExecutionError: the controller answers 500
        if errors:
            answer["errors"] = [error.formatted for error in errors]
        return answer


def variables(value: Any) -> dict:
    """``Gitlab::Graphql::Variables#to_h``: a JSON object, a JSON string of one (blank: none), or nothing; anything
    else is 422."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as error:
            raise RequestError(422, str(error)) from None
        return variables(value)
    if isinstance(value, dict):
        return value
    raise RequestError(422, f"Unexpected parameters: {value}")


def error_response(status: int, message: str) -> Response:
    """``GraphqlController#render_error``: ``{"errors": [{"message": ...}]}``."""
    return json_response(status, {"errors": [{"message": message}]})
