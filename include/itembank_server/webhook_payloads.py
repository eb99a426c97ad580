"""GitLab's webhook payloads, built from the bank's bare repositories with plain git.

- Push events (project hooks): https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events,
  built like ``Gitlab::DataBuilder::Push.build`` with the commits ``Git::BranchHooksService`` picks: on a new default
  branch its history, on another new branch the commits the default branch lacks, on an update ``before..after``, on
  a deletion none; at most 20 commits are listed (the newest, oldest first) and ``total_commits_count`` counts all.
- Which hooks a push fires: ``push_events`` and the branch filter
  (https://docs.gitlab.com/user/project/integrations/webhooks/#filter-push-events-by-branch): ``all_branches``,
  ``wildcard`` (``*`` matches any characters, the whole name must match) or ``regex`` (the expression found anywhere
  in the branch name); an empty filter matches every branch.
- System hook events: https://docs.gitlab.com/administration/system_hooks/ (``project_create``, ``project_destroy``,
  ``project_rename``, ``project_transfer``; ``push`` is the push payload above).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from . import bank_repos

BLANK_SHA = "0" * 40
MAX_LISTED_COMMITS = 20  # Gitlab::DataBuilder::Push: "maximum 20 latest commits"
PROCESS_COMMIT_LIMIT = 100  # Git::BaseHooksService::PROCESS_COMMIT_LIMIT
VISIBILITY_PRIVATE = 0  # Gitlab::VisibilityLevel::PRIVATE: a project dict without a level is private
VISIBILITY_NAMES = {0: "private", 10: "internal", 20: "public"}  # Gitlab::VisibilityLevel.string_level
_BRANCH_PREFIX = "refs/heads/"
_COMMIT_FORMAT = "%H%x00%P%x00%an%x00%ae%x00%cI%x00%B"


def branch_name(ref: str) -> str | None:
    return ref[len(_BRANCH_PREFIX) :] if ref.startswith(_BRANCH_PREFIX) else None


def hook_matches_branch(hook: Mapping, ref: str) -> bool:
    """GitLab's ``ActiveHookFilter`` for push hooks."""
    branch_filter = hook.get("push_events_branch_filter")
    if not branch_filter:
        return True
    branch = branch_name(ref) or ""
    strategy = hook.get("branch_filter_strategy") or "wildcard"
    if strategy == "all_branches":
        return True
    if strategy == "regex":
        try:
            return re.search(branch_filter, branch) is not None
        except re.error:
            return False
    if "*" not in branch_filter:
        return branch == branch_filter
    pattern = ".*?".join(re.escape(part) for part in branch_filter.split("*"))
    return re.fullmatch(pattern, branch) is not None


def project_hook_attrs(project: Mapping, base_url: str) -> dict:
    """``Project#hook_attrs``, with the backward-compatible keys."""
    web_url = f"{base_url}/{project['path_with_namespace']}"
    host = urlsplit(base_url).hostname or "localhost"
    ssh_url = f"git@{host}:{project['path_with_namespace']}.git"
    http_url = f"{web_url}.git"
    return {
        "id": project["id"],
        "name": project["name"],
        "description": project["description"],
        "web_url": web_url,
        "avatar_url": None,
        "git_ssh_url": ssh_url,
        "git_http_url": http_url,
        "namespace": project["namespace"]["name"],
        "visibility_level": project.get("visibility_level", VISIBILITY_PRIVATE),
        "path_with_namespace": project["path_with_namespace"],
        "default_branch": project["default_branch"],
        "ci_config_path": None,
        "homepage": web_url,
        "url": ssh_url,
        "ssh_url": ssh_url,
        "http_url": http_url,
    }


def avatar_url(user: Mapping) -> str:
    """A user without an uploaded avatar shows their Gravatar (GitLab's default avatar source)."""
    if user.get("avatar_url"):
        return str(user["avatar_url"])
    digest = hashlib.sha256(str(user.get("email") or "").strip().lower().encode()).hexdigest()
    return f"https://www.gravatar.com/avatar/{digest}?s=80&d=identicon"


def push_payload(
    repo: Path,
    project: Mapping,
    user: Mapping,
    before: str | None,
    after: str | None,
    ref: str,
    base_url: str,
    *,
    commits: Sequence[str] | None = None,
) -> dict:
    """``Gitlab::DataBuilder::Push.build`` for one ref a push changed (``commits``: given instead of found)."""
    if commits is None:
        shas, total = pushed_commits(repo, project, before or BLANK_SHA, after or BLANK_SHA, ref)
    else:
        shas, total = list(commits), len(commits)
    attrs = project_hook_attrs(project, base_url)
    repository_keys = ("name", "url", "description", "homepage", "git_http_url", "git_ssh_url", "visibility_level")
    kind = "tag_push" if ref.startswith("refs/tags/") else "push"
    return {
        "object_kind": kind,
        "event_name": kind,
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": branch_name(ref) == project["default_branch"],  # the default branch is protected by default
        "checkout_sha": None if after in (None, BLANK_SHA) else after,
        "message": None,
        "user_id": user["id"],
        "user_name": user["name"],
        "user_username": user["username"],
        "user_email": user.get("email") or "",
        "user_avatar": avatar_url(user),
        "project_id": project["id"],
        "project": attrs,
        "commits": [commit_hook_attrs(repo, sha, attrs["web_url"]) for sha in shas[-MAX_LISTED_COMMITS:]],
        "total_commits_count": total,
        "push_options": {},
        "repository": {key: attrs[key] for key in repository_keys},
    }


