"""Projects change through the REST API as users change them, driven with the official ``python-gitlab`` client.

https://docs.gitlab.com/api/projects/: create, edit (rename), transfer, archive/unarchive and delete; each change
fires its system hook (https://docs.gitlab.com/administration/system_hooks/) through ``WebhookDispatcher``.
"""

from __future__ import annotations

import json
from pathlib import Path

import gitlab
import pytest
from itembank_helpers import GROUP, TOKEN, git_env, run_git, utc

from itembank_server import ItemBank, ItemBankServer
from itembank_server.webhook_delivery import WebhookDispatcher

ITEM = {"id": "400100", "type": "mc", "version": "iat-5"}
PATH_FORMAT = (
    "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'"
)
TAKEN = ["has already been taken"]


class RecordingHooks(WebhookDispatcher):
    """Records the project events the REST routes fire, instead of delivering them."""

    def __init__(self, bank: ItemBank, base_url):
        super().__init__(bank, base_url)
        self.events: list[tuple[str, dict, object, str | None]] = []

    def project_event(self, event_name, project, user, *, old_path_with_namespace=None) -> None:
        self.events.append((event_name, dict(project), user, old_path_with_namespace))


@pytest.fixture
def hooks(server: ItemBankServer, bank: ItemBank) -> RecordingHooks:
    recording = RecordingHooks(bank, lambda: server.url)
    server.hooks = server.api.hooks = recording
    return recording


@pytest.fixture
def gl(server: ItemBankServer):
    client = gitlab.Gitlab(server.url, private_token=TOKEN, retry_transient_errors=False)
    yield client
    client.session.close()


@pytest.fixture
def item(bank: ItemBank) -> dict:
    return bank.create_project(GROUP, "400100", files={"item.json": ITEM}, committed_at=utc(2021, 6, 1, 8, 0))


def clone_item(url: str, home: Path, target: str) -> dict:
    run_git("clone", "--quiet", url, str(home / target), env=git_env(home))
    return json.loads((home / target / "item.json").read_text())


def git_url_is_gone(url: str, home: Path) -> bool:
    result = run_git("ls-remote", url, env=git_env(home), check=False)
    return result.returncode != 0 and "not found" in result.stderr.lower()


def test_create_answers_201_with_the_project_and_an_empty_repository(api, gl, bank, hooks, home):
    group_id = bank.create_group(GROUP)["id"]
    created = gl.projects.create({"name": "Item 400001", "path": "400001", "namespace_id": group_id})
    assert (created.path, created.name, created.path_with_namespace) == ("400001", "Item 400001", f"{GROUP}/400001")
    assert created.namespace["id"] == group_id and created.empty_repo is True and created.archived is False
    assert gl.projects.get(f"{GROUP}/400001").id == created.id
    assert run_git("ls-remote", created.http_url_to_repo, env=git_env(home)).stdout == ""
    assert [(e[0], e[1]["id"], e[3]) for e in hooks.events] == [("project_create", created.id, None)]

    raw = api.post("/projects", json={"name": "Item 400002", "namespace_id": group_id})
    assert raw.status_code == 201 and raw.json()["path"] == "item-400002"  # path derived from the name


@pytest.mark.parametrize(
    ("payload", "status", "body"),
    [
        ({"name": "400100", "path": "400100"}, 400, {"message": {"name": TAKEN, "path": TAKEN}}),
        ({"name": "Other", "path": "400100"}, 400, {"message": {"path": TAKEN}}),
        ({"name": "Bad", "path": "-bad.git"}, 400, {"message": {"path": [PATH_FORMAT]}}),
        ({"namespace_id": None}, 400, {"error": "name, path are missing, at least one parameter must be provided"}),
        ({"name": "Lost", "namespace_id": 9999}, 400, {"message": {"namespace": ["is not valid"]}}),
        ({"name": "Lost", "namespace_id": "x"}, 400, {"error": "namespace_id is invalid"}),
    ],
)
def test_invalid_creates_answer_like_gitlab_and_create_nothing(api, bank, item, hooks, payload, status, body):
    request = {"namespace_id": item["namespace"]["id"], **payload}
    response = api.post("/projects", json={k: v for k, v in request.items() if v is not None})
    assert (response.status_code, response.json()) == (status, body)
    assert [p["id"] for p in bank.projects(GROUP)] == [item["id"]]
    assert hooks.events == []


def test_rename_moves_the_repository_and_the_old_path_is_gone(gl, bank, item, hooks, home):
    project = gl.projects.get(item["id"])
    old_url = project.http_url_to_repo
    project.name = "Item renamed"
    project.path = "400100-renamed"
    project.save()
    assert (project.name, project.path_with_namespace) == ("Item renamed", f"{GROUP}/400100-renamed")
    assert gl.projects.get(f"{GROUP}/400100-renamed").id == item["id"]
    with pytest.raises(gitlab.GitlabGetError) as missing:
        gl.projects.get(f"{GROUP}/400100")
    assert missing.value.response_code == 404
    assert project.http_url_to_repo != old_url and git_url_is_gone(old_url, home)
    assert clone_item(project.http_url_to_repo, home, "renamed") == ITEM
    assert (bank.repos_dir / GROUP / "400100-renamed.git").is_dir()
    assert not (bank.repos_dir / GROUP / "400100.git").exists()
    assert [(e[0], e[1]["path_with_namespace"], e[3]) for e in hooks.events] == [
        ("project_rename", f"{GROUP}/400100-renamed", f"{GROUP}/400100")
    ]

    project.name = "Only the name"
    project.save()
    assert gl.projects.get(item["id"]).name == "Only the name"
    assert len(hooks.events) == 1  # a name alone moves nothing: no project_rename


