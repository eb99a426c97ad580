"""The GitLab REST v4 subset: routes, parameter coercion like Grape's, and GitLab's JSON entities."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .bank_store import PROJECT_ORDER_COLUMNS, ItemBank
from .faults import Faults
from .grouproutes import GroupRoutes
from .pagination import (
    COUNT_LIMIT,
    DEFAULT_PER_PAGE,
    KEYSET_UNAVAILABLE,
    PageResult,
    clamp_page,
    keyset_headers,
    keyset_order,
    paginate,
    pagination_headers,
)
from .projectroutes import ProjectRoutes
from .requestparams import body_params as _body_params
from .requestparams import parse_bool, parse_int, parse_optional_int
from .responses import ApiError, Response, invalid_param, json_response, not_found_message
from .visibility import name_of
from .webhook_delivery import WebhookDispatcher
from .webhook_store import HOOK_DEFAULTS

API_PREFIX = "/api/v4"
_HOOK_BOOLEANS = [name for name, default in HOOK_DEFAULTS.items() if isinstance(default, bool)]
_HOOK_STRINGS = [name for name, default in HOOK_DEFAULTS.items() if not isinstance(default, bool)]
_TOKEN_PARAMS = ("private_token", "access_token")
# Who acts when a request carries no user (before users and tokens exist): GitLab's first administrator.

# Declared parameters with defaults: Grape puts them into ``params``, so they show up in GitLab's Link URLs.
_GROUP_PROJECTS_DEFAULTS = {
    "include_ancestor_groups": "false",
    "include_subgroups": "false",
    "order_by": "created_at",
    "owned": "false",
    "simple": "false",
    "sort": "desc",
    "starred": "false",
    "with_custom_attributes": "false",
    "with_issues_enabled": "false",
    "with_merge_requests_enabled": "false",
    "with_shared": "true",
}


@dataclass
class ApiRequest:
    method: str
    path: str  # raw (still percent-encoded) path, without the query
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes = b""
    user: dict | None = None  # the authenticated user: {"id", "username", "name", "email", "admin"}

    @property
    def params(self) -> dict[str, str]:
        """Query parameters, the last occurrence winning (Rack)."""
        return dict(self.query)


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: str

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"

    def match(self, path: str) -> dict[str, str] | None:
        expected, actual = self.template.split("/"), path.split("/")
        if len(expected) != len(actual):
            return None
        params = {}
        for want, got in zip(expected, actual, strict=True):
            if want.startswith(":"):
                if not got:
                    return None
                params[want[1:]] = unquote(got)
            elif want != got:
                return None
        return params


@dataclass
class Resolution:
    """Which route a request hits: ``endpoint`` names it for counters and faults."""

    endpoint: str
    route: Route | None = None
    params: dict[str, str] = field(default_factory=dict)
    allowed: list[str] = field(default_factory=list)  # methods of the path when the method is not one of them


ROUTES = [
    Route("GET", f"{API_PREFIX}/user", "current_user"),
    Route("GET", f"{API_PREFIX}/groups/:id", "show_group"),
    Route("PUT", f"{API_PREFIX}/groups/:id", "update_group"),
    Route("GET", f"{API_PREFIX}/groups/:id/members", "list_group_members"),
    Route("POST", f"{API_PREFIX}/groups/:id/members", "add_group_member"),
    Route("GET", f"{API_PREFIX}/groups/:id/members/all", "list_all_group_members"),
    Route("GET", f"{API_PREFIX}/groups/:id/members/all/:user_id", "show_all_group_member"),
    Route("GET", f"{API_PREFIX}/groups/:id/members/:user_id", "show_group_member"),
    Route("DELETE", f"{API_PREFIX}/groups/:id/members/:user_id", "remove_group_member"),
    Route("GET", f"{API_PREFIX}/groups/:id/projects", "list_group_projects"),
    Route("POST", f"{API_PREFIX}/projects", "create_project"),
    Route("GET", f"{API_PREFIX}/projects/:id", "show_project"),
    Route("PUT", f"{API_PREFIX}/projects/:id", "update_project"),
    Route("DELETE", f"{API_PREFIX}/projects/:id", "delete_project"),
    Route("PUT", f"{API_PREFIX}/projects/:id/transfer", "transfer_project"),
    Route("POST", f"{API_PREFIX}/projects/:id/archive", "archive_project"),
    Route("POST", f"{API_PREFIX}/projects/:id/unarchive", "unarchive_project"),
    Route("GET", f"{API_PREFIX}/projects/:id/members", "list_project_members"),
    Route("POST", f"{API_PREFIX}/projects/:id/members", "add_project_member"),
    Route("GET", f"{API_PREFIX}/projects/:id/members/all", "list_all_project_members"),
    Route("GET", f"{API_PREFIX}/projects/:id/members/all/:user_id", "show_all_project_member"),
    Route("GET", f"{API_PREFIX}/projects/:id/members/:user_id", "show_project_member"),
    Route("DELETE", f"{API_PREFIX}/projects/:id/members/:user_id", "remove_project_member"),
    Route("GET", f"{API_PREFIX}/projects/:id/hooks", "list_hooks"),
    Route("POST", f"{API_PREFIX}/projects/:id/hooks", "create_hook"),
    Route("GET", f"{API_PREFIX}/projects/:id/hooks/:hook_id", "show_hook"),
    Route("PUT", f"{API_PREFIX}/projects/:id/hooks/:hook_id", "edit_hook"),
    Route("DELETE", f"{API_PREFIX}/projects/:id/hooks/:hook_id", "delete_hook"),
    Route("POST", f"{API_PREFIX}/projects/:id/hooks/:hook_id/test/:trigger", "test_hook"),
]


def endpoints() -> list[str]:
    """Every REST endpoint template (counter and fault key)."""
    return [route.endpoint for route in ROUTES]


def resolve(method: str, path: str) -> Resolution:
    """The route for ``method`` and raw ``path``; HEAD is answered like GET (as Grape does)."""
    method = "GET" if method == "HEAD" else method
    allowed = []
    for route in ROUTES:
        params = route.match(path)
        if params is None:
            continue
        if route.method == method:
            return Resolution(route.endpoint, route, params)
        allowed.append(route.method)
    if allowed:
        return Resolution(f"{method} {_template_of(path)}", allowed=allowed)
    return Resolution(f"{method} unmatched")


def _template_of(path: str) -> str:
    return next(route.template for route in ROUTES if route.match(path) is not None)


def unmatched_response(resolution: Resolution) -> Response:
    if resolution.allowed:
        allow = ", ".join(sorted(set(resolution.allowed) | {"OPTIONS"}))
        return json_response(405, {"error": "405 Not Allowed"}, [("Allow", allow)])
    return json_response(404, {"error": "404 Not Found"})


def presented_token(request: ApiRequest) -> str | None:
    """The token the request authenticates with: ``private_token``/``access_token`` parameter or header."""
    params = request.params
    for name in _TOKEN_PARAMS:
        if params.get(name):
            return params[name]
    if request.headers.get("PRIVATE-TOKEN"):
        return request.headers["PRIVATE-TOKEN"]
    scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


class RestApi(GroupRoutes, ProjectRoutes):
    """Answers resolved REST requests from the bank (who may ask what: :mod:`itembank_server.access`)."""

    def __init__(
        self,
        bank: ItemBank,
        base_url: Callable[[], str],
        faults: Faults,
        hooks: WebhookDispatcher,
        *,
        count_limit: int = COUNT_LIMIT,
        keyset_group_projects: bool = True,
    ):
        self.bank = bank
        self._base_url = base_url
        self.faults = faults
        self.hooks = hooks
        self.count_limit = count_limit
        self.keyset_group_projects = keyset_group_projects

    @property
    def base_url(self) -> str:
        return self._base_url()

    def handle(self, resolution: Resolution, request: ApiRequest) -> Response:
        assert resolution.route is not None
        handler = getattr(self, resolution.route.handler)
        try:
            return handler(request, resolution)
        except ApiError as error:
            return error.response

    # -- groups ------------------------------------------------------------------------------------

    def show_group(self, request: ApiRequest, resolution: Resolution) -> Response:
        group = self._group(resolution.params["id"])
        with_projects = parse_bool("with_projects", request.params.get("with_projects")) is not False
        return json_response(200, self.group_details(group, request.user, with_projects=with_projects))

    def group_details(self, group: dict, user: dict | None, *, with_projects: bool = True) -> dict:
        """``Entities::GroupDetail``: the group and (``with_projects``) the projects of it ``user`` may see."""
        body = self.group_entity(group)
        if with_projects:
            projects = self.bank.list_projects(group["id"], order_by="id", sort="asc", limit=100, visible_to=user)
            body["projects"] = [self.project_entity(p) for p in projects]
            body["shared_projects"] = []
        return body

    def list_group_projects(self, request: ApiRequest, resolution: Resolution) -> Response:
        """``GET /groups/:id/projects`` (https://docs.gitlab.com/api/groups/#list-projects), offset or keyset paged.

        ``id_after``/``id_before`` filter as ``ProjectsFinder`` does (``project_finder_params``). ``pagination=keyset``
        follows https://docs.gitlab.com/api/rest/#keyset-based-pagination (``order_by=id`` only, else 405).
        Note: GitLab itself pages this endpoint with offset pagination only (``lib/api/groups.rb`` calls ``paginate``,
        which is ``OffsetPagination``); keyset there is offered by ``GET /projects``. Here the group listing answers
        keyset requests as ``GET /projects`` does, so long iterations stay exact while projects come and go; with
        ``keyset_group_projects`` off it answers as GitLab's own code does: ``pagination=keyset`` is ignored (not a
        declared parameter of the route) and the pages are offset pages.

        Only the projects the user may see are listed, counted and paged (``GroupProjectsFinder``: members see every
        project, others the internal and public ones and those they are members of), filtered in SQL.
        """
        params = request.params
        page, per_page = _page_params(params)
        order_by = params.get("order_by") or "created_at"
        if order_by not in PROJECT_ORDER_COLUMNS:
            raise invalid_param("order_by", "does not have a valid value")
        sort = params.get("sort") or "desc"
        if sort not in ("asc", "desc"):
            raise invalid_param("sort", "does not have a valid value")
        archived = parse_bool("archived", params.get("archived"))
        simple = bool(parse_bool("simple", params.get("simple")))
        subgroups = bool(parse_bool("include_subgroups", params.get("include_subgroups")))
        id_after = parse_optional_int("id_after", params.get("id_after"))
        id_before = parse_optional_int("id_before", params.get("id_before"))
        group = self._group(resolution.params["id"])
        filters = {
            "archived": archived,
            "include_subgroups": subgroups,
            "id_after": id_after,
            "id_before": id_before,
            "visible_to": request.user,
        }
        canonical = {
            "order_by": order_by,
            "sort": sort,
            "simple": _bool_text(simple),
            "include_subgroups": _bool_text(subgroups),
        }
        if archived is not None:
            canonical["archived"] = _bool_text(archived)
        link_params = {**_GROUP_PROJECTS_DEFAULTS, **params, **canonical, "id": resolution.params["id"]}
        if params.get("pagination") == "keyset" and self.keyset_group_projects:
            raw_per_page = parse_int("per_page", params.get("per_page"), DEFAULT_PER_PAGE)
            order = keyset_order(order_by, sort, raw_per_page)
            if order is None:
                raise ApiError(405, {"error": KEYSET_UNAVAILABLE})
            projects = self.bank.list_projects(group["id"], order_by="id", sort=sort, limit=order.per_page, **filters)
            items = self._truncated(request, resolution, [self.project_entity(p, simple=simple) for p in projects])
            link_params.setdefault("page", "1")  # Grape's declared defaults of :pagination
            link_params.setdefault("per_page", str(DEFAULT_PER_PAGE))
            link_params = self._link_params(link_params)
            return json_response(200, items, keyset_headers(order, items, self.base_url + request.path, link_params))
        result = paginate(
            lambda offset, limit: self.bank.list_projects(
                group["id"], order_by=order_by, sort=sort, offset=offset, limit=limit, **filters
            ),
            lambda cap: self.bank.count_projects(group["id"], cap=cap, **filters),
            page,
            per_page,
            self.count_limit,
        )
        items = [self.project_entity(p, simple=simple) for p in result.items]
        return self._page_response(request, resolution, result, items, link_params)

    def _group(self, ref: str) -> dict:
        group = self.bank.find_group(ref)
        if group is None:
            raise not_found_message("Group")
        return group

    # -- projects ----------------------------------------------------------------------------------

    def show_project(self, request: ApiRequest, resolution: Resolution) -> Response:
        """``GET /projects/:id``: ``Entities::ProjectWithAccess``, the project and the user's ``permissions``."""
        project = self._project(resolution.params["id"])
        entity = self.project_entity(project)
        entity["permissions"] = self.project_permissions(project, request.user)
        return json_response(200, entity)

    def project_permissions(self, project: dict, user: dict | None) -> dict:
        """``project_access``: the user's direct project membership; ``group_access``: its highest membership of
        the project's group and the group's ancestors (``Group#highest_group_member``); null where it has none."""
        if user is None:
            return {"project_access": None, "group_access": None}
        direct = self.bank.project_member(project, user["id"])
        inherited = self.bank.highest_inherited_membership(project["namespace"]["id"], user["id"], include_group=True)
        return {"project_access": _access_entity(direct), "group_access": _access_entity(inherited)}

    def _project(self, ref: str) -> dict:
        project = self.bank.find_project(ref)
        if project is None:
            raise not_found_message("Project")
        return project

    # -- hooks -------------------------------------------------------------------------------------

    def list_hooks(self, request: ApiRequest, resolution: Resolution) -> Response:
        page, per_page = _page_params(request.params)
        hooks = self.bank.hooks(self._project(resolution.params["id"])["id"])
        result = paginate(
            lambda offset, limit: hooks[offset : offset + limit],
            lambda cap: min(len(hooks), cap),
            page,
            per_page,
            self.count_limit,
        )
        items = [self.hook_entity(h) for h in result.items]
        link_params = {**request.params, "id": resolution.params["id"]}
        return self._page_response(request, resolution, result, items, link_params)

    def show_hook(self, request: ApiRequest, resolution: Resolution) -> Response:
        return json_response(200, self.hook_entity(self._hook(resolution)))

    def create_hook(self, request: ApiRequest, resolution: Resolution) -> Response:
        params = {**request.params, **_body_params(request)}
        url = params.get("url")
        if url is None or url == "":
            raise invalid_param("url", "is missing")
        attributes = _hook_attributes(params)
        project = self._project(resolution.params["id"])
        if not isinstance(url, str) or not _valid_hook_url(url):
            raise ApiError(422, {"error": "Invalid url given"})
        token = params.get("token")
        hook = self.bank.add_hook(project["id"], url, token=str(token) if token else None, **attributes)
        return json_response(201, self.hook_entity(hook))

    def edit_hook(self, request: ApiRequest, resolution: Resolution) -> Response:
        """``PUT /projects/:id/hooks/:hook_id`` (https://docs.gitlab.com/api/project_webhooks/#edit-a-project-webhook):
        only the parameters given change; ``token`` replaces the secret token."""
        params = {**request.params, **_body_params(request)}
        attributes = _hook_attributes(params)
        hook = self._hook(resolution)
        url = params.get("url")
        if url is not None and (not isinstance(url, str) or not _valid_hook_url(url)):
            raise ApiError(422, {"error": "Invalid url given"})
        token = params.get("token")
        updated = self.bank.update_hook(
            hook["project_id"], hook["id"], url=url, token=None if token is None else str(token), **attributes
        )
        return json_response(200, self.hook_entity(updated))

    def test_hook(self, request: ApiRequest, resolution: Resolution) -> Response:
        """``POST /projects/:id/hooks/:hook_id/test/:trigger``
        (https://docs.gitlab.com/api/project_webhooks/#trigger-a-test-project-webhook): sends the sample push event
        now, even to a disabled hook; 201 when the receiver answered 2xx, 422 otherwise."""
        hook = self._hook(resolution)
        if resolution.params["trigger"] != "push_events":
            raise invalid_param("trigger", "does not have a valid value")
        project = self._project(resolution.params["id"])
        record = self.hooks.test_hook(project, hook, request.user)
        status = record.get("response_status")
        if status is not None and 200 <= status < 300:
            return json_response(201, {"message": "201 Created"})
        return json_response(422, {"message": record.get("error") or f"{status}"})

    def delete_hook(self, request: ApiRequest, resolution: Resolution) -> Response:
        hook = self._hook(resolution)
        self.bank.delete_hook(hook["project_id"], hook["id"])
        return Response(204)

    def _hook(self, resolution: Resolution) -> dict:
        project = self._project(resolution.params["id"])
        hook_id = parse_int("hook_id", resolution.params["hook_id"], 0)
        matching = [h for h in self.bank.hooks(project["id"]) if h["id"] == hook_id]
        if not matching:
            raise ApiError(404, {"message": "404 Not found"})
        return matching[0]

    # -- pagination --------------------------------------------------------------------------------

    def _page_response(
        self, request: ApiRequest, resolution: Resolution, result: PageResult, items: list, link_params: dict
    ) -> Response:
        items = self._truncated(request, resolution, items)
        headers = pagination_headers(result, self.base_url + request.path, self._link_params(link_params))
        return json_response(200, items, headers)

    def _truncated(self, request: ApiRequest, resolution: Resolution, items: list) -> list:
        """The page as a ``truncate`` fault cuts it short (fewer records than the headers promise)."""
        truncate = self.faults.take(resolution.endpoint, request.path, ("truncate",)).get("truncate")
        if truncate is None:
            return items
        keep = truncate.params.get("keep")
        return items[: max(len(items) - 1, 0) if keep is None else int(keep)]

    @staticmethod
    def _link_params(params: dict) -> dict:
        """The request's parameters as GitLab repeats them in Link URLs: never the token."""
        return {k: v for k, v in params.items() if k not in _TOKEN_PARAMS and not isinstance(v, (list, dict))}

    # -- entities ----------------------------------------------------------------------------------

    def namespace_entity(self, group: dict) -> dict:
        return {
            "id": group["id"],
            "name": group["name"],
            "path": group["path"],
            "kind": "group",
            "full_path": group["full_path"],
            "parent_id": group["parent_id"],
            "avatar_url": None,
            "web_url": f"{self.base_url}/groups/{group['full_path']}",
        }

    def group_entity(self, group: dict) -> dict:
        return {
            "id": group["id"],
            "web_url": f"{self.base_url}/groups/{group['full_path']}",
            "name": group["name"],
            "path": group["path"],
            "description": "",
            "visibility": name_of(group["visibility_level"]),
            "share_with_group_lock": False,
            "require_two_factor_authentication": False,
            "two_factor_grace_period": 48,
            "project_creation_level": "developer",
            "auto_devops_enabled": None,
            "subgroup_creation_level": "maintainer",
            "emails_disabled": False,
            "emails_enabled": True,
            "mentions_disabled": None,
            "lfs_enabled": True,
            "default_branch": None,
            "default_branch_protection": 2,
            "avatar_url": None,
            "request_access_enabled": True,
            "full_name": group["full_name"],
            "full_path": group["full_path"],
            "created_at": group["created_at"],
            "parent_id": group["parent_id"],
            "organization_id": 1,
            "shared_runners_setting": "enabled",
            "ldap_cn": None,
            "ldap_access": None,
            "wiki_access_level": "enabled",
            "shared_with_groups": [],
            "prevent_sharing_groups_outside_hierarchy": False,
        }

    def project_entity(self, project: dict, *, simple: bool = False) -> dict:
        base, full_path = self.base_url, project["path_with_namespace"]
        host = urlsplit(base).hostname or "localhost"
        web_url = f"{base}/{full_path}"
        entity = {
            "id": project["id"],
            "description": project["description"],
            "name": project["name"],
            "name_with_namespace": project["name_with_namespace"],
            "path": project["path"],
            "path_with_namespace": full_path,
            "created_at": project["created_at"],
            "default_branch": project["default_branch"],
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": f"git@{host}:{full_path}.git",
            "http_url_to_repo": f"{web_url}.git",
            "web_url": web_url,
            "readme_url": None,
            "forks_count": 0,
            "avatar_url": None,
            "star_count": 0,
            "last_activity_at": project["last_activity_at"],
            "namespace": self.namespace_entity(project["namespace"]),
        }
        if simple:
            return entity
        api_self = f"{base}{API_PREFIX}/projects/{project['id']}"
        entity.update(
            {
                "container_registry_image_prefix": f"{host}:5050/{full_path}",
                "_links": {
                    "self": api_self,
                    "issues": f"{api_self}/issues",
                    "merge_requests": f"{api_self}/merge_requests",
                    "repo_branches": f"{api_self}/repository/branches",
                    "labels": f"{api_self}/labels",
                    "events": f"{api_self}/events",
                    "members": f"{api_self}/members",
                    "cluster_agents": f"{api_self}/cluster_agents",
                },
                "packages_enabled": True,
                "empty_repo": project["empty_repo"],
                "archived": project["archived"],
                "visibility": name_of(project["visibility_level"]),
                "resolve_outdated_diff_discussions": False,
                "repository_object_format": "sha1",
                "issues_enabled": True,
                "merge_requests_enabled": True,
                "wiki_enabled": True,
                "jobs_enabled": True,
                "snippets_enabled": True,
                "container_registry_enabled": True,
                "service_desk_enabled": False,
                "can_create_merge_request_in": True,
                "issues_access_level": "enabled",
                "repository_access_level": "enabled",
                "merge_requests_access_level": "enabled",
                "forking_access_level": "enabled",
                "wiki_access_level": "enabled",
                "builds_access_level": "enabled",
                "snippets_access_level": "enabled",
                "pages_access_level": "private",
                "shared_runners_enabled": True,
                "lfs_enabled": True,
                "creator_id": 1,
                "import_status": "none",
                "open_issues_count": 0,
                "updated_at": project["updated_at"],
                "ci_default_git_depth": 20,
                "public_jobs": True,
                "shared_with_groups": [],
                "only_allow_merge_if_pipeline_succeeds": False,
                "request_access_enabled": True,
                "merge_method": "merge",
                "squash_option": "default_off",
            }
        )
        return entity

    def hook_entity(self, hook: dict) -> dict:
        """GitLab's ``ProjectHook`` entity, with the hook's auto-disabling state."""
        alert_status, disabled_until = self.hooks.hook_status(hook)
        entity = {"id": hook["id"], "url": hook["url"], "project_id": hook["project_id"]}
        entity.update({name: hook.get(name, default) for name, default in HOOK_DEFAULTS.items()})
        entity.update(
            {
                "alert_status": alert_status,
                "disabled_until": disabled_until,
                "url_variables": [],
                "custom_webhook_template": None,
                "custom_headers": [],
                "created_at": hook["created_at"],
            }
        )
        return entity


def _access_entity(membership: dict | None) -> dict | None:
    """``Entities::ProjectAccess``/``GroupAccess``; ``notification_level`` 3 is the default ``global`` setting."""
    if membership is None:
        return None
    return {"access_level": membership["access_level"], "notification_level": 3}


def _page_params(params: Mapping[str, str]) -> tuple[int, int]:
    page = parse_int("page", params.get("page"), 1)
    per_page = parse_int("per_page", params.get("per_page"), DEFAULT_PER_PAGE)
    return clamp_page(page, per_page)


def _hook_attributes(params: Mapping) -> dict[str, object]:
    attributes: dict[str, object] = {}
    for name in _HOOK_BOOLEANS:
        value = parse_bool(name, params.get(name))
        if value is not None:
            attributes[name] = value
    for name in _HOOK_STRINGS:
        if params.get(name) is not None:
            attributes[name] = str(params[name])
    return attributes


def _valid_hook_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
