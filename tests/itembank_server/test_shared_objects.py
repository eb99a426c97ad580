"""A bank generated with shared objects (one fast-import, repositories linked by git alternates): the same commits
as the generator's one-repository-at-a-time writing, served correctly over git smart HTTP, REST and GraphQL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
from itembank_helpers import TOKEN, Api, git_env, run_git

from itembank_server import ItemBank, ItemBankServer, generate_bank

GROUP = "iat-dev"
COUNT = 50
SEED = 7
STATE = """
query State($ids: [ID!]) {
  projects(ids: $ids, first: 100) {
    nodes { id repository { rootRef blobs(paths: ["item.json"]) { nodes { oid } } commit(ref: "HEAD") { sha } } }
  }
}
"""


def generated(root: Path, *, shared_objects: bool) -> tuple[ItemBank, list[dict]]:
    bank = ItemBank(root)
    bank.create_group(GROUP)
    return bank, generate_bank(bank, GROUP, count=COUNT, seed=SEED, shared_objects=shared_objects)


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    shared, shared_projects = generated(tmp_path_factory.mktemp("shared"), shared_objects=True)
    separate, separate_projects = generated(tmp_path_factory.mktemp("separate"), shared_objects=False)
    yield shared, shared_projects, separate, separate_projects
    shared.close()
    separate.close()


def git_dir(bank: ItemBank, project: dict, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={bank.repo_path(project)}", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_same_projects_branches_and_shas_as_one_repository_at_a_time(banks):
    shared, shared_projects, separate, separate_projects = banks
    assert [p["path"] for p in shared_projects] == [p["path"] for p in separate_projects]
    for mine, theirs in zip(shared_projects, separate_projects, strict=True):
        assert git_dir(shared, mine, "for-each-ref") == git_dir(separate, theirs, "for-each-ref")
    being_created = [p for p in shared_projects if "create_" in git_dir(shared, p, "for-each-ref")]
    assert being_created  # 2% of 50: the create branch pushed onto a linked repository works too
    linked = shared.repo_path(shared_projects[0])
    assert (linked / "objects" / "info" / "alternates").read_text().startswith("../")  # relative: copies work
    assert not list((linked / "objects").glob("pack/*.pack"))  # its objects are the shared store's


def test_every_object_is_there_and_a_copy_of_the_bank_still_works(banks, tmp_path):
    shared, shared_projects, _, _ = banks
    for project in shared_projects[:5]:
        git_dir(shared, project, "fsck", "--connectivity-only", "--no-dangling")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(shared.root), str(copy)], check=True)
    project = shared_projects[0]
    moved = copy / shared.repo_path(project).relative_to(shared.root)
    head = git_dir(shared, project, "rev-parse", "HEAD")
    assert (
        subprocess.run(
            ["git", f"--git-dir={moved}", "cat-file", "-t", head], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "commit"
    )


def test_served_over_git_rest_and_graphql(banks, tmp_path):
    shared, shared_projects, _, _ = banks
    home = tmp_path / "home"
    home.mkdir()
    env = git_env(home)
    with ItemBankServer(shared, tokens={TOKEN}) as server:
        api = Api(server)
        try:
            ids = [f"gid://gitlab/Project/{p['id']}" for p in shared_projects]
            answer = requests.post(
                f"{server.url}/api/graphql",
                json={"query": STATE, "variables": {"ids": ids}},
                headers={"PRIVATE-TOKEN": TOKEN},
                timeout=30,
            )
            answer.raise_for_status()
            nodes = {n["id"]: n["repository"] for n in answer.json()["data"]["projects"]["nodes"]}
            assert len(nodes) == COUNT
            for project in shared_projects:
                repository = nodes[f"gid://gitlab/Project/{project['id']}"]
                head = git_dir(shared, project, "rev-parse", "refs/heads/main")
                assert repository["rootRef"] == "main"
                assert repository["commit"]["sha"] == head
                blob = subprocess.run(
                    ["git", f"--git-dir={shared.repo_path(project)}", "rev-parse", "HEAD:item.json"],
                    capture_output=True,
                    text=True,
                )
                expected = [{"oid": blob.stdout.strip()}] if blob.returncode == 0 else []  # README-only heads
                assert repository["blobs"]["nodes"] == expected
                rest = api.get(f"/projects/{project['id']}").json()
                assert rest["default_branch"] == "main" and rest["empty_repo"] is False
            for project in shared_projects[:3]:
                clone = tmp_path / project["path"]
                run_git("clone", "--quiet", f"{server.url}/{GROUP}/{project['path']}.git", str(clone), env=env)
                assert run_git("rev-parse", "HEAD", cwd=clone, env=env).stdout.strip() == git_dir(
                    shared, project, "rev-parse", "HEAD"
                )
                run_git("fsck", "--no-dangling", cwd=clone, env=env)
        finally:
            api.session.close()
