"""Who may call which REST route, and the current-user route.

Authorisation follows GitLab's permissions (https://docs.gitlab.com/user/permissions/) and visibility levels
(https://docs.gitlab.com/user/public_access/, :mod:`itembank_server.visibility`): a group or project the user may not
see does not exist for it, so the API answers GitLab's 404 bodies (``find_group!``/``find_project!``:
``{"message":"404 Group Not Found"}``, ``{"message":"404 Project Not Found"}``). A user's role on a project is the
highest of its project membership and its memberships of the project's group and that group's ancestors
(:meth:`~itembank_server.projectmembers.ProjectMemberStore.project_access_level`). Project hooks need the Maintainer
role (https://docs.gitlab.com/api/project_webhooks/), adding and removing group members and changing a group the
Owner role (``admin_group_member``, ``admin_group`` in GroupPolicy), adding and removing project members the
Maintainer role (``admin_project_member`` in ProjectPolicy; https://docs.gitlab.com/api/members/); below that GitLab
answers ``403 {"message":"403 Forbidden"}``. A route without a rule here is for administrators only.

The members API (:mod:`itembank_server.memberroutes`) is also how tests and operators take a user out of a group and
put it back: ``DELETE /groups/:id/members/:user_id`` makes the group, its subgroups and their private projects 404
for that user over REST and git; ``POST /groups/:id/members`` restores access.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import api
from .memberroutes import FORBIDDEN, MemberRoutes
from .responses import Response, json_response, not_found_message
from .users import MAINTAINER, OWNER


@dataclass(frozen=True)
class Rule:
    """The ``:id`` path parameter names a ``resource`` ("group", "project" or None) the user must be able to see
    (``read_group``/``read_project``) and, when ``level`` is set, have that role on; ``members``: the route reads the
    group's members (``read_group_member``)."""

    resource: str | None
    level: int | None = None
    members: bool = False


RULES: dict[str, Rule] = {
    "current_user": Rule(None),
    "show_group": Rule("group"),
    "update_group": Rule("group", OWNER),  # admin_group; changing visibility: change_visibility_level (Owner too)
    "list_group_projects": Rule("group"),
    "list_group_members": Rule("group", members=True),
    "list_all_group_members": Rule("group", members=True),
    "show_group_member": Rule("group", members=True),
    "show_all_group_member": Rule("group", members=True),
    "add_group_member": Rule("group", OWNER),
    "remove_group_member": Rule("group", OWNER),
    "show_project": Rule("project"),
    # read_project_member comes with read_project (ProjectPolicy: guest_access and public_access both enable it)
    "list_project_members": Rule("project"),
    "list_all_project_members": Rule("project"),
    "show_project_member": Rule("project"),
    "show_all_project_member": Rule("project"),
    "add_project_member": Rule("project", MAINTAINER),
    "remove_project_member": Rule("project", MAINTAINER),
    "list_hooks": Rule("project", MAINTAINER),
    "create_hook": Rule("project", MAINTAINER),
    "show_hook": Rule("project", MAINTAINER),
    "edit_hook": Rule("project", MAINTAINER),
    "delete_hook": Rule("project", MAINTAINER),
    "test_hook": Rule("project", MAINTAINER),
    # https://docs.gitlab.com/user/permissions/#project-members-permissions and ProjectPolicy:
    "create_project": Rule(None),  # the route checks Developer in the target namespace
    "update_project": Rule("project", MAINTAINER),  # and Owner to change the visibility, checked by the route
    "archive_project": Rule("project", OWNER),
    "unarchive_project": Rule("project", OWNER),
    "transfer_project": Rule("project", OWNER),  # and Maintainer of the target group, checked by the route
    "delete_project": Rule("project", OWNER),
}


class AccessControlledApi(MemberRoutes, api.RestApi):
    """The REST API answering each request as its authenticated user (``request.user``) may see it."""

    def handle(self, resolution: api.Resolution, request: api.ApiRequest) -> Response:
        assert resolution.route is not None and request.user is not None
        try:
            self.authorize(resolution.route.handler, resolution.params, request.user)
        except api.ApiError as error:
            return error.response
        return super().handle(resolution, request)

    def authorize(self, handler: str, params: dict[str, str], user: dict) -> None:
        """Raise GitLab's 404 for what the user cannot see, 403 for what its role does not allow."""
        rule = RULES.get(handler)
        if rule is None:
            if not user["admin"]:
                raise FORBIDDEN
            return
        if rule.resource == "group":
            self._authorize_group(rule, params["id"], user)
        elif rule.resource == "project":
            self._authorize_project(rule, params["id"], user)

    def _authorize_group(self, rule: Rule, ref: str, user: dict) -> None:
        group = self.bank.find_group(ref)
        if group is None:
            return  # the handler answers 404 Group Not Found
        if not self.bank.can_read_group(user, group):
            raise not_found_message("Group")
        if rule.members and not self.bank.can_read_group_members(user, group):
            raise FORBIDDEN
        if rule.level is not None and self.bank.access_level(user, group["id"]) < rule.level:
            raise FORBIDDEN

    def _authorize_project(self, rule: Rule, ref: str, user: dict) -> None:
        project = self.bank.find_project(ref)
        if project is None:
            return  # the handler answers 404 Project Not Found
        level = self.bank.project_access_level(user, project)
        if not self.bank.can_read_project(user, project, level):
            raise not_found_message("Project")
        if rule.level is not None and level < rule.level:
            raise FORBIDDEN

    # -- current user --------------------------------------------------------------------------------

    def current_user(self, request: api.ApiRequest, resolution: api.Resolution) -> Response:
        """``GET /user`` (https://docs.gitlab.com/api/users/#get-the-current-user)."""
        return json_response(200, self.current_user_entity(request.user))  # type: ignore[arg-type]

    # -- entities ----------------------------------------------------------------------------------

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
