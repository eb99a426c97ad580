"""What a ``git push`` over smart HTTP changed, and what GitLab does to the project afterwards.

The server snapshots the repository's refs before and after ``git http-backend`` runs ``git receive-pack``, both
under the project's repository lock, so the difference is exactly what this push did. GitLab then, for the
project (``PostReceive`` and ``Git::BranchHooksService``):

- sets ``empty_repo`` to ``repository.empty?``, i.e. no branches (``Repository#has_visible_content?``);
- creates a push event, which moves ``last_activity_at`` at most once an hour (:meth:`ItemBank.record_git_push`);
- takes the repository's root ref as the project's default branch: Gitaly's ``GetDefaultBranch`` (the only
  branch; else HEAD's branch if it exists; else ``main``; else ``master``; else the first branch by name), and,
  when the push created that branch, points HEAD at it (``Project#after_create_default_branch`` ->
  ``Projects::ProtectDefaultBranchService`` calls ``project.change_head(default_branch)``). So the first branch
  pushed to an empty project becomes its default branch and HEAD ("Make the first branch pushed to an empty
  repository the default HEAD", https://gitlab.com/gitlab-org/gitlab-foss/-/merge_requests/614; Gitaly returns
  the first branch as default, https://gitlab.com/gitlab-org/gitlab/-/merge_requests/60258).
- runs the push hooks for every branch and tag it changed, with ``before``/``after`` set to 40 zeros
  (``Gitlab::Git::BLANK_SHA``) for a created/deleted ref
  (https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events).

Only pushes through the HTTP front end do this. Writes through the store (``ItemBank.push_commits``,
``create_projects``, the generator) are direct repository writes for test setup and bulk loading: they fire no
hooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import bank_repos

BLANK_SHA = "0" * 40
_BRANCH_PREFIX = "refs/heads/"
_HOOKED_PREFIXES = (_BRANCH_PREFIX, "refs/tags/")


@dataclass(frozen=True)
class RefChange:
    ref: str
    before: str
    after: str

    @property
    def created(self) -> bool:
        return self.before == BLANK_SHA


def ref_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[RefChange]:
    """Branches and tags whose target differs between the two snapshots, by ref name."""
    refs = sorted(ref for ref in set(before) | set(after) if ref.startswith(_HOOKED_PREFIXES))
    return [
        RefChange(ref, before.get(ref, BLANK_SHA), after.get(ref, BLANK_SHA))
        for ref in refs
        if before.get(ref) != after.get(ref)
    ]


def root_ref(branches: Sequence[str], head: str | None) -> str | None:
    """Gitaly's ``GetDefaultBranch``: the branch GitLab reports as the repository's default."""
    if not branches:
        return None
    if len(branches) == 1:
        return branches[0]
    for candidate in (head and head.removeprefix(_BRANCH_PREFIX), "main", "master"):
        if candidate in branches:
            return candidate
    return sorted(branches)[0]


def apply_push(bank, project: Mapping, repo: Path, changes: Sequence[RefChange], refs_after: Mapping[str, str]) -> dict:
    """Update HEAD and the project row after a push; return the project as it is now."""
    branches = sorted(ref.removeprefix(_BRANCH_PREFIX) for ref in refs_after if ref.startswith(_BRANCH_PREFIX))
    head = bank_repos.head_target(repo)
    default = root_ref(branches, head)
    created = {change.ref for change in changes if change.created}
    if default and f"{_BRANCH_PREFIX}{default}" in created and head != f"{_BRANCH_PREFIX}{default}":
        bank_repos.set_head(repo, default)
    return bank.record_git_push(project["id"], has_branches=bool(branches), default_branch=default)
