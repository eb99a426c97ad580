"""Request counters and injected faults, through the Python API and the ``/-/`` HTTP routes."""

from __future__ import annotations

import re
import time

import pytest
import requests
from itembank_helpers import GROUP, TOKEN, git_env, run_git

from itembank_server import ItemBank, ProjectSpec

LIST = "GET /api/v4/groups/:id/projects"
SHOW = "GET /api/v4/projects/:id"


@pytest.fixture
def projects(bank: ItemBank) -> list[dict]:
    return bank.create_projects(GROUP, [ProjectSpec(str(200000 + n)) for n in range(5)])


@pytest.fixture
def item(bank: ItemBank) -> dict:
    return bank.create_project(GROUP, "205030", files={"item.json": {"id": "205030"}})


def test_counters_count_requests_per_endpoint_template(server, api, projects, item, home):
    api.get(f"/groups/{GROUP}/projects")
    api.get(f"/groups/{GROUP}/projects", params={"page": 2})
    api.get(f"/projects/{projects[0]['id']}")
    api.get(f"/projects/{projects[1]['id']}/hooks")
    api.post(f"/projects/{projects[1]['id']}/hooks", json={"url": "http://example.com/h"})
    api.get("/no/such/route")
    run_git("ls-remote", f"{server.url}/{GROUP}/205030.git", env=git_env(home))
    counts = server.counters()
    assert counts[LIST] == 2
    assert counts[SHOW] == 1
    assert counts["GET /api/v4/projects/:id/hooks"] == 1
    assert counts["POST /api/v4/projects/:id/hooks"] == 1
    assert counts["GET unmatched"] == 1
    assert counts["git info/refs"] == 1 and counts["git upload-pack"] >= 1
    counts[LIST] = 99
    assert server.counters()[LIST] == 2, "counters() returns a copy"
    server.reset_counters()
    assert server.counters() == {}


def test_rate_limit_429_with_retry_after_then_recovers(server, api, projects):
    server.faults.add(LIST, "status", status=429, retry_after=7, times=1)
    limited = api.get(f"/groups/{GROUP}/projects")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.text == "Retry later\n"
    assert api.get(f"/groups/{GROUP}/projects").status_code == 200
    assert server.counters()[LIST] == 2


def test_server_error_500_is_gitlab_shaped_until_cleared(server, api, projects):
    server.faults.add(SHOW, "status", status=500)
    for _ in range(3):
        response = api.get(f"/projects/{projects[0]['id']}")
        assert (response.status_code, response.json()) == (500, {"message": "500 Internal Server Error"})
    assert api.get(f"/groups/{GROUP}/projects").status_code == 200, "other endpoints are unaffected"
    server.faults.clear()
    assert api.get(f"/projects/{projects[0]['id']}").status_code == 200


def test_latency_delays_the_answer(server, api, projects):
    server.faults.add(SHOW, "latency", seconds=0.4, times=1)
    started = time.monotonic()
    slow = api.get(f"/projects/{projects[0]['id']}")
    assert slow.status_code == 200 and time.monotonic() - started >= 0.4
    server.faults.add(SHOW, "latency", seconds=1.0, times=1)
    with pytest.raises(requests.Timeout):
        requests.get(api.url(f"/projects/{projects[0]['id']}"), headers={"PRIVATE-TOKEN": TOKEN}, timeout=0.2)


def test_drop_closes_the_connection_without_a_response(server, api, projects):
    server.faults.add(LIST, "drop", times=1)
    with pytest.raises(requests.ConnectionError):
        api.get(f"/groups/{GROUP}/projects")
    assert api.get(f"/groups/{GROUP}/projects").status_code == 200


def test_truncated_listing_returns_fewer_items_than_promised(server, api, projects):
    server.faults.add(LIST, "truncate", times=1)
    short = api.get(f"/groups/{GROUP}/projects", params={"per_page": 5})
    assert short.headers["X-Total"] == "5" and len(short.json()) == 4
    server.faults.add(LIST, "truncate", keep=1, times=1)
    assert len(api.get(f"/groups/{GROUP}/projects").json()) == 1
    assert len(api.get(f"/groups/{GROUP}/projects").json()) == 5


def test_path_regex_faults_reach_git_endpoints(server, item, home):
    server.faults.add(re.compile(r"/205030\.git/info/refs$"), "status", status=503, times=1)
    failed = run_git("ls-remote", f"{server.url}/{GROUP}/205030.git", env=git_env(home), check=False)
    assert failed.returncode != 0 and "503" in failed.stderr
    assert "refs/heads/main" in run_git("ls-remote", f"{server.url}/{GROUP}/205030.git", env=git_env(home)).stdout
    assert server.counters()["git info/refs"] == 2


def test_faults_are_validated(server):
    with pytest.raises(ValueError):
        server.faults.add(LIST, "explode")
    with pytest.raises(ValueError):
        server.faults.add(LIST, "status")
    with pytest.raises(ValueError):
        server.faults.add(LIST, "latency", seconds=1, times=0)
    with pytest.raises(ValueError, match="unknown endpoint"):
        server.faults.add("GET /api/v4/groups/:id/project", "drop")
    assert server.faults.list() == []


def test_http_control_routes_for_out_of_process_tests(server, api, projects):
    admin = requests.Session()
    admin.headers["PRIVATE-TOKEN"] = TOKEN
    assert requests.get(f"{server.url}/-/counters", timeout=10).status_code == 401

    added = admin.post(
        f"{server.url}/-/faults",
        json={"endpoint": LIST, "kind": "status", "status": 429, "retry_after": 3, "times": 1},
        timeout=10,
    )
    assert added.status_code == 201 and added.json()["kind"] == "status"
    assert [f["endpoint"] for f in admin.get(f"{server.url}/-/faults", timeout=10).json()] == [LIST]
    assert api.get(f"/groups/{GROUP}/projects").headers["Retry-After"] == "3"

    admin.post(
        f"{server.url}/-/faults", json={"path_regex": "/projects/\\d+$", "kind": "status", "status": 502}, timeout=10
    )
    assert api.get(f"/projects/{projects[0]['id']}").status_code == 502
    assert admin.delete(f"{server.url}/-/faults", timeout=10).status_code == 204
    assert api.get(f"/projects/{projects[0]['id']}").status_code == 200

    bad = admin.post(f"{server.url}/-/faults", json={"endpoint": LIST, "kind": "nope"}, timeout=10)
    assert bad.status_code == 400

    assert admin.get(f"{server.url}/-/counters", timeout=10).json() == {LIST: 1, SHOW: 2}
    assert admin.post(f"{server.url}/-/counters/reset", timeout=10).status_code == 204
    assert admin.get(f"{server.url}/-/counters", timeout=10).json() == {}
    assert requests.get(f"{server.url}/-/health", timeout=10).text == "GitLab OK"
