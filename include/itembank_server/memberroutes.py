"""The group and project members API (https://docs.gitlab.com/api/members/), as ``lib/api/members.rb`` answers it.

Direct members: ``GET``/``POST /groups|projects/:id/members``, ``GET``/``DELETE .../members/:user_id``. Members
including inherited ones (https://docs.gitlab.com/api/members/#list-all-members-of-a-group-or-project-including-
inherited-and-invited-members): ``GET .../members/all`` and ``GET .../members/all/:user_id``, per user the highest
membership; a user without one is ``find_by!``'s 404 ``{"message": "404 Not found"}`` (``rescue_from
ActiveRecord::RecordNotFound`` in lib/api/api.rb).

Who may call each route is in :data:`itembank_server.access.RULES`. Adding a member checks, in ``add_single_member``'s
order: the user exists (404 User Not Found), is not already a direct member (409), the level is one of GitLab's, a
Maintainer does not make a project Owner (``Members::Projects::CreatorService``: only ``manage_owners``, i.e. Owners,
may; 403), and the model's ``higher_access_level_than_group`` validation: a membership below the user's inherited one
is 400 ``{"message": {"access_level": ["should be greater than or equal to <Role> inherited membership from group
<name>"]}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import api
from .pagination import paginate
from .responses import ApiError, Response, json_response, not_found_message
from .users import OWNER, ROLES, MemberExistsError

if TYPE_CHECKING:
    from .bank_store import ItemBank
    from .pagination import PageResult

FORBIDDEN = ApiError(403, {"message": "403 Forbidden"})
NOT_FOUND = ApiError(404, {"message": "404 Not found"})
_VALID_ACCESS_LEVELS = set(ROLES.values())
_ROLE_NAMES = {level: name.capitalize() for name, level in ROLES.items()}  # Gitlab::Access.human_access


class MemberRoutes:
    """Mixed into ``AccessControlledApi``, whose ``RestApi`` provides these:"""

    bank: ItemBank
    base_url: str
    _group: Callable[[str], dict]
    _project: Callable[[str], dict]
    _page_response: Callable[[api.ApiRequest, api.Resolution, PageResult, list, dict], Response]

    # -- groups ------------------------------------------------------------------------------------

    def list_group_members(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        group = self._group(resolution.params["id"])
        return self._members_page(request, resolution, self.bank.members(group["id"]))

    def list_all_group_members(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        group = self._group(resolution.params["id"])
        return self._members_page(request, resolution, self.bank.all_group_members(group))

    def show_group_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        group = self._group(resolution.params["id"])
        return self._one_member(resolution, lambda user_id: self.bank.member(group["id"], user_id))

    def show_all_group_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        group = self._group(resolution.params["id"])
        members = self.bank.all_group_members(group)
        return self._one_member(resolution, lambda user_id: _find_member(members, user_id))

    def add_group_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        group = self._group(resolution.params["id"])
        user_id, access_level = self._new_member_params(request, lambda uid: self.bank.member(group["id"], uid))
        self._check_inherited_level(group["id"], user_id, access_level, include_group=False)
        return self._created_member(lambda: self.bank.add_member(group["id"], user_id, access_level))

    def remove_group_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        group = self._group(resolution.params["id"])
        user_id = api.parse_int("user_id", resolution.params["user_id"], 0)
        if not self.bank.remove_member(group["id"], user_id):
            raise NOT_FOUND
        return Response(204)

    # -- projects ----------------------------------------------------------------------------------

    def list_project_members(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        project = self._project(resolution.params["id"])
        return self._members_page(request, resolution, self.bank.project_members(project))

    def list_all_project_members(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        project = self._project(resolution.params["id"])
        return self._members_page(request, resolution, self.bank.all_project_members(project))

    def show_project_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        project = self._project(resolution.params["id"])
        return self._one_member(resolution, lambda user_id: self.bank.project_member(project, user_id))

    def show_all_project_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        project = self._project(resolution.params["id"])
        members = self.bank.all_project_members(project)
        return self._one_member(resolution, lambda user_id: _find_member(members, user_id))

    def add_project_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        """``POST /projects/:id/members``: Maintainer (``admin_project_member``); only Owners add Owners."""
        project = self._project(resolution.params["id"])
        user_id, access_level = self._new_member_params(request, lambda uid: self.bank.project_member(project, uid))
        if access_level == OWNER and self.bank.project_access_level(request.user, project) < OWNER:
            raise FORBIDDEN
        self._check_inherited_level(project["namespace"]["id"], user_id, access_level, include_group=True)
        return self._created_member(lambda: self.bank.add_project_member(project, user_id, access_level))

    def remove_project_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        """``DELETE /projects/:id/members/:user_id``: Maintainer; only Owners remove an Owner (403)."""
        project = self._project(resolution.params["id"])
        user_id = api.parse_int("user_id", resolution.params["user_id"], 0)
        member = self.bank.project_member(project, user_id)
        if member is None:
            raise NOT_FOUND
        if member["access_level"] == OWNER and self.bank.project_access_level(request.user, project) < OWNER:
            raise FORBIDDEN
        self.bank.remove_project_member(project, user_id)
        return Response(204)

    # -- shared steps ------------------------------------------------------------------------------

    def _new_member_params(self, request: api.ApiRequest, existing: Callable[[int], dict | None]) -> tuple[int, int]:
        params = {**request.params, **api._body_params(request)}
        missing = [name for name in ("access_level", "user_id") if params.get(name) in (None, "")]
        if missing:
            raise ApiError(400, {"error": ", ".join(f"{name} is missing" for name in missing)})
        access_level = api.parse_int("access_level", params["access_level"], 0)
        user_id = api.parse_int("user_id", params["user_id"], 0)
        if self.bank.find_user(user_id) is None:
            raise not_found_message("User")
        if existing(user_id) is not None:
            raise ApiError(409, {"message": "Member already exists"})
        if access_level not in _VALID_ACCESS_LEVELS:
            raise ApiError(400, {"message": {"access_level": ["is not included in the list"]}})
        return user_id, access_level

    def _check_inherited_level(self, group_id: int, user_id: int, access_level: int, *, include_group: bool) -> None:
        """``Member#higher_access_level_than_group``."""
        inherited = self.bank.highest_inherited_membership(group_id, user_id, include_group=include_group)
        if inherited is not None and inherited["access_level"] > access_level:
            role, group_name = _ROLE_NAMES[inherited["access_level"]], inherited["group_name"]
            problem = f"should be greater than or equal to {role} inherited membership from group {group_name}"
            raise ApiError(400, {"message": {"access_level": [problem]}})

    def _created_member(self, add: Callable[[], dict]) -> Response:
        try:
            member = add()
        except MemberExistsError:
            raise ApiError(409, {"message": "Member already exists"}) from None
        return json_response(201, self.member_entity(member))

    def _one_member(self, resolution: api.Resolution, find: Callable[[int], dict | None]) -> Response:
        member = find(api.parse_int("user_id", resolution.params["user_id"], 0))
        if member is None:
            raise NOT_FOUND
        return json_response(200, self.member_entity(member))

    def _members_page(self, request: api.ApiRequest, resolution: api.Resolution, members: list[dict]) -> Response:
        page, per_page = api._page_params(request.params)
        result = paginate(
            lambda offset, limit: members[offset : offset + limit], lambda cap: min(len(members), cap), page, per_page
        )
        items = [self.member_entity(m) for m in result.items]
        link_params = {**request.params, "id": resolution.params["id"]}
        return self._page_response(request, resolution, result, items, link_params)

    # -- entities ----------------------------------------------------------------------------------

    def user_basic_entity(self, user: dict) -> dict:
        return {
            "id": user["id"],
            "username": user["username"],
            "public_email": None,
            "name": user["name"],
            "state": "active",
            "locked": False,
            "avatar_url": None,
            "web_url": f"{self.base_url}/{user['username']}",
        }

    def member_entity(self, member: dict) -> dict:
        """``API::Entities::Member``: the user's basic fields and the membership."""
        return {
            **self.user_basic_entity(member),
            "access_level": member["access_level"],
            "created_at": member["member_since"],
            "expires_at": None,
            "membership_state": "active",
        }


def _find_member(members: list[dict], user_id: int) -> dict | None:
    return next((member for member in members if member["id"] == user_id), None)
