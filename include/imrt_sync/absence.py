"""When GitLab's answers prove that a project left the item bank, and when they do not.

GitLab answers ``404 Project Not Found`` both for a project that does not exist and for one the token's user may not
see (https://docs.gitlab.com/api/rest/troubleshooting/#status-codes). Who may see what depends on visibility
(https://docs.gitlab.com/user/public_access/): an internal group stays visible to every signed-in user and a
public one to everyone, while its private projects answer 404 and drop out of the listings for a user who is not a
member; a private group is shown to a user who is a member of only one of its projects. So neither a readable group
nor a listing proves that a 404 means "gone". What does: the token's user is an administrator, or a member of the
group with at least the Reporter role (membership is inherited by every subgroup and project below the group,
https://docs.gitlab.com/user/project/members/#membership-types, and a Reporter may read every project's
repository, https://docs.gitlab.com/user/permissions/).

A project is confirmed gone when ``GET /projects/:id`` answers 404, that access is proven, and GitLab's listing of
the scope does not show it (a project listed yet answering 404 is GitLab contradicting itself: nothing is deleted).
In a run that listed the whole item bank, the candidate was missing from that complete listing (and a project listed
there that answered 404 when read is not a candidate that run); a targeted run lists the scope after the 404. A
project that answers 200 from a namespace outside the scope was transferred out: GitLab states it, no access proof
is needed.
"""

from __future__ import annotations

import logging

from .errors import PermanentError
from .gitlab import GitLabClient, GitLabError
from .scope import GroupScope

log = logging.getLogger(__name__)

REPORTER = 20  # Gitlab::Access::REPORTER, https://docs.gitlab.com/api/members/#roles


class AbsenceNotProven(GitLabError, PermanentError):
    """GitLab's answers do not prove that the project is gone: its item must not be deleted. Permanent for this
    run: trying again in a moment gets the same answers."""


class AccessNotProven(AbsenceNotProven):
    """The token's user is not shown to see every project of the group, so a 404 may be lost access."""

    def __init__(self, scope: GroupScope, why: str):
        super().__init__(
            f"GitLab does not show that the sync user can see every project of group {scope.group} ({why}); a user "
            "who lost membership gets the same 404 for a live project (lost access?)"
        )


class ListedButNotFound(AbsenceNotProven):
    """The scope's listing shows the project that ``GET /projects/:id`` answers 404 for."""

    def __init__(self, project_id: int, scope: GroupScope):
        super().__init__(
            f"GitLab lists project {project_id} in the {scope.describe()} but answers 404 for it by id: "
            "contradictory answers"
        )


class AbsenceWitness:
    """Asks GitLab whether projects left the scope; the access proof and the listing are taken at most once each
    (one witness serves one step of a run). ``relist``: the run did not list the whole scope (a targeted run), so a
    404 is checked against a listing taken now."""

    def __init__(self, gitlab: GitLabClient, scope: GroupScope, *, relist: bool):
        self._gitlab = gitlab
        self._scope = scope
        self._relist = relist
        self._access: str | None = None
        self._listed: frozenset[int] | None = None

    def proven_access(self) -> str:
        """Why the token's user sees every project of the group; :class:`AccessNotProven` otherwise."""
        if self._access is None:
            self._access = prove_full_access(self._gitlab, self._scope)
        return self._access

    def why_gone(self, project_id: int) -> str | None:
        """Why the project's item may be deleted, or None when the project is in the scope.
        :class:`AbsenceNotProven` when GitLab's answers do not settle it."""
        project = self._gitlab.project(project_id)
        if project is not None:
            namespace = (project.get("namespace") or {}).get("full_path")
            if self._scope.contains(namespace):
                return None
            return f"the project was transferred out of the {self._scope.describe()} (it is now in {namespace})"
        access = self.proven_access()
        if self._relist and project_id in self._listed_ids():
            raise ListedButNotFound(project_id, self._scope)
        return f"GitLab answers 404 Project Not Found, does not list it, and {access}"

    def _listed_ids(self) -> frozenset[int]:
        if self._listed is None:
            self._listed = frozenset(project["id"] for project in self._gitlab.group_projects(self._scope))
        return self._listed


def prove_full_access(gitlab: GitLabClient, scope: GroupScope) -> str:
    """Why the token's user can see every project of the scope (an administrator, or a member of the group with
    Reporter or above); :class:`AccessNotProven` naming what GitLab answered otherwise."""
    user = gitlab.current_user()
    name = user.get("username") or f"user {user.get('id')}"
    if user.get("is_admin") is True:
        return f"{name} is a GitLab administrator"
    member = gitlab.group_member(scope.group, user["id"])
    if member is None:
        raise AccessNotProven(scope, f"{name} is not a member of group {scope.group}")
    level = member.get("access_level")
    if not isinstance(level, int) or level < REPORTER:
        raise AccessNotProven(
            scope, f"{name} has access level {level} in group {scope.group}, below Reporter ({REPORTER})"
        )
    return f"{name} is a member of group {scope.group} with access level {level}"
