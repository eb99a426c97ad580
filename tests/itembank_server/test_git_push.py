"""git push over smart HTTP by a real git client: who may push, what a push changes, and the push hooks it fires."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import requests
from itembank_helpers import GROUP, TOKEN, basic_auth_header, git_env, run_git, utc

from itembank_server import ItemBank
from itembank_server.git_push import BLANK_SHA
from itembank_server.users import DEVELOPER, GUEST, REPORTER
from itembank_server.webhook_delivery import WebhookDispatcher

DEVELOPER_TOKEN = "glpat-developer-token"
REPORTER_TOKEN = "glpat-reporter-token"
GUEST_TOKEN = "glpat-guest-token"
ITEM = {"id": "205030", "type": "mc", "workflow": {"workflowStatusCode": "Draft"}}
LONG_AGO = utc(2019, 3, 4, 10, 30, 15)


class RecordingHooks(WebhookDispatcher):
    """The server's hook interface, keeping each push call instead of delivering it."""

    def __init__(self, bank, base_url) -> None:
        super().__init__(bank, base_url)
        self.pushes: list[tuple[int, str, str, str, str]] = []

    def push(self, project, user, before, after, ref) -> None:
        self.pushes.append((project["id"], user["username"], before, after, ref))


@pytest.fixture
def hooks(server) -> RecordingHooks:
    server.hooks = RecordingHooks(server.bank, lambda: server.url)
    return server.hooks


@pytest.fixture
def users(bank: ItemBank) -> dict[str, dict]:
    group = bank.create_group(GROUP)
    created = {}
    for username, token, level in (
        ("dev", DEVELOPER_TOKEN, DEVELOPER),
        ("reporter", REPORTER_TOKEN, REPORTER),
        ("guest", GUEST_TOKEN, GUEST),
    ):
        user = bank.create_user(username, name=username.title(), email=f"{username}@example.com")
        bank.add_token(user["id"], token)
        bank.add_member(group, user["id"], level)
        created[username] = user
    return created


@pytest.fixture
def project(bank: ItemBank, users) -> dict:
    return bank.create_project(GROUP, "205030", files={"item.json": ITEM}, committed_at=LONG_AGO)


def repo_url(server, path: str = "205030") -> str:
    parts = urlsplit(server.url)
    return f"{parts.scheme}://{parts.netloc}/{GROUP}/{path}.git"


def clone(server, home, tmp_path, token: str = DEVELOPER_TOKEN, path: str = "205030", name: str = "clone"):
    target = tmp_path / name
    run_git("clone", repo_url(server, path), str(target), env=git_env(home, token))
    return target


def commit(work, env, message: str, content: dict) -> str:
    (work / "item.json").write_text(json.dumps(content) + "\n")
    run_git("add", "item.json", env=env, cwd=work)
    run_git("-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-m", message, env=env, cwd=work)
    return run_git("rev-parse", "HEAD", env=env, cwd=work).stdout.strip()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_developer_push_moves_the_branch_and_fires_one_push_hook(server, bank, project, hooks, home, tmp_path):
    before = bank.head(project["id"])
    work = clone(server, home, tmp_path)
    env = git_env(home, DEVELOPER_TOKEN)
    after = commit(work, env, "Operational", {**ITEM, "workflow": {"workflowStatusCode": "Operational"}})
    started = datetime.now(UTC).replace(microsecond=0)
    run_git("push", "origin", "main", env=env, cwd=work)
    assert bank.head(project["id"]) == after
    assert json.loads(bank.read_file(project["id"], "item.json"))["workflow"]["workflowStatusCode"] == "Operational"
    assert hooks.pushes == [(project["id"], "dev", before, after, "refs/heads/main")]
    pushed = bank.project(project["id"])
    assert parse_time(pushed["last_activity_at"]) >= started, "activity older than an hour moves on push"
    assert pushed["updated_at"] == pushed["last_activity_at"]
    assert pushed["empty_repo"] is False and pushed["default_branch"] == "main"


def test_last_activity_moves_at_most_once_an_hour(server, bank, project, hooks, home, tmp_path):
    work = clone(server, home, tmp_path)
    env = git_env(home, DEVELOPER_TOKEN)
    commit(work, env, "first", {**ITEM, "version": "1"})
    run_git("push", "origin", "main", env=env, cwd=work)
    first_activity = bank.project(project["id"])["last_activity_at"]
    assert first_activity != project["last_activity_at"]
    second = commit(work, env, "second", {**ITEM, "version": "2"})
    run_git("push", "origin", "main", env=env, cwd=work)
    assert bank.head(project["id"]) == second and len(hooks.pushes) == 2
    assert bank.project(project["id"])["last_activity_at"] == first_activity


