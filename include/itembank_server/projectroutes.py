"""REST routes that change projects: create, update (rename), transfer, archive, unarchive and delete.

Each answers as ``lib/api/projects.rb`` does (https://docs.gitlab.com/api/projects/), checks the acting user's role
as ``app/policies/project_policy.rb`` grants it, and fires the system hook GitLab fires for the change
(https://docs.gitlab.com/administration/system_hooks/) through ``WebhookDispatcher.project_event``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .bankrules import PATH_FORMAT_MESSAGE, ProjectExistsError, valid_segment
from .requestparams import body_params, parse_optional_int
from .responses import ApiError, Response, invalid_param, json_response, not_found_message
from .users import DEVELOPER, MAINTAINER, OWNER
from .visibility import LEVELS, name_of

TAKEN = "has already been taken"


def path_from_name(name: str) -> str:
    """The path GitLab derives from a name when none is given (``parameterize``: lower case, dashes)."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9_\-]+", "-", name.lower())).strip("-")


def validation_error(errors: Mapping[str, list[str]]) -> ApiError:
    """``render_validation_error!``: 400 ``{"message": {"<attribute>": ["<problem>", ...]}}``."""
    return ApiError(400, {"message": dict(errors)})


def visibility_param(params: Mapping) -> str | None:
    """The ``visibility`` parameter (Grape's ``values: Gitlab::VisibilityLevel.string_values``), None if absent."""
    value = params.get("visibility")
    if value is None or value == "":
        return None
    if value not in LEVELS:
        raise invalid_param("visibility", "does not have a valid value")
    return str(value)


def transfer_error(problem: str) -> ApiError:
    """``render_api_error!("Failed to transfer project #{errors.messages}", 400)`` (Ruby's Hash#inspect)."""
    return ApiError(400, {"message": f'Failed to transfer project {{:new_namespace=>["{problem}"]}}'})


