"""Listing at scale like GitLab: the count limit as a server setting, and keyset pagination of group projects.

https://docs.gitlab.com/api/rest/#keyset-based-pagination and #pagination-response-headers, driven with the official
``python-gitlab`` client where it can be.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import gitlab
import pytest
import requests
from itembank_helpers import GROUP, TOKEN, Api, utc
from test_cli import start, stop

from itembank_server import ItemBank, ItemBankServer, ProjectSpec

PROJECTS_PATH = f"/groups/{GROUP}/projects"
T0 = utc(2022, 3, 1)
KEYSET_UNAVAILABLE = {"error": "Keyset pagination is not yet available for this type of request"}


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers.get("Link", ""))}


def create_projects(bank: ItemBank, count: int, start_at: int = 0) -> list[dict]:
    numbers = range(start_at, start_at + count)
    specs = [ProjectSpec(str(300000 + n), created_at=T0 + timedelta(minutes=n)) for n in numbers]
    return bank.create_projects(GROUP, specs)


@pytest.fixture
def seven(bank: ItemBank) -> list[dict]:
    return create_projects(bank, 7)


@pytest.fixture
def gl(server: ItemBankServer):
    client = gitlab.Gitlab(server.url, private_token=TOKEN, retry_transient_errors=False)
    yield client
    client.session.close()


def keyset_ids(gl: gitlab.Gitlab, **params) -> list[int]:
    group = gl.groups.get(GROUP, lazy=True)
    return [p.id for p in group.projects.list(iterator=True, pagination="keyset", order_by="id", **params)]


def test_python_gitlab_keyset_iteration_yields_every_project_in_id_order(gl, seven):
    ids = [p["id"] for p in seven]
    assert keyset_ids(gl, sort="asc", per_page=3) == ids
    assert keyset_ids(gl, per_page=2) == ids[::-1]  # sort defaults to desc, as Grape declares it


def test_keyset_pages_carry_only_a_next_link_with_the_id_bound(api, seven):
    ids = [p["id"] for p in seven]
    url = api.url(PROJECTS_PATH) + "?pagination=keyset&order_by=id&sort=asc&per_page=3"
    pages, bounds = [], []
    while url:
        response = api.session.get(url, timeout=10)
        assert response.status_code == 200
        assert not {"X-Total", "X-Total-Pages", "X-Page", "X-Next-Page"} & set(response.headers)
        pages.append([p["id"] for p in response.json()])
        url = links(response).get("next")
        if url:
            query = parse_qs(urlsplit(url).query)
            assert set(links(response)) == {"next"}
            assert (query["pagination"], query["order_by"], query["sort"]) == (["keyset"], ["id"], ["asc"])
            assert query["per_page"] == ["3"] and "id_before" not in query
            bounds.append(int(query["id_after"][0]))
    # GitLab links on from every page with records; the page past the last record is empty and has no Link.
    assert pages == [ids[0:3], ids[3:6], ids[6:7], []]
    assert bounds == [ids[2], ids[5], ids[6]]

    descending = api.get(PROJECTS_PATH, params={"pagination": "keyset", "order_by": "id", "per_page": 3})
    query = parse_qs(urlsplit(links(descending)["next"]).query)
    assert query["id_before"] == [str(ids[-3])] and "id_after" not in query


@pytest.mark.parametrize("params", [{}, {"order_by": "created_at"}, {"order_by": "name", "sort": "asc"}])
def test_keyset_is_405_for_any_order_but_id(api, seven, params):
    response = api.get(PROJECTS_PATH, params={"pagination": "keyset", **params})
    assert (response.status_code, response.json()) == (405, KEYSET_UNAVAILABLE)


def test_id_after_and_id_before_filter_offset_listings_too(api, seven):
    ids = [p["id"] for p in seven]
    response = api.get(PROJECTS_PATH, params={"order_by": "id", "sort": "asc", "id_after": ids[1], "id_before": ids[5]})
    assert [p["id"] for p in response.json()] == ids[2:5]
    assert response.headers["X-Total"] == "3"
    invalid = api.get(PROJECTS_PATH, params={"id_after": "seven"})
    assert (invalid.status_code, invalid.json()) == (400, {"error": "id_after is invalid"})


def test_lowered_count_limit_drops_totals_while_keyset_still_ends(bank):
    projects = create_projects(bank, 7)
    with ItemBankServer(bank, tokens={TOKEN}, count_limit=5) as server:
        api = Api(server)
        uncounted = api.get(PROJECTS_PATH, params={"per_page": 3})
        assert not {"X-Total", "X-Total-Pages"} & set(uncounted.headers)
        assert set(links(uncounted)) == {"next", "first"}
        assert uncounted.headers["X-Next-Page"] == "2"
        last = api.get(PROJECTS_PATH, params={"per_page": 3, "page": 3})
        assert len(last.json()) == 1 and last.headers["X-Next-Page"] == ""
        assert api.get(f"/projects/{projects[0]['id']}/hooks").headers["X-Total"] == "0"  # under the limit: counted

        client = gitlab.Gitlab(server.url, private_token=TOKEN)
        offset_list = client.groups.get(GROUP, lazy=True).projects.list(iterator=True, per_page=3)
        assert offset_list.total is None and offset_list.total_pages is None
        assert keyset_ids(client, sort="asc", per_page=3) == [p["id"] for p in projects]
        api.session.close()
        client.session.close()


def test_keyset_iteration_is_exact_while_projects_come_and_go(gl, bank):
    """Every project that exists throughout the iteration is yielded exactly once."""
    initial = [p["id"] for p in create_projects(bank, 12)]
    group = gl.groups.get(GROUP)
    deleted: set[int] = set()
    created: list[int] = []
    seen: list[int] = []
    per_page = 3
    listing = group.projects.list(iterator=True, pagination="keyset", order_by="id", sort="asc", per_page=per_page)
    for position, project in enumerate(listing, start=1):
        seen.append(project.id)
        if position % per_page:
            continue
        # Between pages: delete one project of the page just read and one not read yet, create a new one.
        for victim in (seen[-per_page], max(i for i in initial if i not in deleted)):
            gl.projects.delete(victim)
            deleted.add(victim)
        created.append(gl.projects.create({"name": f"churn {position}", "namespace_id": group.id}).id)
    survivors = [i for i in initial if i not in deleted]
    assert len(seen) == len(set(seen)), "a project was yielded twice"
    assert set(survivors) <= set(seen), "a project that existed throughout was skipped"
    assert set(seen) <= set(initial) | set(created)
    assert len(deleted) >= 4 and created


def test_cli_count_limit_option(tmp_path):
    process, announced = start(
        tmp_path / "bank", "--generate", "3", "--count-limit", "2", "--token", "cli", env={**os.environ}
    )
    try:
        listing = requests.get(
            f"{announced['url'][0]}/api/v4/groups/iat-dev/projects", headers={"PRIVATE-TOKEN": "cli"}, timeout=10
        )
        assert listing.status_code == 200 and len(listing.json()) == 3
        assert "X-Total" not in listing.headers and "X-Total-Pages" not in listing.headers
    finally:
        stop(process)
