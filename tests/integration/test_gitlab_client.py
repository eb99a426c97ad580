"""The GitLab client against the GitLab-compatible server: pagination, retries, faults, errors, where the token
may go."""

from __future__ import annotations

import http.server
import threading

import pytest
import requests

from imrt_sync.config import GitLabSettings, InsecureGitLabURL
from imrt_sync.gitlab import GitLabClient, GitLabError, GroupNotReadable
from imrt_sync.gitrepo import GitAccess, GitFetchError, ItemRepository, remote_heads
from imrt_sync.scope import GroupScope
from itembank_server import ItemBankServer

TOKEN = "glpat-client-test-token"
GROUP = "iat-client"
PROJECTS = 230  # three keyset pages of 100, then the empty page that ends a keyset listing
LISTING_REQUESTS = 4
BANK = {GROUP: [str(300000 + n) for n in range(PROJECTS)], "iat-client-old": ["399999"]}


def client(server, token=TOKEN, **overrides) -> GitLabClient:
    settings = {
        "base_url": server.url,
        "token": token,
        "read_timeout": 5,
        "retries": 4,
        "backoff_factor": 0.01,
        "allow_http": True,
    }
    return GitLabClient(GitLabSettings(**{**settings, **overrides}))


def test_group_projects_pages_through_every_project_of_the_exact_group(server):
    with client(server) as gitlab:
        projects = list(gitlab.group_projects(GroupScope(GROUP)))
    assert len(projects) == PROJECTS
    assert [p["path"] for p in projects] == [str(300000 + n) for n in range(PROJECTS)]
    assert server.counters() == {"GET /api/v4/groups/:id/projects": LISTING_REQUESTS}


def test_an_unknown_group_is_a_clear_error(server):
    with client(server) as gitlab, pytest.raises(GitLabError, match="answered 404: 404 Group Not Found"):
        list(gitlab.group_projects(GroupScope("iat-nowhere")))


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
        projects = list(gitlab.group_projects(GroupScope(GROUP)))
    assert len(projects) == PROJECTS
    assert server.counters()["GET /api/v4/groups/:id/projects"] == 2 + LISTING_REQUESTS  # two failed tries first


def test_listing_that_keeps_failing_raises_without_a_partial_result(server):
    server.faults.add("GET /api/v4/groups/:id/projects", "status", status=500)
    with client(server) as gitlab, pytest.raises(GitLabError, match="answered 500"):
        list(gitlab.group_projects(GroupScope(GROUP)))


def test_a_keyset_page_cut_short_loses_no_project(server):
    """The next keyset page starts after the last project received, whatever the page held."""
    server.faults.add("GET /api/v4/groups/:id/projects", "truncate", times=1, keep=10)
    with client(server) as gitlab:
        projects = list(gitlab.group_projects(GroupScope(GROUP)))
    assert server.faults.list() == []  # the page was cut short
    assert [p["path"] for p in projects] == [str(300000 + n) for n in range(PROJECTS)]


def test_an_offset_page_shorter_than_announced_is_an_error(server, bank):
    project = bank.project(f"{GROUP}/300001")
    for n in range(3):
        bank.add_hook(project["id"], f"https://imrt.example.org/hook{n}")
    server.faults.add("GET /api/v4/projects/:id/hooks", "truncate", times=1)
    try:
        with client(server) as gitlab, pytest.raises(GitLabError, match="announced 3 records but returned 2"):
            gitlab.hooks(project["id"])
    finally:
        bank.remove_hooks(project["id"])


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


def test_group_projects_asks_for_keyset_pagination_by_id(server):
    seen = []
    with client(server) as gitlab:
        gitlab._reads.hooks["response"].append(lambda response, **_: seen.append(response.request.url))
        list(gitlab.group_projects(GroupScope(GROUP)))
    assert "pagination=keyset" in seen[0] and "order_by=id" in seen[0] and "sort=asc" in seen[0]


