"""Git smart HTTP through real ``git`` clients: clone, history, credentials, protocol versions, refusals.

Pushes and per-role refusals: test_git_push.py.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import requests
from itembank_helpers import GROUP, TOKEN, basic_auth_header, git_env, run_git, utc

from itembank_server import ItemBank

ITEM_V1 = {"id": "205030", "type": "mc", "version": "iat-5", "workflow": {"workflowStatusCode": "Draft"}}
ITEM_V2 = {**ITEM_V1, "workflow": {"workflowStatusCode": "Operational"}}
PACIFIC = timezone(timedelta(hours=-7))
HISTORY = [
    ("Jane Author", "jane@example.com", "Create item", utc(2019, 3, 4, 10, 30, 15)),
    ("Wei Chen", "wei.chen@example.net", "Update README.md", datetime(2019, 3, 5, 9, 0, 0, tzinfo=PACIFIC)),
    ("María García", "maria@example.org", "Update workflow status", datetime(2020, 1, 2, 23, 59, 59, tzinfo=PACIFIC)),
]


@pytest.fixture
def project(bank: ItemBank) -> dict:
    (name, email, message, when) = HISTORY[0]
    created = bank.create_project(
        GROUP,
        "205030",
        files={"item.json": ITEM_V1},
        author_name=name,
        author_email=email,
        message=message,
        committed_at=when,
    )
    name, email, message, when = HISTORY[1]
    bank.push_commit(
        created["id"],
        {"README.md": "# 205030\n"},
        message=message,
        author_name=name,
        author_email=email,
        committed_at=when,
    )
    name, email, message, when = HISTORY[2]
    bank.push_commit(
        created["id"], {"item.json": ITEM_V2}, message=message, author_name=name, author_email=email, committed_at=when
    )
    return created


def repo_url(server, path: str = "205030", credentials: str = "") -> str:
    parts = urlsplit(server.url)
    return f"{parts.scheme}://{credentials}{parts.netloc}/{GROUP}/{path}.git"


def git_log(clone, *paths: str) -> list[tuple[str, str, str, datetime]]:
    out = run_git("log", "--format=%an%x00%ae%x00%s%x00%aI", "--", *paths, env=git_env(clone), cwd=clone).stdout
    rows = [line.split("\x00") for line in out.splitlines()]
    return [(name, email, subject, datetime.fromisoformat(date)) for name, email, subject, date in rows]


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_clone_gives_the_item_json_and_its_history(server, project, home, tmp_path, protocol):
    clone = tmp_path / "clone"
    run_git("-c", f"protocol.version={protocol}", "clone", repo_url(server), str(clone), env=git_env(home))
    assert json.loads((clone / "item.json").read_text()) == ITEM_V2
    assert (clone / "item.json").read_bytes() == server.bank.read_file(project["id"], "item.json")
    assert git_log(clone) == [tuple(c) for c in reversed(HISTORY)]
    assert git_log(clone, "item.json") == [tuple(HISTORY[2]), tuple(HISTORY[0])]
    head = run_git("rev-parse", "HEAD", env=git_env(home), cwd=clone).stdout.strip()
    assert head == server.bank.head(project["id"])
    assert run_git("rev-parse", "--abbrev-ref", "HEAD", env=git_env(home), cwd=clone).stdout.strip() == "main"


def test_credentials_in_the_url_are_accepted_after_the_basic_challenge(server, project, home):
    out = run_git("ls-remote", repo_url(server, credentials=f"oauth2:{TOKEN}@"), env=git_env(home, token=None)).stdout
    assert f"{server.bank.head(project['id'])}\trefs/heads/main" in out.splitlines()


def test_partial_clone_with_a_blob_filter(server, project, home, tmp_path):
    clone = tmp_path / "partial"
    run_git("clone", "--filter=blob:none", "--no-checkout", repo_url(server), str(clone), env=git_env(home))
    assert (
        run_git("config", "remote.origin.partialclonefilter", env=git_env(home), cwd=clone).stdout.strip()
        == "blob:none"
    )
    missing = run_git("rev-list", "--objects", "--missing=print", "HEAD", env=git_env(home), cwd=clone).stdout
    assert any(line.startswith("?") for line in missing.splitlines())


def test_fetch_sees_new_commits_and_shallow_fetch_works(server, bank, project, home, tmp_path):
    clone = tmp_path / "shallow"
    run_git("clone", "--depth=1", repo_url(server), str(clone), env=git_env(home))
    assert run_git("rev-list", "--count", "HEAD", env=git_env(home), cwd=clone).stdout.strip() == "1"
    sha = bank.push_commit(project["id"], {"item.json": {**ITEM_V2, "version": "iat-6"}}, committed_at=utc(2021, 6, 1))
    run_git("pull", "--ff-only", env=git_env(home), cwd=clone)
    assert run_git("rev-parse", "HEAD", env=git_env(home), cwd=clone).stdout.strip() == sha
    assert json.loads((clone / "item.json").read_text())["version"] == "iat-6"


def test_protocol_v2_header_is_passed_to_the_backend(server, project):
    headers = {"Authorization": basic_auth_header(), "Git-Protocol": "version=2"}
    v2 = requests.get(
        f"{repo_url(server)}/info/refs", params={"service": "git-upload-pack"}, headers=headers, timeout=10
    )
    assert v2.status_code == 200
    assert v2.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert b"version 2" in v2.content
    v0 = requests.get(
        f"{repo_url(server)}/info/refs",
        params={"service": "git-upload-pack"},
        headers={"Authorization": basic_auth_header()},
        timeout=10,
    )
    assert b"version 2" not in v0.content and b"refs/heads/main" in v0.content


def pkt_line(text: str) -> bytes:
    return f"{len(text) + 4:04x}{text}".encode()


def upload_pack_request(sha: str) -> bytes:
    return pkt_line(f"want {sha} ofs-delta\n") + b"0000" + pkt_line("done\n")


@pytest.mark.parametrize("encoding", ["identity", "gzip", "chunked"])
def test_upload_pack_accepts_plain_gzip_and_chunked_bodies(server, project, encoding):
    body = upload_pack_request(server.bank.head(project["id"]))
    headers = {"Authorization": basic_auth_header(), "Content-Type": "application/x-git-upload-pack-request"}
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    data = iter([body[:10], body[10:]]) if encoding == "chunked" else body
    response = requests.post(f"{repo_url(server)}/git-upload-pack", data=data, headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-upload-pack-result"
    assert b"PACK" in response.content


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": basic_auth_header("wrong-token")}, {"PRIVATE-TOKEN": TOKEN}],
    ids=["none", "wrong-password", "api-header-only"],
)
def test_git_without_valid_basic_credentials_is_401(server, project, headers):
    response = requests.get(
        f"{repo_url(server)}/info/refs", params={"service": "git-upload-pack"}, headers=headers, timeout=10
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="GitLab"'


def test_git_client_without_credentials_fails_authentication(server, project, home):
    result = run_git("ls-remote", repo_url(server), env=git_env(home, token=None), check=False)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr or "could not read Username" in result.stderr


def test_any_username_works_with_the_token_as_password(server, project):
    headers = {"Authorization": basic_auth_header(TOKEN, user="anything")}
    response = requests.get(
        f"{repo_url(server)}/info/refs", params={"service": "git-upload-pack"}, headers=headers, timeout=10
    )
    assert response.status_code == 200


def test_unknown_and_deleted_projects_are_404_over_git_and_api(server, bank, project, home, api):
    unknown = run_git("ls-remote", repo_url(server, "999999"), env=git_env(home), check=False)
    assert unknown.returncode != 0 and "not found" in unknown.stderr
    bank.delete_project(project["id"])
    info_refs = requests.get(
        f"{repo_url(server)}/info/refs",
        params={"service": "git-upload-pack"},
        headers={"Authorization": basic_auth_header()},
        timeout=10,
    )
    assert info_refs.status_code == 404
    deleted = run_git("clone", repo_url(server), str(home / "gone"), env=git_env(home), check=False)
    assert deleted.returncode != 0 and "not found" in deleted.stderr
    assert api.get(f"/projects/{project['id']}").status_code == 404
    assert not bank.repo_path(project).exists()


def test_repository_path_without_dot_git_redirects_like_gitlab(server, project, home):
    response = requests.get(
        f"{server.url}/{GROUP}/205030/info/refs",
        params={"service": "git-upload-pack"},
        headers={"Authorization": basic_auth_header()},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 301
    assert response.headers["Location"] == f"{repo_url(server)}/info/refs?service=git-upload-pack"
    out = run_git("ls-remote", f"{server.url}/{GROUP}/205030", env=git_env(home)).stdout
    assert "refs/heads/main" in out


def test_empty_project_clones_as_an_empty_repository(server, bank, home, tmp_path):
    bank.create_project(GROUP, "300000")
    result = run_git("clone", repo_url(server, "300000"), str(tmp_path / "empty"), env=git_env(home))
    assert "empty repository" in result.stderr
