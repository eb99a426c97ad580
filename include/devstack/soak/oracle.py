"""What the ``imrt`` database should hold, read by plain git from the item bank server's repositories on disk (not
through product code, not through the server's REST API).

The item bank server keeps one bare repository per project at ``<repos>/<namespace full path>/<path>.git``; a
deleted project's directory is removed, a renamed or transferred one is moved. For every repository under the
configured group's directory (the group and all its subgroups):

* the default branch is the repository's ``HEAD`` (the server points it at the default branch);
* ``git log -- item.json`` on it gives the commits that touched ``item.json``, newest first; none: no item expected
  (an empty project, or one whose first push has not landed);
* the newest of them whose ``item.json`` parses as a JSON object with an integer ``id`` is the **expected commit**:
  the item id is that ``id``, ``item_git.current_commit_hash`` that commit's sha, and ``item_git.updated_by`` and
  ``item.updated_by`` that commit's author name.

A head whose ``item.json`` is malformed (not JSON, not an object, no integer id) is expected to keep the rows it had
before: IMRT fails that item and changes none of its rows. Which rows it had depends on what IMRT saw, so the soak
makes it exact: it pushes malformed JSON only to an item whose row already shows its last item.json commit, then
pushes no other item.json change to it until the fix, and does not move it out of its namespace meanwhile. So the
rows it had are those of the newest well-formed item.json commit before the malformed ones, which is exactly the
expected commit above. A project whose item.json never parsed is expected to have no row.

Project ids (GitLab's, ``item_git.project_id``) are not in git: they are looked up by full path in the item bank's
own store, for the report and for the check that each item sits under its project.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from itembank_server.bank_repos import GIT_ENV_ISOLATION

FIELD, RECORD = "\x1f", "\x1e"


@dataclass(frozen=True)
class Expected:
    item_id: int
    full_path: str  # namespace/path of the project
    sha: str
    author: str
    head_malformed: bool  # the head's item.json did not parse: the expectation is the last well-formed commit
    project_id: int | None = None


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_ENV_ISOLATION, "GIT_DIR": str(repo)}
    return subprocess.run(["git", *args], env=env, capture_output=True, timeout=60)


def repositories(repos_dir: Path, group: str) -> list[Path]:
    """Every bare repository under the group's directory, subgroups included."""
    root = repos_dir / group
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.git") if p.is_dir() and (p / "HEAD").is_file())


def item_json_commits(repo: Path) -> list[tuple[str, str]]:
    """(sha, author name) of every commit of the default branch that touched item.json, newest first."""
    result = git(repo, "log", f"--format=%H{FIELD}%an{RECORD}", "HEAD", "--", "item.json")
    if result.returncode != 0:  # an unborn HEAD: nothing pushed yet
        return []
    records = result.stdout.decode("utf-8").split(RECORD)
    return [tuple(r.strip("\n").split(FIELD, 1)) for r in records if r.strip("\n")]


def item_id_at(repo: Path, sha: str) -> int | None:
    """The ``id`` of item.json at ``sha``, None when the file is not a JSON object with an integer id."""
    shown = git(repo, "show", f"{sha}:item.json")
    if shown.returncode != 0:
        return None
    try:
        document = json.loads(shown.stdout)
    except ValueError:
        return None
    if not isinstance(document, dict) or isinstance(document.get("id"), (bool, dict, list)):
        return None
    try:
        return int(str(document.get("id")).strip())
    except ValueError:
        return None


def expected_for(repo: Path, full_path: str) -> Expected | None:
    commits = item_json_commits(repo)
    for index, (sha, author) in enumerate(commits):
        item_id = item_id_at(repo, sha)
        if item_id is not None:
            return Expected(item_id, full_path, sha, author, head_malformed=index > 0)
    return None


def read_bank(repos_dir: Path, group: str, project_id_of=None) -> list[Expected]:
    """The expected item of every project of the group and its subgroups that has one.

    ``project_id_of(full_path)``: the GitLab project id of a path (the item bank's store), or None to leave it out.
    """
    found = []
    for repo in repositories(repos_dir, group):
        full_path = repo.relative_to(repos_dir).as_posix().removesuffix(".git")
        expected = expected_for(repo, full_path)
        if expected is not None:
            project_id = project_id_of(full_path) if project_id_of else None
            found.append(replace(expected, project_id=project_id))
    return found