def test_rename_to_a_taken_path_is_400_and_changes_nothing(api, bank, item, hooks):
    other = bank.create_project(GROUP, "400101")
    response = api.session.put(api.url(f"/projects/{other['id']}"), json={"path": "400100"}, timeout=10)
    assert (response.status_code, response.json()) == (400, {"message": {"path": ["has already been taken"]}})
    assert bank.project(other["id"])["path"] == "400101" and hooks.events == []
    empty = api.session.put(api.url(f"/projects/{other['id']}"), json={}, timeout=10)
    assert empty.status_code == 400 and "at least one parameter must be provided" in empty.json()["error"]


def test_transfer_moves_the_project_to_another_group(api, gl, bank, item, hooks, home):
    target = bank.create_group("iat-retired")
    project = gl.projects.get(item["id"])
    project.transfer("iat-retired")
    moved = gl.projects.get(item["id"])
    assert moved.path_with_namespace == "iat-retired/400100" and moved.namespace["id"] == target["id"]
    assert [p.id for p in gl.groups.get("iat-retired").projects.list(get_all=True)] == [item["id"]]
    assert gl.groups.get(GROUP).projects.list(get_all=True) == []
    assert git_url_is_gone(project.http_url_to_repo, home)
    assert clone_item(moved.http_url_to_repo, home, "moved") == ITEM
    assert [(e[0], e[1]["path_with_namespace"], e[3]) for e in hooks.events] == [
        ("project_transfer", "iat-retired/400100", f"{GROUP}/400100")
    ]

    again = api.session.put(api.url(f"/projects/{item['id']}/transfer"), json={"namespace": target["id"]}, timeout=10)
    assert (again.status_code, again.json()) == (
        400,
        {"message": 'Failed to transfer project {:new_namespace=>["Project is already in this namespace."]}'},
    )
    nowhere = api.session.put(api.url(f"/projects/{item['id']}/transfer"), json={"namespace": "no-such"}, timeout=10)
    assert (nowhere.status_code, nowhere.json()) == (404, {"message": "404 Namespace Not Found"})


def test_transfer_onto_a_taken_path_is_400(api, bank, item, hooks):
    bank.create_project("iat-retired", "400100")
    url = api.url(f"/projects/{item['id']}/transfer")
    response = api.session.put(url, data={"namespace": "iat-retired"}, timeout=10)  # form-encoded
    assert response.status_code == 400
    assert response.json() == {
        "message": 'Failed to transfer project {:new_namespace=>["Project with same name or path in target namespace'
        ' already exists"]}'
    }
    assert bank.project(item["id"])["path_with_namespace"] == f"{GROUP}/400100" and hooks.events == []


def test_archive_and_unarchive_answer_201_and_archived_projects_stay_listed(api, gl, item, hooks):
    project = gl.projects.get(item["id"])
    project.archive()
    assert project.archived is True
    listed = lambda **params: [p.id for p in gl.groups.get(GROUP).projects.list(get_all=True, **params)]  # noqa: E731
    assert listed() == [item["id"]] and listed(archived=True) == [item["id"]] and listed(archived=False) == []
    project.unarchive()
    assert project.archived is False and gl.projects.get(item["id"]).archived is False
    raw = api.post(f"/projects/{item['id']}/archive")
    assert raw.status_code == 201 and raw.json()["archived"] is True
    assert hooks.events == []


def test_delete_answers_202_and_removes_the_project_at_once(api, gl, bank, item, hooks, home):
    project = gl.projects.get(item["id"])
    response = api.delete(f"/projects/{item['id']}")
    assert (response.status_code, response.json()) == (202, {"message": "202 Accepted"})
    with pytest.raises(gitlab.GitlabGetError) as missing:
        gl.projects.get(item["id"])
    assert missing.value.response_code == 404
    assert git_url_is_gone(project.http_url_to_repo, home)
    assert not (bank.repos_dir / GROUP / "400100.git").exists()
    assert [(e[0], e[1]) for e in hooks.events] == [("project_destroy", item)]
    with pytest.raises(gitlab.GitlabDeleteError) as again:
        project.delete()
    assert again.value.response_code == 404


def test_store_level_changes_fire_no_hooks(bank, item, hooks):
    other = bank.create_group("iat-other")
    bank.rename_project(item["id"], name="Renamed", path="400100-r")
    bank.transfer_project(item["id"], other)
    bank.set_archived(item["id"], True)
    assert bank.project(item["id"])["path_with_namespace"] == "iat-other/400100-r"
    assert (bank.repos_dir / "iat-other" / "400100-r.git").is_dir()
    bank.delete_project(item["id"])
    assert hooks.events == []