def test_force_push_new_branch_and_branch_deletion(server, bank, project, hooks, home, tmp_path):
    original = bank.head(project["id"])
    work = clone(server, home, tmp_path)
    env = git_env(home, DEVELOPER_TOKEN)
    run_git("checkout", "-b", "feature", env=env, cwd=work)
    feature = commit(work, env, "feature work", {**ITEM, "version": "feature"})
    run_git("push", "origin", "feature", env=env, cwd=work)
    assert bank.head(project["id"], "feature") == feature

    run_git("checkout", "main", env=env, cwd=work)
    first = commit(work, env, "will be rewritten", {**ITEM, "version": "a"})
    run_git("push", "origin", "main", env=env, cwd=work)
    run_git("reset", "--hard", original, env=env, cwd=work)
    rewritten = commit(work, env, "rewritten", {**ITEM, "version": "b"})
    refused = run_git("push", "origin", "main", env=env, cwd=work, check=False)
    assert refused.returncode != 0 and bank.head(project["id"]) == first
    run_git("push", "--force", "origin", "main", env=env, cwd=work)
    assert bank.head(project["id"]) == rewritten

    run_git("push", "origin", "--delete", "feature", env=env, cwd=work)
    assert bank.head(project["id"], "feature") is None
    assert hooks.pushes == [
        (project["id"], "dev", BLANK_SHA, feature, "refs/heads/feature"),
        (project["id"], "dev", original, first, "refs/heads/main"),
        (project["id"], "dev", first, rewritten, "refs/heads/main"),
        (project["id"], "dev", feature, BLANK_SHA, "refs/heads/feature"),
    ]


def test_first_push_to_an_empty_project_sets_its_default_branch(server, bank, users, hooks, home, tmp_path):
    empty = bank.create_project(GROUP, "300000", created_at=LONG_AGO)
    assert empty["empty_repo"] is True
    work = tmp_path / "new"
    env = git_env(home, DEVELOPER_TOKEN)
    run_git("init", "-q", "-b", "develop", str(work), env=env)
    sha = commit(work, env, "Create item", ITEM)
    run_git("push", repo_url(server, "300000"), "develop", env=env, cwd=work)
    pushed = bank.project(empty["id"])
    assert pushed["empty_repo"] is False and pushed["default_branch"] == "develop"
    assert bank.head(empty["id"]) == sha
    assert hooks.pushes == [(empty["id"], "dev", BLANK_SHA, sha, "refs/heads/develop")]
    fresh = clone(server, home, tmp_path, path="300000", name="fresh")
    assert run_git("rev-parse", "--abbrev-ref", "HEAD", env=env, cwd=fresh).stdout.strip() == "develop"

    deleted = run_git("push", repo_url(server, "300000"), "--delete", "develop", env=env, cwd=work, check=False)
    assert deleted.returncode != 0, "the default branch cannot be deleted"
    assert bank.head(empty["id"]) == sha and len(hooks.pushes) == 1


def test_reporter_gets_gitlabs_403_and_nothing_moves(server, bank, project, hooks, home, tmp_path):
    head = bank.head(project["id"])
    refs = requests.get(
        f"{repo_url(server)}/info/refs",
        params={"service": "git-receive-pack"},
        headers={"Authorization": basic_auth_header(REPORTER_TOKEN)},
        timeout=10,
    )
    assert refs.status_code == 403 and refs.text == "You are not allowed to push code to this project.\n"
    work = clone(server, home, tmp_path, token=REPORTER_TOKEN)
    env = git_env(home, REPORTER_TOKEN)
    commit(work, env, "change", {})
    pushed = run_git("push", "origin", "main", env=env, cwd=work, check=False)
    assert pushed.returncode != 0
    assert "You are not allowed to push code to this project." in pushed.stderr
    assert bank.head(project["id"]) == head and hooks.pushes == []


def test_guest_may_not_download_and_unknown_token_is_401(server, project, home, tmp_path):
    guest = run_git("ls-remote", repo_url(server), env=git_env(home, GUEST_TOKEN), check=False)
    assert guest.returncode != 0
    assert "You are not allowed to download code from this project." in guest.stderr
    for service in ("git-receive-pack", "git-upload-pack"):
        unknown = requests.get(
            f"{repo_url(server)}/info/refs",
            params={"service": service},
            headers={"Authorization": basic_auth_header("glpat-unknown")},
            timeout=10,
        )
        assert unknown.status_code == 401 and unknown.headers["WWW-Authenticate"] == 'Basic realm="GitLab"'
    work = clone(server, home, tmp_path, token=REPORTER_TOKEN)
    bad_url = repo_url(server).replace("://", "://oauth2:glpat-unknown@")
    pushed = run_git("push", bad_url, "main", env=git_env(home, token=None), cwd=work, check=False)
    assert pushed.returncode != 0 and "Authentication failed" in pushed.stderr


def test_archived_project_refuses_pushes_with_gitlabs_text(server, bank, project, hooks, home, tmp_path):
    work = clone(server, home, tmp_path)
    env = git_env(home, DEVELOPER_TOKEN)
    commit(work, env, "change", {**ITEM, "version": "x"})
    bank.set_archived(project["id"])
    pushed = run_git("push", "origin", "main", env=env, cwd=work, check=False)
    assert pushed.returncode != 0 and "You can't push code to an archived project." in pushed.stderr
    assert hooks.pushes == []


def test_admin_root_token_can_push(server, bank, project, hooks, home, tmp_path):
    work = clone(server, home, tmp_path, token=TOKEN)
    env = git_env(home, TOKEN)
    sha = commit(work, env, "by root", {**ITEM, "version": "root"})
    run_git("push", "origin", "main", env=env, cwd=work)
    assert bank.head(project["id"]) == sha and hooks.pushes[0][1] == "root"


def test_store_writes_fire_no_hooks(server, bank, project, hooks):
    bank.push_commit(project["id"], {"item.json": {**ITEM, "version": "store"}})
    bank.push_commit(project["id"], {"notes.txt": "x"}, branch="other")
    assert hooks.pushes == []
