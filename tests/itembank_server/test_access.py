"""Users and access through the official python-gitlab client and git: roles, the members API, 404s for outsiders."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from urllib.parse import urlsplit

import gitlab
import pytest
import requests
from itembank_helpers import GROUP, TOKEN, git_env, run_git

from itembank_server import ItemBank
from itembank_server.users import DEVELOPER, MAINTAINER, OWNER, REPORTER

SYNC_TOKEN = "glpat-sync-token"
MAINTAINER_TOKEN = "glpat-maintainer-token"


@pytest.fixture
def setup(bank: ItemBank) -> dict:
    group = bank.create_group(GROUP)
    subgroup = bank.create_group(f"{GROUP}/archive")
    sync = bank.create_user("sync", name="Sync Service", email="sync@example.com")
    bank.add_token(sync["id"], SYNC_TOKEN)
    bank.add_member(group, sync["id"], REPORTER)
    keeper = bank.create_user("keeper")
    bank.add_token(keeper["id"], MAINTAINER_TOKEN)
    bank.add_member(group, keeper["id"], MAINTAINER)
    project = bank.create_project(GROUP, "205030", files={"item.json": {"id": "205030"}})
    nested = bank.create_project(subgroup, "100001", files={"item.json": {"id": "100001"}})
    return {"group": group, "subgroup": subgroup, "sync": sync, "project": project, "nested": nested}


def client(server, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(server.url, private_token=token, retry_transient_errors=False)


def ls_remote(server, home, token: str, path: str = f"{GROUP}/205030"):
    parts = urlsplit(server.url)
    return run_git("ls-remote", f"{parts.scheme}://{parts.netloc}/{path}.git", env=git_env(home, token), check=False)


def test_auth_gives_the_token_owner(server, setup):
    sync = client(server, SYNC_TOKEN)
    sync.auth()
    assert (sync.user.id, sync.user.username, sync.user.name) == (setup["sync"]["id"], "sync", "Sync Service")
    assert sync.user.email == "sync@example.com" and not hasattr(sync.user, "is_admin")
    root = client(server, TOKEN)
    root.auth()
    assert root.user.username == "root" and root.user.is_admin is True


def test_removing_a_member_hides_the_group_and_its_projects_until_restored(server, setup, home):
    root, sync = client(server, TOKEN), client(server, SYNC_TOKEN)
    project_id, nested_id = setup["project"]["id"], setup["nested"]["id"]
    assert sync.projects.get(project_id).path == "205030"
    assert sync.projects.get(nested_id).path == "100001", "membership is inherited by subgroups"
    assert {p.path for p in sync.groups.get(GROUP, lazy=True).projects.list(get_all=True)} == {"205030"}
    assert ls_remote(server, home, SYNC_TOKEN).returncode == 0

    group = root.groups.get(GROUP)
    members = {m.username: m.access_level for m in group.members.list(get_all=True)}
    assert members == {"sync": REPORTER, "keeper": MAINTAINER}
    group.members.delete(setup["sync"]["id"])

    for project in (project_id, nested_id):
        with pytest.raises(gitlab.GitlabGetError) as missing:
            sync.projects.get(project)
        assert missing.value.response_code == 404 and missing.value.error_message == "404 Project Not Found"
    with pytest.raises(gitlab.GitlabGetError) as missing_group:
        sync.groups.get(GROUP)
    assert missing_group.value.response_code == 404 and missing_group.value.error_message == "404 Group Not Found"
    with pytest.raises(gitlab.GitlabListError) as missing_list:
        sync.groups.get(GROUP, lazy=True).projects.list()
    assert missing_list.value.response_code == 404 and missing_list.value.error_message == "404 Group Not Found"
    with pytest.raises(gitlab.GitlabListError) as missing_hooks:
        sync.projects.get(project_id, lazy=True).hooks.list()
    assert missing_hooks.value.error_message == "404 Project Not Found"
    refused = ls_remote(server, home, SYNC_TOKEN)
    assert refused.returncode != 0
    assert "The project you were looking for could not be found or you don't have permission to view it." in (
        refused.stderr
    )
    url = f"{server.url}/{GROUP}/205030.git"
    clone = run_git("clone", url, str(home / "c"), env=git_env(home, SYNC_TOKEN), check=False)
    assert clone.returncode != 0 and "could not be found" in clone.stderr

    created = group.members.create({"user_id": setup["sync"]["id"], "access_level": REPORTER})
    assert (created.username, created.access_level) == ("sync", REPORTER)
    assert sync.projects.get(project_id).id == project_id
    assert sync.groups.get(GROUP).full_path == GROUP
    assert ls_remote(server, home, SYNC_TOKEN).returncode == 0


def test_project_hooks_need_maintainer(server, setup):
    project_id = setup["project"]["id"]
    with pytest.raises(gitlab.GitlabListError) as reporter:
        client(server, SYNC_TOKEN).projects.get(project_id, lazy=True).hooks.list()
    assert reporter.value.response_code == 403 and reporter.value.error_message == "403 Forbidden"
    keeper = client(server, MAINTAINER_TOKEN).projects.get(project_id, lazy=True)
    hook = keeper.hooks.create({"url": "http://example.com/hook", "push_events": True})
    assert [h.id for h in keeper.hooks.list()] == [hook.id]


def test_only_owners_and_admins_manage_members(server, bank, setup):
    sync_id = setup["sync"]["id"]
    keeper_group = client(server, MAINTAINER_TOKEN).groups.get(GROUP)
    with pytest.raises(gitlab.GitlabDeleteError) as maintainer:
        keeper_group.members.delete(sync_id)
    assert maintainer.value.response_code == 403 and maintainer.value.error_message == "403 Forbidden"
    owner = bank.create_user("owner")
    bank.add_token(owner["id"], "glpat-owner")
    bank.add_member(setup["subgroup"], owner["id"], OWNER)
    above = client(server, "glpat-owner").groups.get(GROUP)
    assert above.full_path == GROUP, "the parent of a subgroup with a project the user sees is visible (has_projects)"
    with pytest.raises(gitlab.GitlabListError) as parent_members:
        above.members.list()
    assert parent_members.value.response_code == 403, "but a subgroup's membership gives no role in its parent"
    subgroup = client(server, "glpat-owner").groups.get(setup["subgroup"]["id"])
    added = subgroup.members.create({"user_id": sync_id, "access_level": DEVELOPER})
    assert added.access_level == DEVELOPER
    assert bank.access_level(setup["sync"], setup["subgroup"]["id"]) == DEVELOPER, "the highest role wins"
    subgroup.members.delete(sync_id)
    assert bank.member(setup["subgroup"], sync_id) is None
    assert bank.access_level(setup["sync"], setup["subgroup"]["id"]) == REPORTER, "still inherited from the parent"


def test_members_api_errors_match_gitlab(server, setup):
    api = f"{server.url}/api/v4/groups/{setup['group']['id']}/members"
    headers = {"PRIVATE-TOKEN": TOKEN}
    sync_id = setup["sync"]["id"]
    cases = [
        ({"user_id": sync_id, "access_level": REPORTER}, 409, {"message": "Member already exists"}),
        ({"user_id": 9999, "access_level": REPORTER}, 404, {"message": "404 User Not Found"}),
        ({"user_id": sync_id}, 400, {"error": "access_level is missing"}),
    ]
    for payload, status, body in cases:
        response = requests.post(api, json=payload, headers=headers, timeout=10)
        assert (response.status_code, response.json()) == (status, body)
    missing = requests.delete(f"{api}/9999", headers=headers, timeout=10)
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Not found"})


def test_control_routes_need_an_administrator(server, setup):
    as_sync = requests.get(f"{server.url}/-/counters", headers={"PRIVATE-TOKEN": SYNC_TOKEN}, timeout=10)
    assert as_sync.status_code == 403 and as_sync.json() == {"message": "403 Forbidden"}
    assert requests.get(f"{server.url}/-/counters", headers={"PRIVATE-TOKEN": TOKEN}, timeout=10).status_code == 200


def test_tokens_are_stored_as_digests_and_old_banks_reopen(tmp_path):
    root = tmp_path / "old-bank"
    root.mkdir()
    ItemBank(root).close()
    legacy = sqlite3.connect(root / "itembank.sqlite3")
    for table in ("members", "personal_access_tokens", "users"):  # a bank from before users existed
        legacy.execute(f"DROP TABLE {table}")
    legacy.commit()
    legacy.close()
    bank = ItemBank(root)
    try:
        user = bank.create_user("alice")
        bank.add_token(user["id"], "glpat-secret-value")
        assert bank.user_for_token("glpat-secret-value")["username"] == "alice"
        assert bank.user_for_token("glpat-other") is None
        with pytest.raises(ValueError):
            bank.add_token(bank.create_user("bob")["id"], "glpat-secret-value")
    finally:
        bank.close()
    stored = b"".join(path.read_bytes() for path in root.glob("itembank.sqlite3*"))
    assert b"glpat-secret-value" not in stored
    reopened = ItemBank(root)
    try:
        assert reopened.find_user("alice")["id"] == user["id"]
    finally:
        reopened.close()


def test_serve_creates_users_with_roles_from_the_command_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "itembank_server", "serve", "--root", str(tmp_path / "bank"), "--port", "0"]
        + ["--token", "root-token", "--user", "sync:sync-token:reporter", "--user", "pusher:push:er:developer"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ITEMBANK_TOKENS": ""},
    )
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line.strip())
            if line.startswith("token:"):
                break
        url = next(line.split(": ", 1)[1] for line in lines if line.startswith("url:"))
        assert "user: sync (reporter)" in lines and "user: pusher (developer)" in lines
        assert not any("sync-token" in line for line in lines), "user tokens are not printed"
        pusher = client_at(url, "push:er")
        pusher.auth()
        assert pusher.user.username == "pusher"
        group = client_at(url, "root-token").groups.get("iat-dev")
        members = {m.username: m.access_level for m in group.members.list()}
        assert members == {"sync": REPORTER, "pusher": DEVELOPER}
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert process.returncode == 0


def client_at(url: str, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(url, private_token=token, retry_transient_errors=False)
