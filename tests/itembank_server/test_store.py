"""The persistent store: groups, projects, commits, hooks, and a restart on the same root."""

from __future__ import annotations

import json

import pytest
import requests
from itembank_helpers import GROUP, TOKEN, utc

from itembank_server import ItemBank, ItemBankServer, NotFoundError, ProjectExistsError


def test_create_group_is_idempotent_and_creates_parents(bank):
    child = bank.create_group("parent/child")
    assert bank.create_group("parent/child") == child
    parent = bank.group("parent")
    assert child["parent_id"] == parent["id"] and parent["parent_id"] is None
    assert bank.group(child["id"]) == bank.group("Parent/Child") == child, "lookups by id and case-insensitive path"
    with pytest.raises(ValueError):
        bank.create_group("bad path")


def test_project_ids_are_gitlab_ids_not_item_ids(bank):
    project = bank.create_project(GROUP, "205030", files={"item.json": {"id": "205030"}})
    assert project["path"] == "205030" and project["id"] != 205030
    assert bank.project(project["id"]) == bank.project(f"{GROUP}/205030") == project
    with pytest.raises(ProjectExistsError):
        bank.create_project(GROUP, "205030", files={"item.json": {}})
    with pytest.raises(NotFoundError):
        bank.project(987654)


def test_file_values_are_stored_as_json_text_or_bytes(bank):
    files = {"item.json": {"id": "1", "prompt": "¿Qué?"}, "README.md": "# Item\n", "asl/video.MP4": b"\x00\x01binary"}
    project = bank.create_project(GROUP, "1", files=files)
    assert json.loads(bank.read_file(project["id"], "item.json")) == files["item.json"]
    assert bank.read_file(project["id"], "README.md") == b"# Item\n"
    assert bank.read_file(project["id"], "asl/video.MP4") == b"\x00\x01binary"
    assert bank.read_file(project["id"], "missing.txt") is None


def test_push_commit_adds_deletes_and_reports_history(bank):
    project = bank.create_project(
        GROUP,
        "2",
        files={"item.json": {"v": 1}, "old.txt": "x"},
        author_name="A One",
        author_email="a@example.com",
        committed_at=utc(2020, 1, 1),
    )
    first = bank.head(project["id"])
    sha = bank.push_commit(
        project["id"],
        {"item.json": {"v": 2}},
        delete=["old.txt"],
        message="Second",
        author_name="B Two",
        author_email="b@example.com",
        committed_at=utc(2020, 2, 1),
    )
    assert sha == bank.head(project["id"]) != first
    assert bank.read_file(project["id"], "old.txt") is None
    history = bank.log(project["id"])
    assert [(c["sha"], c["author_name"], c["message"], c["authored_at"]) for c in history] == [
        (sha, "B Two", "Second", utc(2020, 2, 1)),
        (first, "A One", "Create item", utc(2020, 1, 1)),
    ]
    assert bank.project(project["id"])["last_activity_at"] == "2020-02-01T00:00:00.000Z"


def test_branches_start_from_the_default_branch(bank):
    project = bank.create_project(GROUP, "3", files={"item.json": {"v": 1}})
    main = bank.head(project["id"])
    sha = bank.push_commit(project["id"], {"notes.txt": "draft"}, branch="feature")
    assert bank.head(project["id"], branch="feature") == sha
    assert bank.head(project["id"]) == main
    assert [c["sha"] for c in bank.log(project["id"], ref="refs/heads/feature")] == [sha, main]


def test_empty_project_has_no_head_until_the_first_push(bank):
    project = bank.create_project(GROUP, "4")
    assert project["empty_repo"] is True and bank.head(project["id"]) is None
    sha = bank.push_commit(project["id"], {"item.json": {"id": "4"}})
    assert bank.head(project["id"]) == sha and bank.project(project["id"])["empty_repo"] is False


def test_hooks_keep_their_token_and_go_with_the_project(bank):
    project = bank.create_project(GROUP, "5", files={"item.json": {}})
    hook = bank.add_hook(project["id"], "http://example.com/h", token="secret", push_events=True)
    assert bank.hooks(project["id"]) == [hook] and hook["token"] == "secret"
    assert bank.remove_hooks(project["id"]) == 1 and bank.hooks(project["id"]) == []
    bank.add_hook(project["id"], "http://example.com/h")
    bank.delete_project(project["id"])
    with pytest.raises(NotFoundError):
        bank.hooks(project["id"])


def test_a_restarted_bank_serves_the_same_projects(tmp_path):
    root = tmp_path / "bank"
    first = ItemBank(root)
    project = first.create_project(GROUP, "205030", files={"item.json": {"id": "205030"}}, committed_at=utc(2022, 3, 3))
    first.add_hook(project["id"], "http://example.com/h", token="kept")
    head = first.head(project["id"])
    first.close()

    second = ItemBank(root)
    assert second.project(project["id"]) == project
    assert [p["id"] for p in second.projects(GROUP)] == [project["id"]]
    assert second.head(project["id"]) == head
    assert second.hooks(project["id"])[0]["token"] == "kept"
    newer = second.create_project(GROUP, "205031", files={"item.json": {}})
    assert newer["id"] > project["id"]
    with ItemBankServer(second, tokens={TOKEN}) as server:
        response = requests.get(
            f"{server.url}/api/v4/projects/{project['id']}", headers={"PRIVATE-TOKEN": TOKEN}, timeout=10
        )
        assert response.json()["path_with_namespace"] == f"{GROUP}/205030"
    second.close()


def test_server_requires_tokens(bank, monkeypatch):
    monkeypatch.delenv("ITEMBANK_TOKENS", raising=False)
    with pytest.raises(ValueError):
        ItemBankServer(bank)
    monkeypatch.setenv("ITEMBANK_TOKENS", "one, two")
    server = ItemBankServer(bank)
    assert server.tokens == {"one", "two"}
    server.stop()
