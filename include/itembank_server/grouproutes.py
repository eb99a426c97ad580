"""REST routes that change groups: ``PUT /groups/:id`` (https://docs.gitlab.com/api/groups/#update-group-attributes).

Of the attributes GitLab's route changes, the item bank server models ``visibility``
(https://docs.gitlab.com/user/public_access/#change-group-visibility); the others (``name``, ``path``,
``description``, ...) are not modelled and stay as they are.
"""

from __future__ import annotations

from .projectroutes import validation_error, visibility_param
from .requestparams import body_params
from .responses import Response, json_response
from .visibility import VisibilityError


class GroupRoutes:
    """Mixed into ``RestApi`` (which provides ``bank``, ``_group`` and ``group_details``)."""

    def update_group(self, request, resolution) -> Response:
        """``PUT /groups/:id``: Owner (``admin_group``; ``change_visibility_level``). A level the group's projects,
        subgroups or parent do not allow is ``render_validation_error!``'s 400 with GitLab's messages, e.g.
        ``{"message": {"visibility_level": ["private is not allowed since there are sub-groups with higher
        visibility."]}}``. Answers ``Entities::GroupDetail`` as ``GET /groups/:id`` does.
        """
        visibility = visibility_param({**request.params, **body_params(request)})
        group = self._group(resolution.params["id"])
        if visibility is not None:
            try:
                group = self.bank.set_group_visibility(group, visibility)
            except VisibilityError as error:
                raise validation_error({"visibility_level": error.messages}) from None
        return json_response(200, self.group_details(group, request.user))
