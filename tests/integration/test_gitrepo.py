"""Item repositories over real git smart HTTP from the GitLab-compatible server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imrt_sync.gitrepo import GitAccess, GitFetchError, ItemRepository, first_create_branch, remote_heads

TOKEN = "glpat-git-test-token-value"
BANK = {"iat-git": []}  # each test makes its own project


def repo_url(server, project) -> str:
    return f"{server.url}/iat-git/{project['path']}.git"


def when(day: int) -> datetime:
    return datetime(2024, 1, day, 9, 30, tzinfo=UTC)


def test_fetch_reads_the_head_and_lists_only_new_item_json_commits(bank, server, tmp_path):
    project = bank.create_project(
        "iat-git", "205030", files={"item.json": {"id": "205030"}}, author_name="Ann", committed_at=when(1)
    )
    first = bank.head(project["id"])
    bank.push_commit(project["id"], files={"README.md": "notes"}, author_name="Bob", committed_at=when(2))
    second = bank.push_commit(
        project["id"], files={"item.json": {"id": "205030", "v": 2}}, author_name="Cid", committed_at=when(3)
    )
    access = GitAccess(TOKEN, timeout=60, origin=server.url)
    url = repo_url(server, project)
    heads = remote_heads(url, access)
    assert heads["main"] == second and "no-such-branch" not in heads

    with ItemRepository(tmp_path / "cache", project["id"], url, access) as repo:
        head = repo.fetch("main")
        assert head.sha == second and head.author_name == "Cid" and head.committed_at == when(3)
        assert b'"v": 2' in repo.read(head.sha, "item.json", 10_000)
        assert repo.read(head.sha, "missing.json", 10_000) is None
        with pytest.raises(ValueError, match="more than the limit of 5"):
            repo.read(head.sha, "item.json", 5)
        shas = lambda history: [c.sha for c in history.commits]  # noqa: E731
        complete = repo.item_history(head.sha, "item.json", None)
        assert shas(complete) == [first, second] and not complete.incremental
        after_first = repo.item_history(head.sha, "item.json", first)
        assert shas(after_first) == [second] and after_first.incremental
        assert repo.item_history(head.sha, "item.json", second).commits == ()
        unknown = repo.item_history(head.sha, "item.json", "0" * 40)
        assert shas(unknown) == [first, second] and not unknown.incremental

    third = bank.push_commit(project["id"], files={"item.json": {"id": "205030", "v": 3}}, author_name="Dee")
    server.reset_counters()
    with ItemRepository(tmp_path / "cache", project["id"], url, access) as repo:
        assert repo.fetch("main").sha == third
        assert [c.sha for c in repo.item_history(third, "item.json", second).commits] == [third]

    config = (tmp_path / "cache" / f"{project['id']}.git" / "config").read_text()
    assert TOKEN not in config and "extraHeader" not in config


def test_wrong_token_fails_clearly_without_revealing_any_token(bank, server, tmp_path):
    project = bank.create_project("iat-git", "205031", files={"item.json": "{}"})
    wrong = "glpat-not-the-right-one"
    with pytest.raises(GitFetchError) as error:
        remote_heads(repo_url(server, project), GitAccess(wrong, timeout=30, origin=server.url))
    assert wrong not in str(error.value) and TOKEN not in str(error.value)
    wrong_access = GitAccess(wrong, origin=server.url)
    with (
        ItemRepository(tmp_path / "cache", project["id"], repo_url(server, project), wrong_access) as repo,
        pytest.raises(GitFetchError, match="failed"),
    ):
        repo.fetch("main")


def test_a_fetch_that_fails_once_is_retried_from_a_clean_clone(bank, server, tmp_path):
    project = bank.create_project("iat-git", "205032", files={"item.json": "{}"})
    cache = tmp_path / "cache"
    broken = cache / f"{project['id']}.git"
    broken.mkdir(parents=True)
    (broken / "HEAD").write_text("garbage")
    with ItemRepository(cache, project["id"], repo_url(server, project), GitAccess(TOKEN, origin=server.url)) as repo:
        assert repo.fetch("main").sha == bank.head(project["id"])


def test_one_ref_advertisement_gives_every_branch_and_the_create_branch_is_fetched_beside_the_default(
    bank, server, tmp_path
):
    project = bank.create_project("iat-git", "205033", files={"README.md": "# Item 205033\n"}, committed_at=when(1))
    readme = bank.head(project["id"])
    on_bob = bank.push_commit(
        project["id"], files={"item.json": {"id": "205033"}}, branch="create_bob", committed_at=when(2)
    )
    on_ann = bank.push_commit(
        project["id"], files={"item.json": {"id": "205033", "by": "ann"}}, branch="create_ann", committed_at=when(3)
    )
    access = GitAccess(TOKEN, timeout=60, origin=server.url)
    url = repo_url(server, project)
    heads = remote_heads(url, access)
    assert heads == {"main": readme, "create_bob": on_bob, "create_ann": on_ann}
    assert first_create_branch(heads) == "create_ann"
    assert first_create_branch(["main", "feature"]) is None

    with ItemRepository(tmp_path / "cache", project["id"], url, access) as repo:
        default = repo.fetch("main")
        assert not repo.has_file(default.sha, "item.json") and repo.has_file(default.sha, "README.md")
        created = repo.fetch("create_ann")
        assert created.sha == on_ann and repo.has_file(created.sha, "item.json")
        assert [c.sha for c in repo.item_history(created.sha, "item.json", None).commits] == [on_ann]
        assert repo.fetch("main").sha == readme, "fetching the create branch leaves the default branch alone"
