"""The GitLab client against the GitLab-compatible server: pagination, retries, faults, errors."""

from __future__ import annotations

import pytest

from imrt_sync.config import GitLabSettings
from imrt_sync.gitlab import GitLabClient, GitLabError
from itembank_server import ItemBank, ItemBankServer

TOKEN = "glpat-client-test-token"
GROUP = "iat-client"
PROJECTS = 230  # three pages of 100


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    bank = ItemBank(tmp_path_factory.mktemp("bank"))
    bank.create_group(GROUP)
    bank.create_group("iat-client-old")
    for n in range(PROJECTS):
        bank.create_project(GROUP, str(300000 + n))
    bank.create_project("iat-client-old", "399999")
    yield bank
    bank.close()


@pytest.fixture
def server(bank):
    with ItemBankServer(bank, tokens={TOKEN}) as server:
        yield server


def client(server, token=TOKEN, **overrides) -> GitLabClient:
    settings = dict(base_url=server.url, token=token, read_timeout=5, retries=4, backoff_factor=0.01, allow_http=True)
    return GitLabClient(GitLabSettings(**{**settings, **overrides}))


def test_group_projects_pages_through_every_project_of_the_exact_group(server):
    with client(server) as gitlab:
        projects = list(gitlab.group_projects(GROUP))
    assert len(projects) == PROJECTS
    assert [p["path"] for p in projects] == [str(300000 + n) for n in range(PROJECTS)]
    assert server.counters() == {"GET /api/v4/groups/:id/projects": 3}


def test_an_unknown_group_is_a_clear_error(server):
    with client(server) as gitlab, pytest.raises(GitLabError, match="answered 404: 404 Group Not Found"):
        list(gitlab.group_projects("iat-nowhere"))


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": 1},
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 503},
        {"kind": "drop"},
    ],
    ids=["429-retry-after", "500", "503", "dropped-connection"],
)
def test_listing_retries_transient_faults(server, fault):
    server.faults.add("GET /api/v4/groups/:id/projects", times=2, **fault)
    with client(server) as gitlab:
        projects = list(gitlab.group_projects(gitlab.group(GROUP)["id"]))
    assert len(projects) == PROJECTS
    assert server.counters()["GET /api/v4/groups/:id/projects"] == 3 + 2  # two failed tries, then every page


def test_listing_that_keeps_failing_raises_without_a_partial_result(server):
    server.faults.add("GET /api/v4/groups/:id/projects", "status", status=500)
    with client(server) as gitlab, pytest.raises(GitLabError, match="answered 500"):
        list(gitlab.group_projects(gitlab.group(GROUP)["id"]))


def test_a_page_shorter_than_announced_is_an_error(server):
    server.faults.add("GET /api/v4/groups/:id/projects", "truncate", times=1)
    with client(server) as gitlab, pytest.raises(GitLabError, match=f"announced {PROJECTS} records but returned"):
        list(gitlab.group_projects(gitlab.group(GROUP)["id"]))


def test_a_slow_answer_times_out_and_is_retried(server):
    server.faults.add("GET /api/v4/projects/:id", "latency", seconds=2, times=1)
    with client(server, read_timeout=0.5) as gitlab:
        assert gitlab.project(1)["id"] == 1
    assert server.counters()["GET /api/v4/projects/:id"] == 2


def test_wrong_token_is_a_clear_error_that_does_not_contain_the_token(server):
    wrong = "glpat-wrong-token-value"
    with client(server, token=wrong) as gitlab, pytest.raises(GitLabError) as error:
        gitlab.group(GROUP)
    assert "401" in str(error.value)
    assert wrong not in str(error.value) and TOKEN not in str(error.value)


def test_unknown_project_is_none_and_unknown_group_an_error(server):
    with client(server) as gitlab:
        assert gitlab.project(999999) is None
        with pytest.raises(GitLabError, match="404"):
            gitlab.group("no-such-group")


def test_hook_creation_sets_push_events_ssl_and_secret_and_is_not_repeated_on_500(server, bank):
    with client(server) as gitlab:
        created = gitlab.create_hook(5, "https://imrt.example.org/webHook", "s3cret")
        assert "token" not in created
        assert gitlab.hooks(5) == [created]
        server.faults.add("POST /api/v4/projects/:id/hooks", "status", status=500, times=1)
        with pytest.raises(GitLabError, match="answered 500"):
            gitlab.create_hook(6, "https://imrt.example.org/webHook", "s3cret")
    stored = bank.hooks(5)[0]
    assert stored["token"] == "s3cret" and stored["push_events"] and stored["enable_ssl_verification"]
    assert server.counters()["POST /api/v4/projects/:id/hooks"] == 2
    bank.remove_hooks(5)


def test_hook_creation_is_retried_on_429(server, bank):
    server.faults.add("POST /api/v4/projects/:id/hooks", "status", status=429, retry_after=1, times=1)
    with client(server) as gitlab:
        gitlab.create_hook(7, "https://imrt.example.org/webHook", "")
    assert len(bank.hooks(7)) == 1
    assert server.counters()["POST /api/v4/projects/:id/hooks"] == 2
    bank.remove_hooks(7)