class ProjectRoutes:
    """Mixed into ``RestApi`` (which provides ``bank``, ``hooks``, ``project_entity`` and ``_project``).

    Who may call each route on the project is in :data:`itembank_server.access.RULES`; the routes check only what
    depends on their parameters (the role in the target namespace of a create or a transfer).
    """

    # -- routes ------------------------------------------------------------------------------------

    def create_project(self, request, resolution) -> Response:
        """``POST /projects`` (https://docs.gitlab.com/api/projects/#create-a-project): 201 and an empty repository.

        ``name`` or ``path`` is required (the other is derived). Without personal namespaces here, ``namespace_id``
        must name a group where the user may create projects (Developer, the group's ``project_creation_level``);
        otherwise GitLab's ``CreateService`` answer: 400 ``{"message": {"namespace": ["is not valid"]}}``.
        ``visibility`` (default ``private``, the default ``default_project_visibility``) above the group's is lowered
        to the group's, as ``Projects::CreateService`` does (https://docs.gitlab.com/user/public_access/).
        """
        params = {**request.params, **body_params(request)}
        name, path = params.get("name") or None, params.get("path") or None
        if name is None and path is None:
            raise ApiError(400, {"error": "name, path are missing, at least one parameter must be provided"})
        visibility = visibility_param(params) or "private"
        namespace_id = parse_optional_int("namespace_id", params.get("namespace_id"))
        group = self.bank.find_group(namespace_id) if namespace_id is not None else None
        if group is None or self.bank.access_level(request.user, group["id"]) < DEVELOPER:
            raise validation_error({"namespace": ["is not valid"]})
        name = str(name or path)
        path = str(path or path_from_name(name))
        self._check_name_and_path(group["id"], name, path)
        try:
            project = self.bank.create_project(
                group,
                path,
                name=name,
                default_branch=str(params.get("default_branch") or "main"),
                visibility=visibility,
            )
        except ProjectExistsError:
            raise validation_error({"path": [TAKEN]}) from None
        self.hooks.project_event("project_create", project, request.user)
        return json_response(201, self.project_entity(project))

    def update_project(self, request, resolution) -> Response:
        """``PUT /projects/:id`` (https://docs.gitlab.com/api/projects/#edit-a-project) with ``name``/``path``
        and ``visibility``.

        Maintainer or above (``admin_project``, ``rename_project``); changing the visibility needs Owner
        (``change_visibility_level``, else 403). A new path moves the repository, so the old path is a 404 over the
        API and git afterwards, and fires ``project_rename`` with the old full path. A visibility above the group's
        is refused with the model's message (``visibility_level_allowed_by_group``), e.g. 400 ``{"message":
        {"visibility_level": ["public is not allowed in a private group."]}}``, and nothing changes.
        """
        project = self._project(resolution.params["id"])
        params = {**request.params, **body_params(request)}
        name, path = params.get("name") or None, params.get("path") or None
        visibility = visibility_param(params)
        if name is None and path is None and visibility is None:
            raise ApiError(400, {"error": "name, path are missing, at least one parameter must be provided"})
        if visibility is not None and self.bank.project_access_level(request.user, project) < OWNER:
            raise ApiError(403, {"message": "403 Forbidden"})
        name, path = (None if value is None else str(value) for value in (name, path))
        self._check_update(project, name, path, visibility)
        updated = project
        if name is not None or path is not None:
            try:
                updated = self.bank.rename_project(project["id"], name=name, path=path)
            except ProjectExistsError:
                raise validation_error({"path": [TAKEN]}) from None
        if visibility is not None:
            updated = self.bank.set_project_visibility(project["id"], visibility)
        if updated["path_with_namespace"] != project["path_with_namespace"]:
            self.hooks.project_event(
                "project_rename", updated, request.user, old_path_with_namespace=project["path_with_namespace"]
            )
        return json_response(200, self.project_entity(updated))

    def transfer_project(self, request, resolution) -> Response:
        """``PUT /projects/:id/transfer`` (https://docs.gitlab.com/api/projects/#transfer-a-project-to-a-new-namespace).

        ``namespace`` is the group's id or full path (404 Namespace Not Found otherwise). Owner only
        (``change_namespace``); the user must be Maintainer of the target group. Fires ``project_transfer``.
        """
        project = self._project(resolution.params["id"])
        ref = {**request.params, **body_params(request)}.get("namespace")
        if ref is None or ref == "":
            raise ApiError(400, {"error": "namespace is missing"})
        target = self.bank.find_group(str(ref))
        if target is None:
            raise not_found_message("Namespace")
        if target["id"] == project["namespace"]["id"]:
            raise transfer_error("Project is already in this namespace.")
        if self.bank.access_level(request.user, target["id"]) < MAINTAINER:
            raise transfer_error("You don't have permission to transfer projects into that namespace.")
        try:
            moved = self.bank.transfer_project(project["id"], target)
        except ProjectExistsError:
            raise transfer_error("Project with same name or path in target namespace already exists") from None
        self.hooks.project_event(
            "project_transfer", moved, request.user, old_path_with_namespace=project["path_with_namespace"]
        )
        return json_response(200, self.project_entity(moved))

    def archive_project(self, request, resolution) -> Response:
        """``POST /projects/:id/archive`` (https://docs.gitlab.com/api/projects/#archive-a-project): 201, Owner."""
        return self._set_archived(request, resolution, True)

    def unarchive_project(self, request, resolution) -> Response:
        """``POST /projects/:id/unarchive`` (https://docs.gitlab.com/api/projects/#unarchive-a-project): 201, Owner."""
        return self._set_archived(request, resolution, False)

    def _set_archived(self, request, resolution, archived: bool) -> Response:
        project = self._project(resolution.params["id"])
        return json_response(201, self.project_entity(self.bank.set_archived(project["id"], archived)))

    def delete_project(self, request, resolution) -> Response:
        """``DELETE /projects/:id`` (https://docs.gitlab.com/api/projects/#delete-a-project): 202 ``202 Accepted``.

        Owner only (``remove_project``, else 403). Removed at once, as GitLab Free does (``delete_project`` runs
        ``Projects::DestroyService``; delayed deletion is EE's ``adjourned_deletion?``). Fires ``project_destroy``
        with the project as it was.
        """
        project = self._project(resolution.params["id"])
        self.bank.delete_project(project["id"])
        self.hooks.project_event("project_destroy", project, request.user)
        return json_response(202, {"message": "202 Accepted"})

    def _check_update(self, project: dict, name: str | None, path: str | None, visibility: str | None) -> None:
        """Every model validation of an update at once, as ``render_validation_error!`` lists them."""
        errors = self._name_and_path_errors(project["namespace"]["id"], name, path, excluding=project["id"])
        group_level = project["namespace"]["visibility_level"]
        if visibility is not None and LEVELS[visibility] > group_level:
            errors["visibility_level"] = [f"{visibility} is not allowed in a {name_of(group_level)} group."]
        if errors:
            raise validation_error(errors)

    def _check_name_and_path(
        self, group_id: int, name: str | None, path: str | None, *, excluding: int | None = None
    ) -> None:
        """The model validations GitLab answers 400 for: path format, name and path unique in the namespace."""
        errors = self._name_and_path_errors(group_id, name, path, excluding=excluding)
        if errors:
            raise validation_error(errors)

    def _name_and_path_errors(
        self, group_id: int, name: str | None, path: str | None, *, excluding: int | None = None
    ) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if path is not None and not valid_segment(path):
            errors["path"] = [PATH_FORMAT_MESSAGE]
        for field in self.bank.taken_fields(group_id, name=name, path=path, excluding=excluding):
            errors.setdefault(field, []).append(TAKEN)
        return {key: errors[key] for key in ("name", "path") if key in errors}
