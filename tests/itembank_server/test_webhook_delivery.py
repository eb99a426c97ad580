"""Project hooks and system hooks delivered over real HTTP to listeners started by the tests."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import trustme
from itembank_helpers import GROUP, TOKEN

from itembank_server import CommitSpec, ItemBank, ItemBankServer
from itembank_server.__main__ import build_parser
from itembank_server.bank_repos import fast_import, run_git
from itembank_server.webhook_delivery import SystemHook

USER = {"id": 7, "username": "jdoe", "name": "Jane Doe", "email": "jane@example.com", "admin": False}
BLANK = "0" * 40
HOOK_TOKEN = "hook-secret-4711"
PUSH_FIELDS = {
    "object_kind", "event_name", "before", "after", "ref", "ref_protected", "checkout_sha", "message", "user_id",
    "user_name", "user_username", "user_email", "user_avatar", "project_id", "project", "commits",
    "total_commits_count", "push_options", "repository",
}  # fmt: skip


class Listener:
    """An HTTP(S) receiver on 127.0.0.1 recording every request; ``status`` and ``hold`` shape its answers."""

    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        self.status = 200
        self.hold = threading.Event()  # while ``holding`` is set, requests wait until ``hold`` is set
        self.holding = False
        self._lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if listener.holding:
                    listener.hold.wait(30)
                with listener._lock:
                    listener.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(listener.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if tls_context is not None:
            self._httpd.socket = tls_context.wrap_socket(self._httpd.socket, server_side=True)
        scheme = "https" if tls_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def received(self, path: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 2.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(path)
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise AssertionError(
            f"{len(self.received(path))} requests to {path or 'any path'} after {timeout}s, want {count}"
        )

    def close(self) -> None:
        self.hold.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    receiver = Listener()
    yield receiver
    receiver.close()


@pytest.fixture
def make_server(bank: ItemBank) -> Iterator[Callable[..., ItemBankServer]]:
    servers: list[ItemBankServer] = []

    def start(**options) -> ItemBankServer:
        servers.append(ItemBankServer(bank, tokens={TOKEN}, **options).start())
        return servers[-1]

    yield start
    for running in servers:
        running.stop()


@pytest.fixture
def project(bank: ItemBank) -> dict:
    return bank.create_project(GROUP, "item-1", {"item.json": {"id": 1}}, message="Create item 1")


def push_and_fire(server: ItemBankServer, project: dict, commits: list[CommitSpec], branch: str = "main") -> tuple:
    before = server.bank.head(project["id"], branch) or BLANK
    shas = server.bank.push_commits(project["id"], commits, branch=branch)
    server.hooks.push(server.bank.project(project["id"]), USER, before, shas[-1], f"refs/heads/{branch}")
    return before, shas


def fire_again(server: ItemBankServer, project: dict) -> None:
    """Fire a push event for the branch's last commit again (the failure tests need many events)."""
    head = server.bank.head(project["id"])
    server.hooks.push(project, USER, BLANK, head, "refs/heads/main")


