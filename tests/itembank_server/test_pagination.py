"""Offset pagination of ``GET /groups/:id/projects`` exactly as GitLab documents it."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from itembank_helpers import GROUP, utc

from itembank_server import ItemBank, ProjectSpec

PROJECTS_PATH = f"/groups/{GROUP}/projects"
T0 = utc(2021, 1, 1)


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["Link"])}


def create_empty_projects(bank: ItemBank, count: int, start: int = 0) -> list[dict]:
    """Projects without repositories: cheap rows, created one minute apart."""
    specs = [ProjectSpec(str(100000 + n), created_at=T0 + timedelta(minutes=n)) for n in range(start, start + count)]
    return bank.create_projects(GROUP, specs)


@pytest.fixture
def seven(bank: ItemBank) -> list[dict]:
    return create_empty_projects(bank, 7)


def test_every_page_has_gitlab_headers_and_links(api, seven):
    newest_first = [p["id"] for p in reversed(seven)]
    expected = {
        1: {"X-Page": "1", "X-Prev-Page": "", "X-Next-Page": "2", "rels": {"next", "first", "last"}},
        2: {"X-Page": "2", "X-Prev-Page": "1", "X-Next-Page": "3", "rels": {"prev", "next", "first", "last"}},
        3: {"X-Page": "3", "X-Prev-Page": "2", "X-Next-Page": "", "rels": {"prev", "first", "last"}},
    }
    for page, want in expected.items():
        response = api.get(PROJECTS_PATH, params={"per_page": 3, "page": page})
        assert response.status_code == 200
        headers = response.headers
        assert (headers["X-Page"], headers["X-Prev-Page"], headers["X-Next-Page"]) == (
            want["X-Page"],
            want["X-Prev-Page"],
            want["X-Next-Page"],
        )
        assert (headers["X-Per-Page"], headers["X-Total"], headers["X-Total-Pages"]) == ("3", "7", "3")
        assert set(links(response)) == want["rels"]
        assert [p["id"] for p in response.json()] == newest_first[(page - 1) * 3 : page * 3]
    last_link = links(api.get(PROJECTS_PATH, params={"per_page": 3}))["last"]
    assert parse_qs(urlsplit(last_link).query)["page"] == ["3"]


def test_following_next_links_visits_every_project_once(api, seven):
    url, seen = api.url(PROJECTS_PATH) + "?per_page=2&order_by=id&sort=asc", []
    while url:
        response = api.session.get(url, timeout=10)
        seen += [p["id"] for p in response.json()]
        url = links(response).get("next")
    assert seen == [p["id"] for p in seven]


def test_links_are_full_urls_preserving_the_query(api, seven):
    response = api.get(
        PROJECTS_PATH,
        params={"per_page": 2, "page": 2, "order_by": "name", "sort": "asc", "archived": "false", "simple": "true"},
    )
    assert set(links(response)) == {"prev", "next", "first", "last"}
    for rel, url in links(response).items():
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == api.server.url
        assert parts.path == f"/api/v4{PROJECTS_PATH}"
        query = parse_qs(parts.query)
        assert query["order_by"] == ["name"] and query["sort"] == ["asc"]
        assert query["archived"] == ["false"] and query["simple"] == ["true"]
        assert query["per_page"] == ["2"]
        assert query["page"] == [{"prev": "1", "next": "3", "first": "1", "last": "4"}[rel]]


def test_per_page_defaults_to_20_and_is_clamped_to_100(api, bank):
    create_empty_projects(bank, 120)
    default = api.get(PROJECTS_PATH)
    assert (default.headers["X-Per-Page"], len(default.json()), default.headers["X-Total-Pages"]) == ("20", 20, "6")
    clamped = api.get(PROJECTS_PATH, params={"per_page": 500})
    assert (clamped.headers["X-Per-Page"], len(clamped.json()), clamped.headers["X-Total-Pages"]) == ("100", 100, "2")
    assert "per_page=100" in links(clamped)["next"]


def test_page_past_the_end_is_empty_without_neighbours(api, seven):
    response = api.get(PROJECTS_PATH, params={"per_page": 3, "page": 9})
    assert response.json() == []
    assert (response.headers["X-Page"], response.headers["X-Prev-Page"], response.headers["X-Next-Page"]) == (
        "9",
        "",
        "",
    )
    assert response.headers["X-Total"] == "7"


def test_empty_group_has_one_page(api, bank):
    bank.create_group(GROUP)
    response = api.get(PROJECTS_PATH)
    assert response.json() == []
    assert (response.headers["X-Total"], response.headers["X-Total-Pages"], response.headers["X-Next-Page"]) == (
        "0",
        "1",
        "",
    )
    assert set(links(response)) == {"first", "last"}


@pytest.mark.parametrize(
    ("params", "key", "reverse"),
    [
        ({}, "created_at", True),
        ({"order_by": "id", "sort": "asc"}, "id", False),
        ({"order_by": "path", "sort": "desc"}, "path", True),
        ({"order_by": "last_activity_at", "sort": "asc"}, "last_activity_at", False),
    ],
)
def test_ordering(api, seven, params, key, reverse):
    body = api.get(PROJECTS_PATH, params=params).json()
    assert [p["id"] for p in body] == [p["id"] for p in sorted(seven, key=lambda p: p[key], reverse=reverse)]


def test_created_at_ties_are_broken_by_id_in_the_same_direction(api, bank):
    same_time = [ProjectSpec(str(n), created_at=T0) for n in (500, 501, 502)]
    ids = [p["id"] for p in bank.create_projects(GROUP, same_time)]
    assert [p["id"] for p in api.get(PROJECTS_PATH).json()] == ids[::-1]
    assert [p["id"] for p in api.get(PROJECTS_PATH, params={"sort": "asc"}).json()] == ids


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"order_by": "stars"}, "order_by does not have a valid value"),
        ({"sort": "up"}, "sort does not have a valid value"),
        ({"page": "first"}, "page is invalid"),
        ({"per_page": "lots"}, "per_page is invalid"),
    ],
)
def test_invalid_parameters_are_400(api, seven, params, error):
    response = api.get(PROJECTS_PATH, params=params)
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_counts_stop_above_10000_records(api, bank):
    create_empty_projects(bank, 10_000)
    counted = api.get(PROJECTS_PATH, params={"per_page": 100})
    assert (counted.headers["X-Total"], counted.headers["X-Total-Pages"]) == ("10000", "100")
    assert "last" in links(counted)

    create_empty_projects(bank, 1, start=10_000)
    first = api.get(PROJECTS_PATH, params={"per_page": 100})
    assert "X-Total" not in first.headers and "X-Total-Pages" not in first.headers
    assert set(links(first)) == {"next", "first"}
    assert (first.headers["X-Page"], first.headers["X-Next-Page"], first.headers["X-Prev-Page"]) == ("1", "2", "")
    assert len(first.json()) == 100

    last = api.get(PROJECTS_PATH, params={"per_page": 100, "page": 101})
    assert len(last.json()) == 1
    assert (last.headers["X-Next-Page"], last.headers["X-Prev-Page"]) == ("", "100")
    assert set(links(last)) == {"prev", "first"}
    assert "X-Total" not in last.headers
