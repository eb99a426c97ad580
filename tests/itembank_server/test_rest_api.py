"""REST v4 subset: authentication, groups, projects, hooks and error shapes, over real HTTP."""

from __future__ import annotations

import http.client
from urllib.parse import quote, urlsplit

import pytest
import requests
from itembank_helpers import GROUP, TOKEN, utc

from itembank_server import ItemBank

ITEM = {"id": "205030", "type": "mc", "version": "iat-5"}


@pytest.fixture
def project(bank: ItemBank) -> dict:
    bank.create_group(GROUP)
    return bank.create_project(GROUP, "205030", files={"item.json": ITEM}, committed_at=utc(2020, 5, 1, 12, 0))


PROTECTED = [
    ("GET", f"/groups/{GROUP}"),
    ("GET", f"/groups/{GROUP}/projects"),
    ("GET", "/projects/1"),
    ("GET", "/projects/1/hooks"),
    ("POST", "/projects/1/hooks"),
    ("DELETE", "/projects/1/hooks/1"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [{}, {"PRIVATE-TOKEN": "wrong"}, {"Authorization": "Bearer wrong"}, {"PRIVATE-TOKEN": ""}],
    ids=["missing", "bad-private-token", "bad-bearer", "empty"],
)
def test_missing_or_invalid_token_is_401(server, project, method, path, headers):
    response = requests.request(method, f"{server.url}/api/v4{path}", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "401 Unauthorized"}


@pytest.mark.parametrize(
    "auth",
    [
        {"headers": {"PRIVATE-TOKEN": TOKEN}},
        {"headers": {"Authorization": f"Bearer {TOKEN}"}},
        {"params": {"private_token": TOKEN}},
    ],
    ids=["private-token", "bearer", "query-param"],
)
def test_valid_token_in_any_documented_place_is_accepted(server, project, auth):
    response = requests.get(f"{server.url}/api/v4/projects/{project['id']}", timeout=10, **auth)
    assert response.status_code == 200
    assert response.json()["id"] == project["id"]


def test_group_by_id_and_by_url_encoded_full_path(api, bank):
    child = bank.create_group("parent/child")
    by_path = api.get("/groups/parent%2Fchild")
    by_id = api.get(f"/groups/{child['id']}")
    assert by_path.status_code == by_id.status_code == 200
    assert by_path.json() == by_id.json()
    group = by_path.json()
    assert group["id"] == child["id"]
    assert (group["name"], group["path"], group["full_path"]) == ("child", "child", "parent/child")
    assert group["full_name"] == "parent / child"
    assert group["parent_id"] == bank.group("parent")["id"]
    assert group["web_url"] == f"{api.server.url}/groups/parent/child"


def test_group_details_include_projects_unless_asked_not_to(api, project):
    assert [p["id"] for p in api.get(f"/groups/{GROUP}").json()["projects"]] == [project["id"]]
    assert "projects" not in api.get(f"/groups/{GROUP}", params={"with_projects": "false"}).json()


@pytest.mark.parametrize("path", ["/groups/nope", "/groups/999999", "/groups/parent%2Fnope"])
def test_unknown_group_is_404(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response.json() == {"message": "404 Group Not Found"}
    assert api.get(f"{path}/projects").json() == {"message": "404 Group Not Found"}


def test_project_json_follows_gitlab(api, project):
    body = api.get(f"/projects/{project['id']}").json()
    base = api.server.url
    assert body["id"] == project["id"] != int(body["path"])
    assert body["path"] == body["name"] == "205030"
    assert body["path_with_namespace"] == f"{GROUP}/205030"
    assert body["namespace"] == {
        "id": project["namespace"]["id"],
        "name": GROUP,
        "path": GROUP,
        "kind": "group",
        "full_path": GROUP,
        "parent_id": None,
        "avatar_url": None,
        "web_url": f"{base}/groups/{GROUP}",
    }
    assert body["default_branch"] == "main"
    assert body["http_url_to_repo"] == f"{base}/{GROUP}/205030.git"
    assert body["web_url"] == f"{base}/{GROUP}/205030"
    assert body["archived"] is False and body["empty_repo"] is False
    assert body["created_at"] == body["last_activity_at"] == "2020-05-01T12:00:00.000Z"


def test_project_by_url_encoded_path_equals_project_by_id(api, project):
    by_path = api.get(f"/projects/{quote(f'{GROUP}/205030', safe='')}")
    assert by_path.status_code == 200
    assert by_path.json() == api.get(f"/projects/{project['id']}").json()


def test_empty_project_reports_an_empty_repo(api, bank):
    empty = bank.create_project(GROUP, "300001")
    assert api.get(f"/projects/{empty['id']}").json()["empty_repo"] is True


@pytest.mark.parametrize("ref", ["424242", f"{GROUP}%2Fmissing", "iat-dev%2F205030-x"])
def test_unknown_project_is_404(api, project, ref):
    response = api.get(f"/projects/{ref}")
    assert response.status_code == 404
    assert response.json() == {"message": "404 Project Not Found"}


def test_deleted_project_is_404_and_leaves_the_listing(api, bank, project):
    bank.delete_project(project["id"])
    assert api.get(f"/projects/{project['id']}").json() == {"message": "404 Project Not Found"}
    assert api.get(f"/projects/{project['id']}/hooks").status_code == 404
    listing = api.get(f"/groups/{GROUP}/projects")
    assert listing.json() == [] and listing.headers["X-Total"] == "0"


def test_unknown_route_is_404_and_wrong_method_is_405(api, project):
    unknown = api.get("/projects/1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "404 Not Found"}
    wrong_method = api.session.patch(api.url(f"/projects/{project['id']}"), timeout=10)
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"error": "405 Not Allowed"}
    assert "GET" in wrong_method.headers["Allow"]


def test_simple_listing_returns_the_basic_project_entity(api, project):
    simple = api.get(f"/groups/{GROUP}/projects", params={"simple": "true"}).json()[0]
    full = api.get(f"/groups/{GROUP}/projects").json()[0]
    assert set(simple) < set(full)
    assert {"id", "path", "path_with_namespace", "default_branch", "http_url_to_repo", "namespace"} <= set(simple)
    assert "archived" not in simple and "empty_repo" not in simple


def test_archived_filter(api, bank, project):
    archived = bank.create_project(GROUP, "205031", files={"item.json": ITEM}, archived=True)
    ids = lambda **params: [p["id"] for p in api.get(f"/groups/{GROUP}/projects", params=params).json()]  # noqa: E731
    assert sorted(ids()) == sorted([project["id"], archived["id"]])
    assert ids(archived="true") == [archived["id"]]
    assert ids(archived="false") == [project["id"]]
    invalid = api.get(f"/groups/{GROUP}/projects", params={"archived": "maybe"})
    assert invalid.status_code == 400 and invalid.json() == {"error": "archived is invalid"}


def test_hook_lifecycle(api, bank, project):
    hooks_path = f"/projects/{project['id']}/hooks"
    created = api.post(
        hooks_path,
        json={
            "url": "http://airflow:8080/hook",
            "push_events": True,
            "token": "s3cret",
            "enable_ssl_verification": False,
        },
    )
    assert created.status_code == 201
    hook = created.json()
    assert "token" not in hook
    assert hook["url"] == "http://airflow:8080/hook"
    assert hook["project_id"] == project["id"]
    assert hook["push_events"] is True and hook["enable_ssl_verification"] is False
    assert (
        hook["issues_events"] is False and hook["merge_requests_events"] is False and hook["tag_push_events"] is False
    )
    assert "created_at" in hook and "push_events_branch_filter" in hook

    listed = api.get(hooks_path)
    assert listed.json() == [hook]
    assert listed.headers["X-Total"] == "1"
    assert api.get(f"{hooks_path}/{hook['id']}").json() == hook
    assert [(h["id"], h["token"]) for h in bank.hooks(project["id"])] == [(hook["id"], "s3cret")]

    deleted = api.delete(f"{hooks_path}/{hook['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get(hooks_path).json() == []
    again = api.delete(f"{hooks_path}/{hook['id']}")
    assert again.status_code == 404 and again.json() == {"message": "404 Not found"}


def test_hook_from_form_encoded_body_defaults_like_gitlab(api, bank, project):
    created = api.post(f"/projects/{project['id']}/hooks", data={"url": "https://example.com/hook", "token": "t0k"})
    assert created.status_code == 201
    hook = created.json()
    assert hook["push_events"] is True and hook["enable_ssl_verification"] is True
    assert bank.hooks(project["id"])[0]["token"] == "t0k"


@pytest.mark.parametrize(
    ("payload", "status", "body"),
    [
        ({"push_events": True}, 400, {"error": "url is missing"}),
        ({"url": "not a url"}, 422, {"error": "Invalid url given"}),
        ({"url": "http://example.com/h", "push_events": "sometimes"}, 400, {"error": "push_events is invalid"}),
    ],
)
def test_invalid_hook_requests(api, bank, project, payload, status, body):
    response = api.post(f"/projects/{project['id']}/hooks", json=payload)
    assert (response.status_code, response.json()) == (status, body)
    assert bank.hooks(project["id"]) == []


def test_unknown_hook_is_404_and_non_numeric_hook_id_is_400(api, project):
    assert api.get(f"/projects/{project['id']}/hooks/77").json() == {"message": "404 Not found"}
    invalid = api.delete(f"/projects/{project['id']}/hooks/abc")
    assert (invalid.status_code, invalid.json()) == (400, {"error": "hook_id is invalid"})


def test_connections_are_kept_alive_across_responses_of_every_kind(server, project):
    host = urlsplit(server.url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    requests_made = [
        ("GET", f"/api/v4/projects/{project['id']}", {"PRIVATE-TOKEN": TOKEN}, 200),
        ("GET", f"/api/v4/projects/{project['id']}", {}, 401),
        ("GET", "/api/v4/nowhere", {"PRIVATE-TOKEN": TOKEN}, 404),
        ("DELETE", f"/api/v4/projects/{project['id']}/hooks/5", {"PRIVATE-TOKEN": TOKEN}, 404),
        ("GET", f"/{GROUP}/205030.git/info/refs?service=git-upload-pack", {}, 401),
        ("GET", f"/api/v4/groups/{GROUP}/projects", {"PRIVATE-TOKEN": TOKEN}, 200),
    ]
    connection.connect()
    first_socket = connection.sock
    for method, path, headers, status in requests_made:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == status
        assert not response.will_close
        assert connection.sock is first_socket
    connection.close()


def test_include_subgroups_lists_projects_of_descendant_groups(api, bank, project):
    nested = bank.create_project(f"{GROUP}/archive", "100001", files={"item.json": ITEM})
    own = [p["id"] for p in api.get(f"/groups/{GROUP}/projects").json()]
    everything = [p["id"] for p in api.get(f"/groups/{GROUP}/projects", params={"include_subgroups": "true"}).json()]
    assert own == [project["id"]]
    assert sorted(everything) == sorted([project["id"], nested["id"]])
    assert api.get(f"/groups/{quote(GROUP + '/archive', safe='')}/projects").json()[0]["namespace"]["full_path"] == (
        f"{GROUP}/archive"
    )


def test_head_is_answered_like_get_without_a_body(server, project):
    head = requests.head(f"{server.url}/api/v4/projects/{project['id']}", headers={"PRIVATE-TOKEN": TOKEN}, timeout=10)
    get = requests.get(f"{server.url}/api/v4/projects/{project['id']}", headers={"PRIVATE-TOKEN": TOKEN}, timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_malformed_request_body_framing_is_400_and_closes_the_connection(server, project):
    host = urlsplit(server.url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    connection.putrequest("POST", f"/api/v4/projects/{project['id']}/hooks")
    connection.putheader("PRIVATE-TOKEN", TOKEN)
    connection.putheader("Content-Length", "twelve")
    connection.endheaders()
    response = connection.getresponse()
    assert (response.status, response.read()) == (400, b'{"error":"400 Bad Request"}')
    assert response.will_close
    connection.close()