def rest_hook(server: ItemBankServer, project: dict, hook: dict) -> dict:
    url = f"{server.url}/api/v4/projects/{project['id']}/hooks/{hook['id']}"
    response = requests.get(url, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    response.raise_for_status()
    return response.json()


def payload(request: dict) -> dict:
    return json.loads(request["body"])


# -- project hooks: push payload and headers -------------------------------------------------------------------


def test_a_push_delivers_gitlab_push_payload_with_every_header(make_server, project, listener):
    server = make_server()
    hook = server.bank.add_hook(project["id"], f"{listener.url}/hook", token=HOOK_TOKEN)
    commits = [
        CommitSpec({"item.json": {"id": 1, "v": 2}}, "Update item 1\n\nlonger body"),
        CommitSpec({"stimulus.txt": "text"}, "Add stimulus", delete=("item.json",)),
    ]
    before, shas = push_and_fire(server, project, commits)

    [request] = listener.wait_for(1)
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("GitLab/")
    assert headers["X-Gitlab-Event"] == "Push Hook"
    assert headers["X-Gitlab-Token"] == HOOK_TOKEN
    assert headers["X-Gitlab-Instance"] == server.url
    for name in ("X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID", "Idempotency-Key"):
        uuid.UUID(headers[name])
    body = payload(request)
    assert set(body) == PUSH_FIELDS
    web_url = f"{server.url}/{project['path_with_namespace']}"
    assert body["object_kind"] == body["event_name"] == "push"
    assert (body["before"], body["after"], body["checkout_sha"]) == (before, shas[-1], shas[-1])
    assert body["ref"] == "refs/heads/main" and body["ref_protected"] is True
    assert (body["user_id"], body["user_name"], body["user_username"], body["user_email"]) == (
        7, "Jane Doe", "jdoe", "jane@example.com",
    )  # fmt: skip
    assert body["user_avatar"].startswith("https://www.gravatar.com/avatar/")
    assert body["project_id"] == project["id"]
    assert body["project"]["path_with_namespace"] == project["path_with_namespace"]
    assert body["project"]["git_http_url"] == f"{web_url}.git"
    assert body["project"]["namespace"] == GROUP and body["project"]["default_branch"] == "main"
    assert body["repository"]["homepage"] == web_url and body["repository"]["name"] == "item-1"
    assert body["total_commits_count"] == 2 and body["push_options"] == {}
    first, second = body["commits"]
    assert [first["id"], second["id"]] == shas  # newest last
    assert first["message"] == "Update item 1\n\nlonger body\n" and first["title"] == "Update item 1"
    assert first["url"] == f"{web_url}/-/commit/{shas[0]}"
    assert first["timestamp"].endswith("+00:00")
    assert first["author"] == {"name": "Item Bank", "email": "itembank@example.com"}
    assert (first["added"], first["modified"], first["removed"]) == ([], ["item.json"], [])
    assert (second["added"], second["modified"], second["removed"]) == (["stimulus.txt"], [], ["item.json"])

    assert server.hooks.wait_idle(5)
    [record] = server.hooks.deliveries(hook_id=hook["id"])
    assert record["response_status"] == 200 and record["error"] is None
    assert record["event"] == "Push Hook" and record["trigger"] == "push_hooks"
    assert record["request_headers"]["X-Gitlab-Token"] == "[REDACTED]"
    assert json.loads(record["request_body"]) == body


def test_at_most_twenty_commits_are_listed_newest_last(make_server, project, listener):
    server = make_server()
    server.bank.add_hook(project["id"], f"{listener.url}/hook")
    _, shas = push_and_fire(server, project, [CommitSpec({"n.txt": str(n)}, f"Commit {n}") for n in range(25)])

    body = payload(listener.wait_for(1)[0])
    assert body["total_commits_count"] == 25
    assert [c["id"] for c in body["commits"]] == shas[-20:]


def test_hooks_without_push_events_or_with_a_non_matching_branch_filter_get_nothing(make_server, project, listener):
    server = make_server()
    add = server.bank.add_hook
    add(project["id"], f"{listener.url}/no-push-events", push_events=False)
    add(project["id"], f"{listener.url}/wildcard-miss", push_events_branch_filter="release/*")
    add(project["id"], f"{listener.url}/regex-miss", push_events_branch_filter="^feat", branch_filter_strategy="regex")
    add(project["id"], f"{listener.url}/wildcard-hit", push_events_branch_filter="ma*")
    add(project["id"], f"{listener.url}/regex-hit", push_events_branch_filter="ai", branch_filter_strategy="regex")
    add(project["id"], f"{listener.url}/all", push_events_branch_filter="x", branch_filter_strategy="all_branches")
    add(project["id"], f"{listener.url}/exact-miss", push_events_branch_filter="mai")
    push_and_fire(server, project, [CommitSpec({"a.txt": "a"})])

    assert server.hooks.wait_idle(5)
    assert sorted(r["path"] for r in listener.received()) == ["/all", "/regex-hit", "/wildcard-hit"]


def test_branch_deletion_has_no_checkout_sha_and_no_commits(make_server, project, listener):
    server = make_server()
    server.bank.add_hook(project["id"], f"{listener.url}/hook")
    [feature_head] = server.bank.push_commits(project["id"], [CommitSpec({"f.txt": "f"})], branch="feature")
    server.hooks.push(project, USER, feature_head, BLANK, "refs/heads/feature")

    body = payload(listener.wait_for(1)[0])
    assert (body["before"], body["after"], body["checkout_sha"]) == (feature_head, BLANK, None)
    assert body["commits"] == [] and body["total_commits_count"] == 0
    assert body["ref_protected"] is False


def test_new_branch_lists_the_commits_the_default_branch_lacks(make_server, project, listener):
    server = make_server()
    server.bank.add_hook(project["id"], f"{listener.url}/hook")
    _, shas = push_and_fire(server, project, [CommitSpec({"f.txt": "1"}), CommitSpec({"f.txt": "2"})], "feature")

    body = payload(listener.wait_for(1)[0])
    assert body["before"] == BLANK and [c["id"] for c in body["commits"]] == shas


def test_force_push_lists_only_the_new_commits(make_server, project, listener):
    server = make_server()
    base = server.bank.head(project["id"])
    replaced = server.bank.push_commits(project["id"], [CommitSpec({"a.txt": "1"}), CommitSpec({"a.txt": "2"})])
    repo = server.bank.repo_path(project)
    [rewritten] = fast_import(repo, "rewrite", [CommitSpec({"b.txt": "b"}, "Rewrite history")], parent=base)
    run_git(repo, "update-ref", "refs/heads/main", rewritten)
    server.bank.add_hook(project["id"], f"{listener.url}/hook")
    server.hooks.push(project, USER, replaced[-1], rewritten, "refs/heads/main")

    body = payload(listener.wait_for(1)[0])
    assert (body["before"], body["after"]) == (replaced[-1], rewritten)
    assert [c["id"] for c in body["commits"]] == [rewritten] and body["total_commits_count"] == 1
    assert body["commits"][0]["added"] == ["b.txt"]


def test_pushing_thread_is_not_blocked_by_a_slow_receiver(make_server, project, listener):
    server = make_server()
    server.bank.add_hook(project["id"], f"{listener.url}/hook")
    listener.holding = True
    started = time.monotonic()
    push_and_fire(server, project, [CommitSpec({"a.txt": "a"})])
    fire_again(server, project)
    assert time.monotonic() - started < 1.0
    assert listener.received() == []
    listener.hold.set()
    listener.wait_for(2)


# -- failures, auto-disabling, re-enabling ---------------------------------------------------------------------


class Clock:
    """The dispatcher's clock, moved forward by the tests (disabling lasts minutes to days)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def failing_hook(make_server, project: dict, listener: Listener, status: int) -> tuple[ItemBankServer, dict, Clock]:
    """A server on a test clock, with one hook of ``project`` pointing at ``listener``, which answers ``status``."""
    clock = Clock()
    server = make_server()
    server.hooks.clock = clock
    listener.status = status
    return server, server.bank.add_hook(project["id"], f"{listener.url}/hook"), clock


def deliver_once(server: ItemBankServer, project: dict, listener: Listener) -> None:
    """Fire a push the hook is due to receive, and wait until the receiver has it and its delivery is recorded."""
    expected = len(listener.received()) + 1
    fire_again(server, project)
    listener.wait_for(expected)
    assert server.hooks.wait_idle(5)


def fail_until(server: ItemBankServer, project: dict, listener: Listener, deliveries: int, clock: Clock) -> None:
    """Fire pushes against a failing receiver until it has had ``deliveries`` requests, waiting out any back-off."""
    while len(listener.received()) < deliveries:
        clock.now += 2 * 86400 if len(listener.received()) >= 4 else 0
        deliver_once(server, project, listener)


def test_failing_hook_is_temporarily_disabled_after_four_failures_with_growing_back_off(make_server, project, listener):
    server, hook, clock = failing_hook(make_server, project, listener, 500)
    for failures in range(1, 5):
        deliver_once(server, project, listener)
        shown = rest_hook(server, project, hook)
        if failures < 4:
            assert (shown["alert_status"], shown["disabled_until"]) == ("executable", None)
    assert shown["alert_status"] == "temporarily_disabled"
    assert shown["disabled_until"] == _timestamp(clock.now + 60)
    assert [r["response_status"] for r in server.hooks.deliveries(hook_id=hook["id"])] == [500] * 4

    fire_again(server, project)
    assert server.hooks.wait_idle(5)
    assert len(listener.received()) == 4  # nothing while disabled

    clock.now += 61
    assert rest_hook(server, project, hook)["alert_status"] == "executable"
    deliver_once(server, project, listener)
    shown = rest_hook(server, project, hook)
    assert shown["alert_status"] == "temporarily_disabled"
    assert shown["disabled_until"] == _timestamp(clock.now + 120)


def _timestamp(epoch: float) -> str:
    from datetime import datetime

    when = datetime.fromtimestamp(epoch, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def test_a_timeout_is_recorded_and_counts_as_a_failure(make_server, project, listener):
    server = make_server(hook_timeout=0.3)
    hook = server.bank.add_hook(project["id"], f"{listener.url}/hook")
    listener.holding = True
    fire_again(server, project)
    assert server.hooks.wait_idle(5)

    [record] = server.hooks.deliveries(hook_id=hook["id"])
    assert record["response_status"] is None and "Timeout" in record["error"]
    assert server.bank.hook_state(hook["id"]).recent_failures == 1


def test_fortieth_consecutive_failure_disables_the_hook_permanently(make_server, project, listener):
    server, hook, clock = failing_hook(make_server, project, listener, 404)
    fail_until(server, project, listener, 39, clock)
    assert rest_hook(server, project, hook)["alert_status"] == "temporarily_disabled"
    fail_until(server, project, listener, 40, clock)
    assert rest_hook(server, project, hook)["alert_status"] == "disabled"

    clock.now += 30 * 86400
    fire_again(server, project)
    assert server.hooks.wait_idle(5)
    assert len(listener.received()) == 40
    assert rest_hook(server, project, hook)["alert_status"] == "disabled"


def test_a_successful_test_request_re_enables_a_disabled_hook(make_server, project, listener):
    server, hook, clock = failing_hook(make_server, project, listener, 500)
    fail_until(server, project, listener, 4, clock)
    assert rest_hook(server, project, hook)["alert_status"] == "temporarily_disabled"
    test_url = f"{server.url}/api/v4/projects/{project['id']}/hooks/{hook['id']}/test/push_events"

    still_failing = requests.post(test_url, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert still_failing.status_code == 422
    assert rest_hook(server, project, hook)["alert_status"] == "temporarily_disabled"

    listener.status = 200
    response = requests.post(test_url, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert response.status_code == 201
    shown = rest_hook(server, project, hook)
    assert (shown["alert_status"], shown["disabled_until"]) == ("executable", None)
    test_request = listener.received()[-1]
    assert test_request["headers"]["X-Gitlab-Event"] == "Push Hook"
    assert payload(test_request)["after"] == server.bank.head(project["id"])
    fire_again(server, project)
    listener.wait_for(7)


def test_edit_route_changes_the_given_fields_only(make_server, project, listener):
    server = make_server()
    hook = server.bank.add_hook(project["id"], f"{listener.url}/old", token=HOOK_TOKEN, push_events=False)
    url = f"{server.url}/api/v4/projects/{project['id']}/hooks/{hook['id']}"
    response = requests.put(
        url,
        json={"url": f"{listener.url}/new", "push_events": True, "push_events_branch_filter": "main"},
        headers={"PRIVATE-TOKEN": TOKEN},
        timeout=5,
    )
    assert response.status_code == 200
    shown = response.json()
    assert (shown["url"], shown["push_events"], shown["push_events_branch_filter"]) == (
        f"{listener.url}/new", True, "main",
    )  # fmt: skip
    assert HOOK_TOKEN not in response.text
    fire_again(server, project)
    [request] = listener.wait_for(1, "/new")
    assert request["headers"]["X-Gitlab-Token"] == HOOK_TOKEN
    bad = requests.put(url, json={"url": "ftp://x"}, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert bad.status_code == 422


# -- TLS -------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[tuple[Listener, Path]]:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    receiver = Listener(context)
    yield receiver, bundle
    receiver.close()


def test_tls_verification_rejects_an_untrusted_certificate(make_server, project, tls_listener):
    listener, _ = tls_listener
    server = make_server()
    hook = server.bank.add_hook(project["id"], f"{listener.url}/hook")
    fire_again(server, project)
    assert server.hooks.wait_idle(5)
    [record] = server.hooks.deliveries(hook_id=hook["id"])
    assert record["response_status"] is None and "SSLError" in record["error"]
    assert listener.received() == []


def test_tls_verification_accepts_the_certificate_with_the_servers_ca_bundle(make_server, project, tls_listener):
    listener, bundle = tls_listener
    server = make_server(hook_ca_bundle=str(bundle))
    server.bank.add_hook(project["id"], f"{listener.url}/hook")
    fire_again(server, project)
    listener.wait_for(1)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification_off_accepts_any_certificate(make_server, project, tls_listener):
    listener, _ = tls_listener
    server = make_server()
    server.bank.add_hook(project["id"], f"{listener.url}/hook", enable_ssl_verification=False)
    fire_again(server, project)
    listener.wait_for(1)


# -- system hooks ----------------------------------------------------------------------------------------------


def test_system_hooks_get_project_events_and_pushes(make_server, project, listener):
    server = make_server(
        system_hooks=[
            SystemHook(f"{listener.url}/system", token="system-secret"),
            f"{listener.url}/quiet,push_events=false",
        ]
    )
    hooks = server.hooks
    hooks.project_event("project_create", project, USER)
    hooks.project_event("project_rename", project, USER, old_path_with_namespace=f"{GROUP}/old-name")
    hooks.project_event("project_transfer", project, USER, old_path_with_namespace="other-group/item-1")
    hooks.project_event("project_destroy", project, USER)
    push_and_fire(server, project, [CommitSpec({"a.txt": "a"})])

    received = listener.wait_for(5, "/system")
    assert {r["headers"]["X-Gitlab-Event"] for r in received} == {"System Hook"}
    assert {r["headers"]["X-Gitlab-Token"] for r in received} == {"system-secret"}
    by_event = {payload(r)["event_name"]: payload(r) for r in received}
    assert set(by_event) == {"project_create", "project_rename", "project_transfer", "project_destroy", "push"}
    created = by_event["project_create"]
    assert created == {
        "event_name": "project_create",
        "created_at": project["created_at"][:19] + "Z",
        "updated_at": project["updated_at"][:19] + "Z",
        "name": "item-1",
        "path": "item-1",
        "path_with_namespace": project["path_with_namespace"],
        "project_id": project["id"],
        "owner_name": GROUP,
        "owner_email": "",
        "owners": [{"name": "Jane Doe", "email": "jane@example.com"}],
        "project_visibility": "private",
    }
    assert by_event["project_rename"]["old_path_with_namespace"] == f"{GROUP}/old-name"
    assert by_event["project_transfer"]["old_path_with_namespace"] == "other-group/item-1"
    assert "old_path_with_namespace" not in by_event["project_destroy"]
    assert set(by_event["push"]) == PUSH_FIELDS and by_event["push"]["object_kind"] == "push"

    assert hooks.wait_idle(5)
    assert sorted(payload(r)["event_name"] for r in listener.received("/quiet")) == [
        "project_create", "project_destroy", "project_rename", "project_transfer",
    ]  # fmt: skip
    records = hooks.deliveries(system_hook_id=1)
    assert len(records) == 5 and {r["request_headers"]["X-Gitlab-Token"] for r in records} == {"[REDACTED]"}


def test_system_hook_spec_and_cli_option():
    hook = SystemHook.parse("https://hooks.example/in,token=abc,push_events=false")
    assert (hook.url, hook.token, hook.push_events, hook.enable_ssl_verification) == (
        "https://hooks.example/in", "abc", False, True,
    )  # fmt: skip
    assert "abc" not in repr(hook)
    args = build_parser().parse_args(
        ["serve", "--root", "r", "--system-hook", "http://h/x,enable_ssl_verification=false"]
    )
    assert args.system_hook == [SystemHook("http://h/x", enable_ssl_verification=False)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--root", "r", "--system-hook", "http://h/x,colour=red"])


# -- the test-control route ------------------------------------------------------------------------------------


def test_deliveries_are_readable_at_the_test_control_route(make_server, bank, project, listener):
    other = bank.create_project(GROUP, "item-2", {"item.json": {"id": 2}})
    server = make_server()
    first = bank.add_hook(project["id"], f"{listener.url}/one", token=HOOK_TOKEN)
    second = bank.add_hook(other["id"], f"{listener.url}/two")
    fire_again(server, project)
    fire_again(server, other)
    listener.wait_for(2)
    assert server.hooks.wait_idle(5)

    url = f"{server.url}/-/hook_deliveries"
    assert requests.get(url, timeout=5).status_code == 401
    everything = requests.get(url, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert len(everything.json()) == 2 and HOOK_TOKEN not in everything.text
    by_hook = requests.get(url, params={"hook_id": second["id"]}, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5).json()
    assert [r["url"] for r in by_hook] == [f"{listener.url}/two"]
    by_project = requests.get(url, params={"project_id": project["id"]}, headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)
    assert [r["hook_id"] for r in by_project.json()] == [first["id"]]
    record = by_project.json()[0]
    assert set(record) >= {"event", "url", "response_status", "error", "duration", "trigger", "created_at"}
    assert record["duration"] >= 0 and record["trigger"] == "push_hooks"


def test_a_bank_created_before_hook_state_existed_still_opens(tmp_path: Path):
    old = ItemBank(tmp_path / "old")
    created = old.create_project(GROUP, "item-1", {"item.json": {}})
    hook = old.add_hook(created["id"], "http://127.0.0.1:9/hook")
    for table in ("hook_deliveries", "hook_states"):
        old._db.execute(f"DROP TABLE {table}")
    old.close()

    reopened = ItemBank(tmp_path / "old")
    try:
        assert reopened.hook_state(hook["id"]).recent_failures == 0
        assert reopened.hook_deliveries() == []
    finally:
        reopened.close()


def test_url_credentials_are_sent_as_basic_auth_and_masked_in_the_record(make_server, project, listener):
    server = make_server()
    host = listener.url.removeprefix("http://")
    hook = server.bank.add_hook(project["id"], f"http://robot:pa55word@{host}/hook")
    fire_again(server, project)
    [request] = listener.wait_for(1)
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert server.hooks.wait_idle(5)
    [record] = server.hooks.deliveries(hook_id=hook["id"])
    assert record["url"] == f"http://robot:[REDACTED]@{host}/hook"
    assert "pa55word" not in json.dumps(record)


def test_a_git_push_by_a_developer_is_delivered_to_the_project_hook_within_two_seconds(
    make_server, project, listener, tmp_path
):
    """The whole path: a real git client pushes over smart HTTP, the server fires the project hook."""
    from itembank_helpers import git_env
    from itembank_helpers import run_git as git

    from itembank_server.users import DEVELOPER

    server = make_server()
    developer = server.bank.create_user("dee", name="Dee Developer", email="dee@example.org")
    server.bank.add_token(developer["id"], "glpat-dee-token")
    server.bank.add_member(GROUP, developer["id"], DEVELOPER)
    server.bank.add_hook(project["id"], f"{listener.url}/webHook", token=HOOK_TOKEN)
    home = tmp_path / "home"
    home.mkdir()
    env = git_env(home, "glpat-dee-token")
    work = tmp_path / "work"
    git("clone", f"{server.url}/{project['path_with_namespace']}.git", str(work), env=env)
    (work / "item.json").write_text(json.dumps({"id": 1, "workflow": {"workflowStatusCode": "Approved"}}) + "\n")
    git(
        "-c",
        "user.name=Dee Developer",
        "-c",
        "user.email=dee@example.org",
        "commit",
        "-qam",
        "Approve",
        env=env,
        cwd=work,
    )
    sha = git("rev-parse", "HEAD", env=env, cwd=work).stdout.strip()
    git("push", "-q", "origin", "main", env=env, cwd=work)
    pushed_at = time.monotonic()

    [request] = listener.wait_for(1, "/webHook", timeout=2.0)
    assert time.monotonic() - pushed_at < 2.0
    headers, body = request["headers"], payload(request)
    assert headers["X-Gitlab-Event"] == "Push Hook" and headers["X-Gitlab-Token"] == HOOK_TOKEN
    for name in ("X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID"):
        uuid.UUID(headers[name])
    assert (body["after"], body["checkout_sha"], body["ref"]) == (sha, sha, "refs/heads/main")
    assert (body["user_username"], body["user_name"]) == ("dee", "Dee Developer")
    assert [c["modified"] for c in body["commits"]] == [["item.json"]]
    assert body["project"]["path_with_namespace"] == project["path_with_namespace"]
