"""Who may call which REST route, the current-user route and the group members API.

Authorisation follows GitLab's permissions (https://docs.gitlab.com/user/permissions/): a group and its projects
are visible to its members and the members of its ancestor groups (any role) and to administrators; to anyone
else they do not exist, so the API answers GitLab's 404 bodies (``find_group!``/``find_project!``:
``{"message":"404 Group Not Found"}``, ``{"message":"404 Project Not Found"}``). Project hooks need the
Maintainer role (https://docs.gitlab.com/api/project_webhooks/), adding and removing group members the Owner role
(``admin_group_member`` in GroupPolicy; https://docs.gitlab.com/api/members/); below that GitLab answers
``403 {"message":"403 Forbidden"}``. A route without a rule here is for administrators only.

The group members API (https://docs.gitlab.com/api/members/) is also how tests and operators take a user out of a
group and put it back: ``DELETE /groups/:id/members/:user_id`` makes the group, its subgroups and their projects
404 for that user over REST and git; ``POST /groups/:id/members`` restores access.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import api
from .pagination import paginate
from .responses import ApiError, Response, json_response, not_found_message
from .users import GUEST, MAINTAINER, OWNER, ROLES, MemberExistsError

FORBIDDEN = ApiError(403, {"message": "403 Forbidden"})
_VALID_ACCESS_LEVELS = set(ROLES.values())


@dataclass(frozen=True)
class Rule:
    """The ``:id`` path parameter names a ``resource`` ("group", "project" or None) the user needs ``level`` on."""

    resource: str | None
    level: int = GUEST


RULES: dict[str, Rule] = {
    "current_user": Rule(None),
    "show_group": Rule("group"),
    "list_group_projects": Rule("group"),
    "list_group_members": Rule("group"),
    "add_group_member": Rule("group", OWNER),
    "remove_group_member": Rule("group", OWNER),
    "show_project": Rule("project"),
    "list_hooks": Rule("project", MAINTAINER),
    "create_hook": Rule("project", MAINTAINER),
    "show_hook": Rule("project", MAINTAINER),
    "edit_hook": Rule("project", MAINTAINER),
    "delete_hook": Rule("project", MAINTAINER),
    "test_hook": Rule("project", MAINTAINER),
    # https://docs.gitlab.com/user/permissions/#project-members-permissions and ProjectPolicy:
    "create_project": Rule(None),  # the route checks Developer in the target namespace
    "update_project": Rule("project", MAINTAINER),
    "archive_project": Rule("project", OWNER),
    "unarchive_project": Rule("project", OWNER),
    "transfer_project": Rule("project", OWNER),  # and Maintainer of the target group, checked by the route
    "delete_project": Rule("project", OWNER),
}


class AccessControlledApi(api.RestApi):
    """The REST API answering each request as its authenticated user (``request.user``) may see it."""

    def handle(self, resolution: api.Resolution, request: api.ApiRequest) -> Response:
        assert resolution.route is not None and request.user is not None
        try:
            self.authorize(resolution.route.handler, resolution.params, request.user)
        except ApiError as error:
            return error.response
        return super().handle(resolution, request)

    def authorize(self, handler: str, params: dict[str, str], user: dict) -> None:
        """Raise GitLab's 404 for what the user cannot see, 403 for what its role does not allow."""
        rule = RULES.get(handler)
        if rule is None:
            if not user["admin"]:
                raise FORBIDDEN
            return
        if rule.resource is None:
            return
        if rule.resource == "group":
            group = self.bank.find_group(params["id"])
            if group is None:
                return  # the handler answers 404 Group Not Found
            group_id, what = group["id"], "Group"
        else:
            project = self.bank.find_project(params["id"])
            if project is None:
                return  # the handler answers 404 Project Not Found
            group_id, what = project["namespace"]["id"], "Project"
        level = self.bank.access_level(user, group_id)
        if level < GUEST:
            raise not_found_message(what)
        if level < rule.level:
            raise FORBIDDEN

    # -- current user --------------------------------------------------------------------------------

    def current_user(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        """``GET /user`` (https://docs.gitlab.com/api/users/#get-the-current-user)."""
        return json_response(200, self.current_user_entity(request.user))  # type: ignore[arg-type]

    # -- group members -------------------------------------------------------------------------------

    def list_group_members(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        page, per_page = api._page_params(request.params)
        group = self._group(resolution.params["id"])
        members = self.bank.members(group["id"])
        result = paginate(
            lambda offset, limit: members[offset : offset + limit], lambda cap: min(len(members), cap), page, per_page
        )
        items = [self.member_entity(m) for m in result.items]
        link_params = {**request.params, "id": resolution.params["id"]}
        return self._page_response(request, resolution, result, items, link_params)

    def add_group_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        params = {**request.params, **api._body_params(request)}
        missing = [name for name in ("access_level", "user_id") if params.get(name) in (None, "")]
        if missing:
            raise ApiError(400, {"error": ", ".join(f"{name} is missing" for name in missing)})
        access_level = api.parse_int("access_level", params["access_level"], 0)
        user_id = api.parse_int("user_id", params["user_id"], 0)
        group = self._group(resolution.params["id"])
        if self.bank.member(group["id"], user_id) is not None:
            raise ApiError(409, {"message": "Member already exists"})
        if self.bank.find_user(user_id) is None:
            raise not_found_message("User")
        if access_level not in _VALID_ACCESS_LEVELS:
            raise ApiError(400, {"message": {"access_level": ["is not included in the list"]}})
        try:
            member = self.bank.add_member(group["id"], user_id, access_level)
        except MemberExistsError:
            raise ApiError(409, {"message": "Member already exists"}) from None
        return json_response(201, self.member_entity(member))

    def remove_group_member(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        group = self._group(resolution.params["id"])
        user_id = api.parse_int("user_id", resolution.params["user_id"], 0)
        if not self.bank.remove_member(group["id"], user_id):
            raise ApiError(404, {"message": "404 Not found"})
        return Response(204)

    # -- entities ------------------------------------------------------------------------------------

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

    def current_user_entity(self, user: dict) -> dict:
        """``API::Entities::UserPublic`` (plus ``is_admin`` for administrators, ``UserWithAdmin``)."""
        entity = {
            **self.user_basic_entity(user),
            "created_at": user["created_at"],
            "bio": "",
            "location": "",
            "skype": "",
            "linkedin": "",
            "twitter": "",
            "discord": "",
            "website_url": "",
            "organization": "",
            "job_title": "",
            "pronouns": None,
            "bot": False,
            "work_information": None,
            "followers": 0,
            "following": 0,
            "local_time": None,
            "last_sign_in_at": None,
            "confirmed_at": user["created_at"],
            "last_activity_on": None,
            "email": user["email"],
            "theme_id": 3,
            "color_scheme_id": 1,
            "projects_limit": 100000,
            "current_sign_in_at": None,
            "identities": [],
            "can_create_group": True,
            "can_create_project": True,
            "two_factor_enabled": False,
            "external": False,
            "private_profile": False,
            "commit_email": user["email"],
        }
        if user["admin"]:
            entity["is_admin"] = True
        return entity