def sample_push_payload(repo: Path, project: Mapping, user: Mapping, base_url: str) -> dict:
    """``Gitlab::DataBuilder::Push.build_sample``: the default branch's last three commits, newest first."""
    ref = _BRANCH_PREFIX + project["default_branch"]
    head = bank_repos.resolve_ref(repo, ref) if bank_repos.is_repo(repo) else None
    shas = _rev_list(repo, "--max-count=3", head) if head else []
    before, after = (shas[-1], shas[0]) if shas else (None, None)
    return push_payload(repo, project, user, before, after, ref, base_url, commits=shas)


def pushed_commits(repo: Path, project: Mapping, before: str, after: str, ref: str) -> tuple[list[str], int]:
    """The commits ``Git::BranchHooksService`` reports (oldest first, at most 100) and how many there are in all."""
    if after == BLANK_SHA:
        return [], 0
    if before == BLANK_SHA and branch_name(ref) == project["default_branch"]:
        revisions = [after]
    elif before == BLANK_SHA:
        default_head = bank_repos.resolve_ref(repo, _BRANCH_PREFIX + project["default_branch"])
        revisions = [after, f"^{default_head}"] if default_head and default_head != after else [after]
        if default_head == after:
            return [], 0
    else:
        revisions = [after, f"^{before}"]
    listed = _rev_list(repo, f"--max-count={PROCESS_COMMIT_LIMIT + 1}", *revisions)
    listed.reverse()
    if len(listed) <= PROCESS_COMMIT_LIMIT:
        return listed, len(listed)
    total = int(bank_repos.run_git(repo, "rev-list", "--count", *revisions).decode().strip())
    return listed[-PROCESS_COMMIT_LIMIT:], total


def _rev_list(repo: Path, *args: str) -> list[str]:
    return bank_repos.run_git(repo, "rev-list", *args).decode().split()


def commit_hook_attrs(repo: Path, sha: str, project_web_url: str) -> dict:
    """``Commit#hook_attrs(with_changed_files: true)``."""
    record = bank_repos.run_git(repo, "log", "-1", f"--format={_COMMIT_FORMAT}", sha).decode("utf-8", "replace")
    commit_id, parents, author_name, author_email, committed, message = record.split("\x00", 5)
    message = message.rstrip("\n") + "\n" if message.strip() else ""
    return {
        "id": commit_id,
        "message": message,
        "title": commit_title(message),
        "timestamp": committed,
        "url": f"{project_web_url}/-/commit/{commit_id}",
        "author": {"name": author_name, "email": author_email},
        **changed_files(repo, commit_id, parents.split()),
    }


def commit_title(message: str) -> str:
    """``Commit#title``: the first line, cut at a word boundary after 80 characters if it has 100 or more."""
    full_title = re.split(r"[\r\n]", message, maxsplit=1)[0] if message.strip() else "No commit message"
    if len(full_title) < 100:
        return full_title
    stop = full_title.rfind(" ", 0, 79)  # Ruby's String#truncate(81, separator: " ", omission: "...")
    return full_title[: stop if stop >= 0 else 78] + "..."


def changed_files(repo: Path, sha: str, parents: list[str]) -> dict[str, list[str]]:
    """``Commit#repo_changes``: paths added (or renamed to), modified and removed against the first parent."""
    base = ["--root", sha] if not parents else [parents[0], sha]
    output = bank_repos.run_git(repo, "diff-tree", "-r", "-M", "--name-status", "-z", "--no-commit-id", *base)
    fields = output.decode("utf-8", "replace").split("\x00")
    changes: dict[str, list[str]] = {"added": [], "modified": [], "removed": []}
    index = 0
    while index < len(fields) and fields[index]:
        status = fields[index][0]
        if status in "RC":
            changes["added"].append(fields[index + 2])
            index += 3
            continue
        path = fields[index + 1]
        changes[{"A": "added", "D": "removed"}.get(status, "modified")].append(path)
        index += 2
    return changes


def project_event_payload(
    event_name: str, project: Mapping, owners: Sequence[Mapping], old_path_with_namespace: str | None
) -> dict:
    """``Gitlab::HookData::ProjectBuilder#build`` for a system hook.

    A group's project has the group as its (deprecated) owner: ``owner_name`` is the group's name and ``owner_email``
    is empty; ``owners`` lists the owners' names and emails.
    """
    data = {
        "event_name": event_name,
        "created_at": xmlschema(project["created_at"]),
        "updated_at": xmlschema(project["updated_at"]),
        "name": project["name"],
        "path": project["path"],
        "path_with_namespace": project["path_with_namespace"],
        "project_id": project["id"],
        "owner_name": project["namespace"]["name"],
        "owner_email": "",
        "owners": [{"name": owner["name"], "email": owner.get("email") or ""} for owner in owners],
        "project_visibility": VISIBILITY_NAMES[project.get("visibility_level", VISIBILITY_PRIVATE)],
    }
    if event_name in ("project_rename", "project_transfer"):
        data["old_path_with_namespace"] = old_path_with_namespace
    return data


def xmlschema(stored_timestamp: str) -> str:
    """Ruby's ``Time#xmlschema`` of a UTC time (seconds, ``Z``) from the bank's millisecond timestamp."""
    return stored_timestamp[:19] + "Z"
