"""Visibility levels of groups and projects and who sees what, over REST (python-gitlab where it has the call) and git.

https://docs.gitlab.com/user/public_access/ and https://docs.gitlab.com/user/permissions/: internal and public
groups and projects are visible to every signed-in user, private ones to members (group membership inherited by
subgroups and projects, project membership) and administrators; a private group to a user who sees one of its
projects (GroupPolicy ``has_projects``). Refusals carry the model validation messages of app/models/project.rb and
app/models/group.rb.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import urlsplit

import gitlab
import pytest
import requests
from itembank_helpers import GROUP, TOKEN, git_env, run_git
from test_cli import start, stop

from itembank_server import ItemBank
from itembank_server.users import DEVELOPER, GUEST, MAINTAINER, OWNER, REPORTER
from itembank_server.visibility import VisibilityError
from itembank_server.webhook_payloads import project_event_payload, project_hook_attrs

OUTSIDER = "glpat-outsider"
NOT_FOUND_PROJECT = {"message": "404 Project Not Found"}
NOT_FOUND_GROUP = {"message": "404 Group Not Found"}


def person(bank: ItemBank, name: str, token: str) -> dict:
    user = bank.create_user(name)
    bank.add_token(user["id"], token)
    return user


def client(server, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(server.url, private_token=token, retry_transient_errors=False)


def get(server, route: str, token: str, **params) -> requests.Response:
    return requests.get(f"{server.url}/api/v4{route}", headers={"PRIVATE-TOKEN": token}, params=params, timeout=10)


def put(server, route: str, token: str, **payload) -> requests.Response:
    return requests.put(f"{server.url}/api/v4{route}", headers={"PRIVATE-TOKEN": token}, json=payload, timeout=10)


def git_url(server, project: dict) -> str:
    parts = urlsplit(server.url)
    return f"{parts.scheme}://{parts.netloc}/{project['path_with_namespace']}.git"


@pytest.fixture
def internal_group(bank: ItemBank) -> dict:
    """An internal group with two internal projects and a private one, and a private subgroup with one."""
    group = bank.create_group(GROUP, visibility="internal")
    bank.create_group(f"{GROUP}/drafts", visibility="private")
    projects = {
        "open": bank.create_project(GROUP, "open-item", {"item.json": {"id": 1}}, visibility="internal"),
        "internal": bank.create_project(GROUP, "internal-item", {"item.json": {"id": 2}}, visibility="internal"),
        "private": bank.create_project(GROUP, "private-item", {"item.json": {"id": 3}}),
        "draft": bank.create_project(f"{GROUP}/drafts", "draft-item", {"item.json": {"id": 4}}),
    }
    person(bank, "outsider", OUTSIDER)
    return {"group": group, **projects}


# -- stored, shown, set at creation --------------------------------------------------------------------------------


def test_groups_and_projects_are_private_unless_created_otherwise(server, bank):
    bank.create_project(GROUP, "plain")
    root = client(server, TOKEN)
    assert root.groups.get(GROUP).visibility == "private"
    assert root.projects.get(f"{GROUP}/plain").visibility == "private"
    internal = bank.create_group("open-group", visibility="internal")
    assert internal["visibility_level"] == 10 and root.groups.get("open-group").visibility == "internal"


def test_post_projects_takes_visibility_and_lowers_it_to_the_groups(server, bank, internal_group):
    root = client(server, TOKEN)
    group_id = internal_group["group"]["id"]
    internal = root.projects.create({"name": "New internal", "namespace_id": group_id, "visibility": "internal"})
    assert internal.visibility == "internal"
    lowered = root.projects.create({"name": "Too public", "namespace_id": group_id, "visibility": "public"})
    assert lowered.visibility == "internal", "Projects::CreateService gives it the group's level"
    private = root.projects.create({"name": "Default", "namespace_id": group_id})
    assert private.visibility == "private"
    bad = requests.post(
        f"{server.url}/api/v4/projects",
        headers={"PRIVATE-TOKEN": TOKEN},
        json={"name": "Bad", "namespace_id": group_id, "visibility": "secret"},
        timeout=10,
    )
    assert (bad.status_code, bad.json()) == (400, {"error": "visibility does not have a valid value"})


def test_store_refuses_what_gitlab_refuses(bank):
    bank.create_group("parent")
    with pytest.raises(VisibilityError, match="public is not allowed since the parent group has a private visibility."):
        bank.create_group("parent/child", visibility="public")
    project = bank.create_project("parent", "p")
    with pytest.raises(VisibilityError, match="internal is not allowed in a private group."):
        bank.set_project_visibility(project, "internal")
    with pytest.raises(ValueError, match="visibility must be one of"):
        bank.create_group("other", visibility="secret")
    assert bank.project(project["id"])["visibility_level"] == 0


# -- PUT /projects/:id and PUT /groups/:id ------------------------------------------------------------------------


def test_put_project_visibility_needs_owner_and_a_group_that_allows_it(server, bank, internal_group):
    keeper = person(bank, "keeper", "glpat-keeper")
    bank.add_member(internal_group["group"], keeper["id"], MAINTAINER)
    project_id = internal_group["private"]["id"]
    as_keeper = put(server, f"/projects/{project_id}", "glpat-keeper", visibility="internal")
    assert (as_keeper.status_code, as_keeper.json()) == (403, {"message": "403 Forbidden"})
    assert put(server, f"/projects/{project_id}", "glpat-keeper", name="Renamed").status_code == 200

    project = client(server, TOKEN).projects.get(project_id)
    project.visibility = "internal"
    project.save()
    assert client(server, TOKEN).projects.get(project_id).visibility == "internal"
    too_public = put(server, f"/projects/{project_id}", TOKEN, visibility="public", path="private-item-2")
    assert too_public.status_code == 400
    assert too_public.json() == {"message": {"visibility_level": ["public is not allowed in a internal group."]}}
    assert bank.project(project_id)["path"] == "private-item", "a refused update changes nothing"
    invalid = put(server, f"/projects/{project_id}", TOKEN, visibility="everyone")
    assert (invalid.status_code, invalid.json()) == (400, {"error": "visibility does not have a valid value"})


def test_put_group_visibility_is_checked_against_projects_subgroups_and_parent(server, bank, internal_group):
    root = client(server, TOKEN)
    group = root.groups.get(GROUP)
    group.visibility = "public"
    group.save()
    assert root.groups.get(GROUP).visibility == "public"

    to_private = put(server, f"/groups/{internal_group['group']['id']}", TOKEN, visibility="private")
    bank.create_group(f"{GROUP}/open", visibility="internal")
    to_private_too = put(server, f"/groups/{internal_group['group']['id']}", TOKEN, visibility="private")
    assert to_private.status_code == to_private_too.status_code == 400
    higher_projects = "private is not allowed since this group contains projects with higher visibility."
    assert to_private.json() == {"message": {"visibility_level": [higher_projects]}}
    assert to_private_too.json()["message"]["visibility_level"] == [
        higher_projects,
        "private is not allowed since there are sub-groups with higher visibility.",
    ]
    assert root.groups.get(GROUP).visibility == "public", "a refused change changes nothing"


def test_put_group_refuses_a_level_above_the_parent_and_needs_owner(server, bank, internal_group):
    drafts = bank.group(f"{GROUP}/drafts")
    above = put(server, f"/groups/{drafts['id']}", TOKEN, visibility="public")
    assert (above.status_code, above.json()) == (
        400,
        {"message": {"visibility_level": ["public is not allowed since the parent group has a internal visibility."]}},
    )
    keeper = person(bank, "keeper", "glpat-keeper")
    bank.add_member(internal_group["group"], keeper["id"], MAINTAINER)
    as_keeper = put(server, f"/groups/{drafts['id']}", "glpat-keeper", visibility="internal")
    assert (as_keeper.status_code, as_keeper.json()) == (403, {"message": "403 Forbidden"})
    assert bank.group(drafts["id"])["visibility_level"] == 0
    owner = person(bank, "boss", "glpat-boss")
    bank.add_member(drafts, owner["id"], OWNER)
    as_owner = put(server, f"/groups/{drafts['id']}", "glpat-boss", visibility="internal")
    assert as_owner.json()["visibility"] == "internal"


def test_transfer_into_a_less_visible_group_lowers_the_projects_visibility(server, bank, internal_group):
    bank.create_group("vault")
    moved = client(server, TOKEN).projects.get(internal_group["open"]["id"])
    moved.transfer("vault")
    assert client(server, TOKEN).projects.get(moved.id).visibility == "private"
    assert get(server, f"/projects/{moved.id}", OUTSIDER).status_code == 404


# -- who sees what ------------------------------------------------------------------------------------------------


def test_a_non_member_sees_an_internal_group_and_its_internal_projects_only(server, internal_group):
    outsider = client(server, OUTSIDER)
    group = outsider.groups.get(GROUP)
    assert group.visibility == "internal"
    embedded = get(server, f"/groups/{GROUP}", OUTSIDER).json()["projects"]
    assert sorted(p["path"] for p in embedded) == ["internal-item", "open-item"]
    listed = {p.path for p in group.projects.list(get_all=True)}
    assert listed == {"internal-item", "open-item"}
    assert {p.path for p in group.projects.list(get_all=True, include_subgroups=True)} == listed
    for kind in ("open", "internal"):
        assert outsider.projects.get(internal_group[kind]["id"]).visibility == "internal"
    for kind in ("private", "draft"):
        response = get(server, f"/projects/{internal_group[kind]['id']}", OUTSIDER)
        assert (response.status_code, response.json()) == (404, NOT_FOUND_PROJECT)
    drafts = get(server, f"/groups/{GROUP}%2Fdrafts", OUTSIDER)
    assert (drafts.status_code, drafts.json()) == (404, NOT_FOUND_GROUP)
    assert get(server, f"/groups/{GROUP}/members", OUTSIDER).status_code == 200, "read_group_member of internal"


def test_members_see_every_project_and_admins_everything(server, bank, internal_group):
    reader = person(bank, "reader", "glpat-reader")
    bank.add_member(internal_group["group"], reader["id"], GUEST)
    every = {"open-item", "internal-item", "private-item", "draft-item"}
    for token in ("glpat-reader", TOKEN):
        listed = get(server, f"/groups/{GROUP}/projects", token, include_subgroups="true")
        assert {p["path"] for p in listed.json()} == every and listed.headers["X-Total"] == "4"
        assert get(server, f"/groups/{GROUP}%2Fdrafts", token).status_code == 200


def test_private_and_public_groups(server, bank):
    bank.create_group("closed")
    bank.create_project("closed", "hidden")
    bank.create_group("open", visibility="public")
    bank.create_project("open", "shown", visibility="public")
    person(bank, "outsider", OUTSIDER)
    closed = get(server, "/groups/closed", OUTSIDER)
    assert (closed.status_code, closed.json()) == (404, NOT_FOUND_GROUP)
    assert get(server, "/groups/closed/projects", OUTSIDER).json() == NOT_FOUND_GROUP
    assert [p.path for p in client(server, OUTSIDER).groups.get("open").projects.list(get_all=True)] == ["shown"]


def test_a_project_member_sees_its_private_group_but_not_the_groups_members(server, bank):
    bank.create_group("closed/sub")
    mine = bank.create_project("closed/sub", "mine", {"item.json": {"id": 1}})
    bank.create_project("closed", "theirs")
    member = person(bank, "member", "glpat-member")
    bank.add_project_member(mine, member["id"], REPORTER)
    as_member = client(server, "glpat-member")
    assert as_member.groups.get("closed").full_path == "closed", "has_projects: a project in a subgroup counts"
    assert as_member.groups.get("closed/sub").projects.list(get_all=True)[0].path == "mine"
    assert as_member.groups.get("closed").projects.list(get_all=True) == []
    assert [p.path for p in as_member.groups.get("closed").projects.list(get_all=True, include_subgroups=True)] == [
        "mine"
    ]
    members = get(server, "/groups/closed/members", "glpat-member")
    assert (members.status_code, members.json()) == (403, {"message": "403 Forbidden"})
    assert get(server, f"/projects/{mine['id']}/members", "glpat-member").status_code == 200
    bank.remove_project_member(mine, member["id"])
    assert get(server, "/groups/closed", "glpat-member").json() == NOT_FOUND_GROUP


def test_a_subgroup_member_without_visible_projects_does_not_see_the_parent(server, bank):
    sub = bank.create_group("closed/empty-sub")
    member = person(bank, "member", "glpat-member")
    bank.add_member(sub, member["id"], OWNER)
    assert get(server, "/groups/closed%2Fempty-sub", "glpat-member").status_code == 200
    parent = get(server, "/groups/closed", "glpat-member")
    assert (parent.status_code, parent.json()) == (404, NOT_FOUND_GROUP)


def test_listing_pages_count_only_the_visible_projects(server, bank):
    bank.create_group(GROUP, visibility="internal")
    for n in range(25):
        bank.create_project(GROUP, f"item-{n:02}", visibility="internal" if n % 5 in (0, 1, 2) else "private")
    person(bank, "outsider", OUTSIDER)
    visible = sorted(f"item-{n:02}" for n in range(25) if n % 5 in (0, 1, 2))
    seen = []
    for page in (1, 2, 3, 4):
        params = {"per_page": 5, "page": page, "order_by": "path", "sort": "asc"}
        response = get(server, f"/groups/{GROUP}/projects", OUTSIDER, **params)
        assert (response.headers["X-Total"], response.headers["X-Total-Pages"]) == ("15", "3")
        assert response.headers["X-Next-Page"] == ("" if page >= 3 else str(page + 1))
        seen += [p["path"] for p in response.json()]
    assert seen == visible
    keyset = [
        p.path
        for p in client(server, OUTSIDER)
        .groups.get(GROUP, lazy=True)
        .projects.list(iterator=True, pagination="keyset", order_by="id", sort="asc", per_page=4)
    ]
    assert keyset == visible


# -- git ----------------------------------------------------------------------------------------------------------


def test_git_reads_follow_visibility_and_pushes_need_developer(server, bank, internal_group, home):
    outsider_env = git_env(home, OUTSIDER)
    internal = run_git("ls-remote", git_url(server, internal_group["internal"]), env=outsider_env)
    assert "refs/heads/main" in internal.stdout
    run_git("clone", "--quiet", git_url(server, internal_group["open"]), str(home / "open"), env=outsider_env)
    (home / "open" / "item.json").write_text('{"id": 9}')
    run_git(
        "commit",
        "-qam",
        "edit",
        env={
            **outsider_env,
            "GIT_AUTHOR_NAME": "o",
            "GIT_AUTHOR_EMAIL": "o@x",
            "GIT_COMMITTER_NAME": "o",
            "GIT_COMMITTER_EMAIL": "o@x",
        },
        cwd=home / "open",
    )
    push = run_git("push", "origin", "main", env=outsider_env, cwd=home / "open", check=False)
    assert push.returncode != 0 and "You are not allowed to push code to this project." in push.stderr
    hidden = run_git("ls-remote", git_url(server, internal_group["private"]), env=outsider_env, check=False)
    assert hidden.returncode != 0 and "could not be found" in hidden.stderr

    guest = person(bank, "guest", "glpat-guest")
    bank.add_project_member(internal_group["private"], guest["id"], GUEST)
    as_guest = run_git(
        "ls-remote", git_url(server, internal_group["private"]), env=git_env(home, "glpat-guest"), check=False
    )
    assert as_guest.returncode != 0 and "You are not allowed to download code from this project." in as_guest.stderr
    assert run_git("ls-remote", git_url(server, internal_group["internal"]), env=git_env(home, "glpat-guest")).stdout

    bank.add_project_member(internal_group["open"], guest["id"], DEVELOPER)
    pushed = run_git("push", "origin", "main", env=git_env(home, "glpat-guest"), cwd=home / "open", check=False)
    assert pushed.returncode == 0, pushed.stderr
    assert bank.read_file(internal_group["open"]["id"], "item.json") == b'{"id": 9}'


# -- hooks, CLI, old banks ----------------------------------------------------------------------------------------


def test_hook_payloads_carry_the_projects_visibility(bank, internal_group):
    project = bank.project(internal_group["internal"]["id"])
    assert project_hook_attrs(project, "http://bank")["visibility_level"] == 10
    payload = project_event_payload("project_create", project, [], None)
    assert payload["project_visibility"] == "internal"


def test_serve_sets_the_group_and_generated_items_visibility(tmp_path):
    process, announced = start(
        tmp_path / "bank",
        "--generate",
        "2",
        "--visibility",
        "internal",
        "--token",
        "t",
        env={**os.environ, "ITEMBANK_TOKENS": ""},
    )
    try:
        url = announced["url"][0]
        group = requests.get(f"{url}/api/v4/groups/iat-dev", headers={"PRIVATE-TOKEN": "t"}, timeout=10).json()
        assert group["visibility"] == "internal"
        assert {p["visibility"] for p in group["projects"]} == {"internal"}
    finally:
        stop(process)


def test_banks_from_before_visibility_reopen_private(tmp_path):
    root = tmp_path / "old-bank"
    bank = ItemBank(root)
    bank.create_project(GROUP, "old")
    bank.close()
    legacy = sqlite3.connect(root / "itembank.sqlite3")
    for table in ("projects", "groups"):
        legacy.execute(f"ALTER TABLE {table} DROP COLUMN visibility_level")
    legacy.execute("DROP TABLE project_members")
    legacy.commit()
    legacy.close()
    reopened = ItemBank(root)
    try:
        project = reopened.project(f"{GROUP}/old")
        assert project["visibility_level"] == 0 and project["namespace"]["visibility_level"] == 0
        assert reopened.project_members(project) == []
    finally:
        reopened.close()