def test_a_listing_past_gitlabs_count_limit_is_followed_to_its_end(bank):
    """Above the count limit offset pages carry no X-Total (nothing to check a listing against); the keyset listing
    never does, and ends with the empty page."""
    with ItemBankServer(bank, tokens={TOKEN}, count_limit=150) as limited:
        offset = requests.get(
            f"{limited.url}/api/v4/groups/{GROUP}/projects",
            params={"per_page": 100},
            headers={"PRIVATE-TOKEN": TOKEN},
            timeout=10,
        )
        assert "X-Total" not in offset.headers and "next" in offset.links
        limited.reset_counters()
        with client(limited) as gitlab:
            projects = list(gitlab.group_projects(GroupScope(GROUP)))
        assert [p["path"] for p in projects] == [str(300000 + n) for n in range(PROJECTS)]
        assert limited.counters() == {"GET /api/v4/groups/:id/projects": LISTING_REQUESTS}


class RecordingListener:
    """A second local HTTP listener (another port: another origin) that records the headers it receives."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                received.append(dict(self.headers))
                body = b"[]"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def elsewhere():
    with RecordingListener() as listener:
        yield listener


def test_a_next_link_to_another_host_is_refused_and_gets_no_token(server, elsewhere):
    first_page = [{"id": 1, "path": "300000", "namespace": {"full_path": GROUP}}]
    link = f'<{elsewhere.url}/api/v4/groups/{GROUP}/projects?page=2>; rel="next"'
    server.faults.add(
        "GET /api/v4/groups/:id/projects", "status", status=200, body=first_page, headers=[["Link", link]], times=1
    )
    with client(server) as gitlab, pytest.raises(GitLabError, match="refusing to send the access token to http://127"):
        list(gitlab.group_projects(GroupScope(GROUP)))
    assert elsewhere.received == []
    requests.get(f"{elsewhere.url}/probe", timeout=5)  # the listener works: it would have recorded a request
    assert len(elsewhere.received) == 1 and "PRIVATE-TOKEN" not in elsewhere.received[0]


def test_a_redirect_is_not_followed(server, elsewhere):
    server.faults.add(
        "GET /api/v4/projects/:id",
        "status",
        status=302,
        times=1,
        headers=[["Location", f"{elsewhere.url}/api/v4/projects/1"]],
    )
    with client(server) as gitlab, pytest.raises(GitLabError, match="answered 302 \\(a redirect\\): not followed"):
        gitlab.project(1)
    assert elsewhere.received == []


def test_git_sends_the_token_only_to_the_configured_gitlab(server, elsewhere, tmp_path):
    access = GitAccess(TOKEN, 10, origin=server.url)
    foreign = f"{elsewhere.url}/{GROUP}/300000.git"
    with pytest.raises(GitFetchError, match="refusing to send the access token to http://127.0.0.1:"):
        remote_heads(foreign, access)
    with pytest.raises(GitFetchError, match="refusing to send the access token"):
        ItemRepository(tmp_path / "cache", 1, foreign, access)
    assert elsewhere.received == []


def test_a_redirected_ref_advertisement_is_an_error(server, elsewhere):
    server.faults.add(
        "git info/refs",
        "status",
        status=302,
        times=1,
        headers=[["Location", f"{elsewhere.url}/{GROUP}/300000.git/info/refs"]],
    )
    url = f"{server.url}/{server.bank.project(1)['path_with_namespace']}.git"
    with pytest.raises(GitFetchError, match="HTTP 302"):
        remote_heads(url, GitAccess(TOKEN, 10, origin=server.url))
    assert elsewhere.received == []


def test_plain_http_is_refused_unless_allowed():
    with pytest.raises(InsecureGitLabURL, match="imrt_gitlab_allow_http"):
        GitLabSettings(base_url="http://gitlab.example.org", token=TOKEN)
    assert GitLabSettings(base_url="http://gitlab.example.org", token=TOKEN, allow_http=True).allow_http
    assert GitLabSettings(base_url="https://gitlab.example.org", token=TOKEN).origin == "https://gitlab.example.org:443"


def test_a_group_the_token_cannot_read_is_group_not_readable(server):
    server.faults.add("GET /api/v4/groups/:id", "status", status=404, body={"message": "404 Group Not Found"})
    with client(server) as gitlab, pytest.raises(GroupNotReadable) as error:
        gitlab.group(GROUP)
    assert str(error.value) == (
        f"GitLab group {GROUP} is not readable with the configured token (404 Group Not Found):"
        " lost access, wrong token or renamed group"
    )
