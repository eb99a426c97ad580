"""The GraphQL endpoint (``/api/graphql``) driven over HTTP by a real GraphQL client (gql), against GitLab's contract
(include/itembank_server/graphql_api.py cites GitLab's source for each behaviour)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest
import requests
from gql import Client, gql
from gql.transport.exceptions import TransportConnectionFailed, TransportQueryError, TransportServerError
from gql.transport.requests import RequestsHTTPTransport
from itembank_helpers import GROUP, TOKEN

from itembank_server import ItemBank, ItemBankServer, ProjectSpec
from itembank_server.bank_repos import CommitSpec
from itembank_server.graphql_api import GITALY_ENDPOINT
from itembank_server.users import GUEST, REPORTER

POST = "POST /api/graphql"
GET = "GET /api/graphql"
OUTSIDER = "glpat-outsider"

SWEEP = gql(
    """
    query Sweep($group: ID!, $after: String, $first: Int) {
      group(fullPath: $group) {
        projects(includeSubgroups: true, first: $first, after: $after) {
          pageInfo { hasNextPage endCursor }
          nodes { id fullPath }
        }
      }
    }
    """
)
STATE_TEXT = """
    query State($ids: [ID!]) {
      projects(ids: $ids) {
        nodes {
          id
          fullPath
          repository {
            rootRef
            blobs(paths: ["item.json"]) { nodes { oid path } }
            commit(ref: "HEAD") { sha }
            tree { lastCommit { sha } }
          }
        }
      }
    }
    """
STATE = gql(STATE_TEXT)


def graphql_client(server: ItemBankServer, token: str = TOKEN, *, schema: bool = False) -> Client:
    """gql over HTTP with GitLab's token header; ``schema``: the client fetches the schema by introspection first."""
    transport = RequestsHTTPTransport(
        url=f"{server.url}/api/graphql", headers={"PRIVATE-TOKEN": token}, timeout=30, retries=0
    )
    return Client(transport=transport, fetch_schema_from_transport=schema)


def raw(server: ItemBankServer, payload: dict, token: str | None = TOKEN) -> requests.Response:
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return requests.post(f"{server.url}/api/graphql", json=payload, headers=headers, timeout=30)


def gid(project: dict) -> str:
    return f"gid://gitlab/Project/{project['id']}"


def git(bank: ItemBank, project: dict, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={bank.repo_path(project)}", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def person(bank: ItemBank, name: str, token: str) -> dict:
    user = bank.create_user(name)
    bank.add_token(user["id"], token)
    return user


@pytest.fixture
def items(bank: ItemBank) -> list[dict]:
    """Three items with a history in the group, newest id last."""
    return bank.create_projects(
        GROUP, [ProjectSpec(str(205000 + n), [CommitSpec({"item.json": {"id": str(205000 + n)}})]) for n in range(3)]
    )


# -- pagination ----------------------------------------------------------------------------------------------------


def test_a_sweep_pages_through_more_than_100_projects_of_the_group_and_its_subgroups(server, bank):
    top = bank.create_projects(GROUP, [ProjectSpec(str(100000 + n)) for n in range(110)])
    sub = bank.create_projects(f"{GROUP}/archive", [ProjectSpec(str(300000 + n)) for n in range(15)])
    bank.create_projects("elsewhere", [ProjectSpec("stray")])
    client = graphql_client(server)
    pages, after = [], None
    while True:
        page = client.execute(SWEEP, variable_values={"group": GROUP, "after": after, "first": 100})
        projects = page["group"]["projects"]
        pages.append(projects["nodes"])
        if not projects["pageInfo"]["hasNextPage"]:
            break
        after = projects["pageInfo"]["endCursor"]
    assert [len(nodes) for nodes in pages] == [100, 25]
    every = [node for nodes in pages for node in nodes]
    expected = sorted(top + sub, key=lambda p: p["id"], reverse=True)
    assert [n["id"] for n in every] == [gid(p) for p in expected], "newest id first, each project once"
    assert [n["fullPath"] for n in every] == [p["path_with_namespace"] for p in expected]
    cursor = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    assert cursor == {"id": str(expected[99]["id"])}, "GitLab's keyset cursor: base64url of the id as a string"
    assert server.counters()[POST] == 2, "two requests for 125 projects"
    without_subgroups = client.execute(SWEEP, variable_values={"group": GROUP, "first": 100})
    assert len(without_subgroups["group"]["projects"]["nodes"]) == 100
    projects = client.execute(gql('{ group(fullPath: "iat-dev/archive") { projects { count nodes { fullPath } } } }'))[
        "group"
    ]["projects"]
    assert projects["count"] == 15 and {n["fullPath"] for n in projects["nodes"]} == {
        p["path_with_namespace"] for p in sub
    }


def test_first_above_100_is_capped_at_100_and_scored_as_100(server, bank):
    bank.create_projects(GROUP, [ProjectSpec(str(100000 + n)) for n in range(105)])
    query = gql(
        """query($first: Int) { queryComplexity { score }
           group(fullPath: "iat-dev") { projects(first: $first) { pageInfo { hasNextPage } nodes { id } } } }"""
    )
    client = graphql_client(server)
    capped = client.execute(query, variable_values={"first": 500})
    exact = client.execute(query, variable_values={"first": 100})
    assert len(capped["group"]["projects"]["nodes"]) == 100 and capped["group"]["projects"]["pageInfo"]["hasNextPage"]
    assert capped == exact
    default = client.execute(gql('{ group(fullPath: "iat-dev") { projects { nodes { id } } } }'))
    assert len(default["group"]["projects"]["nodes"]) == 100, "no first: the max page size"


def test_backward_pages_and_a_bad_cursor(server, bank):
    made = bank.create_projects(GROUP, [ProjectSpec(str(100000 + n)) for n in range(5)])
    client = graphql_client(server)
    query = gql(
        """query($before: String, $after: String, $first: Int, $last: Int) { group(fullPath: "iat-dev") {
             projects(before: $before, after: $after, first: $first, last: $last) {
               pageInfo { hasNextPage hasPreviousPage startCursor endCursor } nodes { id } } } }"""
    )
    first_two = client.execute(query, variable_values={"first": 2})["group"]["projects"]
    assert [n["id"] for n in first_two["nodes"]] == [gid(made[4]), gid(made[3])]
    assert (first_two["pageInfo"]["hasNextPage"], first_two["pageInfo"]["hasPreviousPage"]) == (True, False)
    last_two = client.execute(query, variable_values={"last": 2})["group"]["projects"]
    assert [n["id"] for n in last_two["nodes"]] == [gid(made[1]), gid(made[0])]
    assert last_two["pageInfo"]["hasPreviousPage"] is True
    before = client.execute(query, variable_values={"last": 2, "before": last_two["pageInfo"]["startCursor"]})
    assert [n["id"] for n in before["group"]["projects"]["nodes"]] == [gid(made[3]), gid(made[2])]
    with pytest.raises(TransportQueryError) as bad:
        client.execute(query, variable_values={"after": "not-a-cursor"})
    assert bad.value.errors is not None
    assert [(e["message"], e["path"]) for e in bad.value.errors] == [
        ("Please provide a valid cursor", ["group", "projects"])
    ]


def test_projects_by_ids_returns_the_visible_ones_newest_first(server, bank, items):
    other = bank.create_project("other-group", "secret", {"item.json": {}})
    person(bank, "outsider", OUTSIDER)
    ids = [gid(items[0]), gid(items[2]), gid(other), "gid://gitlab/Project/999999"]
    admin = graphql_client(server).execute(STATE, variable_values={"ids": ids})
    assert [n["id"] for n in admin["projects"]["nodes"]] == [gid(other), gid(items[2]), gid(items[0])]
    outsider = graphql_client(server, OUTSIDER).execute(STATE, variable_values={"ids": ids})
    assert outsider["projects"]["nodes"] == [], "private projects of groups it is not a member of are absent"
    with pytest.raises(TransportQueryError) as wrong:
        graphql_client(server).execute(STATE, variable_values={"ids": ["gid://gitlab/Group/1"]})
    assert wrong.value.errors is not None
    assert wrong.value.errors[0]["message"] == "gid://gitlab/Group/1 is not a valid ID for Project."
    assert wrong.value.data == {"projects": None}


# -- repository state ----------------------------------------------------------------------------------------------


def test_blob_oid_commit_sha_and_last_commit_are_the_repositorys(server, bank, items):
    client = graphql_client(server)
    nodes = client.execute(STATE, variable_values={"ids": [gid(p) for p in items]})["projects"]["nodes"]
    assert len(nodes) == 3
    for node, project in zip(nodes, reversed(items), strict=True):
        repository = node["repository"]
        assert repository["rootRef"] == "main"
        assert repository["blobs"]["nodes"] == [
            {"oid": git(bank, project, "rev-parse", "HEAD:item.json"), "path": "item.json"}
        ]
        assert repository["commit"]["sha"] == git(bank, project, "rev-parse", "refs/heads/main")
        assert repository["tree"]["lastCommit"]["sha"] == repository["commit"]["sha"]


def test_a_readme_only_push_moves_the_head_but_not_the_item_blob(server, bank, items):
    client = graphql_client(server)
    project = items[1]
    before = client.execute(STATE, variable_values={"ids": [gid(project)]})["projects"]["nodes"][0]["repository"]
    head = bank.push_commit(project["id"], {"README.md": "# Notes\n"}, message="Only the README")
    after = client.execute(STATE, variable_values={"ids": [gid(project)]})["projects"]["nodes"][0]["repository"]
    assert after["commit"]["sha"] == head != before["commit"]["sha"]
    assert after["blobs"] == before["blobs"]
    changed = bank.push_commit(project["id"], {"item.json": {"id": "changed"}})
    last = client.execute(STATE, variable_values={"ids": [gid(project)]})["projects"]["nodes"][0]["repository"]
    assert last["commit"]["sha"] == changed
    assert (
        last["blobs"]["nodes"][0]["oid"]
        == git(bank, project, "rev-parse", "HEAD:item.json")
        != (before["blobs"]["nodes"][0]["oid"])
    )


def test_missing_files_refs_and_empty_repositories_are_not_errors(server, bank, items):
    empty = bank.create_project(GROUP, "empty")
    query = gql(
        """query($path: ID!) { project(fullPath: $path) { repository {
             rootRef empty exists blobs(paths: ["nope.json", "item.json"]) { nodes { path } }
             commit(ref: "no-such-branch") { sha } } } }"""
    )
    client = graphql_client(server)
    item = client.execute(query, variable_values={"path": items[0]["path_with_namespace"]})["project"]["repository"]
    assert item == {
        "rootRef": "main",
        "empty": False,
        "exists": True,
        "blobs": {"nodes": [{"path": "item.json"}]},
        "commit": None,
    }
    blank = client.execute(query, variable_values={"path": empty["path_with_namespace"]})["project"]["repository"]
    assert blank == {"rootRef": None, "empty": True, "exists": True, "blobs": {"nodes": []}, "commit": None}
    assert client.execute(query, variable_values={"path": "iat-dev/no-such-project"}) == {"project": None}


# -- who sees what -------------------------------------------------------------------------------------------------


def test_graphql_shows_what_rest_shows_to_each_user(server, bank):
    group = bank.create_group(GROUP, visibility="internal")
    bank.create_group(f"{GROUP}/drafts")
    visible = bank.create_project(GROUP, "open", {"item.json": {}}, visibility="internal")
    hidden = bank.create_project(GROUP, "private", {"item.json": {}})
    draft = bank.create_project(f"{GROUP}/drafts", "draft", {"item.json": {}})
    person(bank, "outsider", OUTSIDER)
    guest = person(bank, "guest", "glpat-guest")
    bank.add_project_member(hidden, guest["id"], GUEST)
    reporter = person(bank, "reporter", "glpat-reporter")
    bank.add_member(group, reporter["id"], REPORTER)
    query = gql(
        """{ group(fullPath: "iat-dev") { projects(includeSubgroups: true) {
               count nodes { fullPath repository { rootRef } } } }
             drafts: group(fullPath: "iat-dev/drafts") { fullPath } }"""
    )

    def seen(token: str) -> dict:
        result = graphql_client(server, token).execute(query)
        return {n["fullPath"]: n["repository"] for n in result["group"]["projects"]["nodes"]} | {
            "drafts group": result["drafts"]
        }

    rest = requests.get(
        f"{server.url}/api/v4/groups/{GROUP}/projects",
        params={"include_subgroups": "true"},
        headers={"PRIVATE-TOKEN": OUTSIDER},
        timeout=10,
    )
    assert {p["path_with_namespace"] for p in rest.json()} == {visible["path_with_namespace"]}
    assert seen(OUTSIDER) == {visible["path_with_namespace"]: {"rootRef": "main"}, "drafts group": None}
    as_guest = seen("glpat-guest")
    assert as_guest[hidden["path_with_namespace"]] is None, "a Guest of a private project may not read its code"
    assert draft["path_with_namespace"] not in as_guest
    as_reporter = seen("glpat-reporter")
    assert set(as_reporter) == {p["path_with_namespace"] for p in (visible, hidden, draft)} | {"drafts group"}
    assert all(repository == {"rootRef": "main"} for key, repository in as_reporter.items() if key != "drafts group")
    private_lookup = gql("query($p: ID!) { project(fullPath: $p) { id } }")
    outsider = graphql_client(server, OUTSIDER)
    assert outsider.execute(private_lookup, variable_values={"p": hidden["path_with_namespace"]}) == {"project": None}


def test_a_token_is_required_and_checked(server, items):
    query = {"query": "{ queryComplexity { limit } }"}
    for token in ("glpat-unknown", None):
        answer = raw(server, query, token)
        assert (answer.status_code, answer.json()) == (401, {"errors": [{"message": "Invalid token"}]})
    bearer = requests.post(
        f"{server.url}/api/graphql", json=query, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert bearer.json() == {"data": {"queryComplexity": {"limit": 300}}}, "root is an administrator: 300"


# -- limits --------------------------------------------------------------------------------------------------------


def _blobs_query(paths: int) -> str:
    names = json.dumps([f"items/{n}.json" for n in range(paths)])
    return f"{{ projects(first: 100) {{ nodes {{ repository {{ blobs(paths: {names}) {{ nodes {{ oid }} }} }} }} }} }}"


def test_complexity_is_gitlabs_score_and_its_limit_is_250_for_a_user_300_for_an_admin(server, bank, items):
    person(bank, "user", "glpat-user")
    # projects(first: 100) { nodes { repository { blobs(paths: N) { nodes { oid } } } } } scores 4N + 22:
    # blobs (2 + 1 + N + 1) * 2, repository +1, nodes +1, projects (+1) * 2 (base_field.rb, base_resolver.rb)
    for token, limit, fits in (("glpat-user", 250, 57), (TOKEN, 300, 69)):
        ok = raw(server, {"query": _blobs_query(fits)}, token)
        assert ok.status_code == 200 and "errors" not in ok.json(), ok.text
        over = raw(server, {"query": _blobs_query(fits + 1)}, token)
        score = 4 * (fits + 1) + 22
        assert (over.status_code, over.json()) == (
            200,
            {"errors": [{"message": f"Query has complexity of {score}, which exceeds max complexity of {limit}"}]},
        )
    scored = graphql_client(server, "glpat-user").execute(
        gql("{ queryComplexity { score limit } projects(first: 50) { nodes { id fullPath } } }")
    )
    # queryComplexity 1 + 2; projects (nodes 1 + 2, + 1) * (1 + 50 * 0.01) = 6
    assert scored["queryComplexity"] == {"score": 9, "limit": 250}


def test_a_sweep_page_of_100_projects_scores_67(server, items):
    sweep = """{ queryComplexity { score } group(fullPath: "iat-dev") {
      projects(includeSubgroups: true, first: 100) { pageInfo { hasNextPage endCursor }
        nodes { id fullPath repository { rootRef blobs(paths: ["item.json"]) { nodes { oid } }
                                         commit(ref: "HEAD") { sha } } } } } }"""
    assert raw(server, {"query": sweep}).json()["data"]["queryComplexity"] == {"score": 67 + 2}, (
        "and 2 for queryComplexity { score }"
    )


def test_depth_is_limited_to_20(server):
    nested = "name " + "ofType { " * 20 + "name" + " }" * 20
    answer = raw(server, {"query": f'{{ __type(name: "Project") {{ {nested} }} }}'})
    assert answer.json() == {"errors": [{"message": "Query has depth of 22, which exceeds max depth of 20"}]}
    fits = "name " + "ofType { " * 18 + "name" + " }" * 18
    assert "errors" not in raw(server, {"query": f'{{ __type(name: "Project") {{ {fits} }} }}'}).json()


def test_introspection_shows_the_repository_fields(server):
    client = graphql_client(server, schema=True)
    with client as session:
        session.execute(gql("{ queryComplexity { limit } }"))
    schema = client.schema
    assert schema is not None
    repository = schema.type_map["Repository"]
    assert {"rootRef", "blobs", "commit", "tree"} <= set(repository.fields)  # type: ignore[attr-defined]
    assert set(repository.fields["commit"].args) == {"ref"}  # type: ignore[attr-defined]
    assert "oid" in schema.type_map["RepositoryBlob"].fields  # type: ignore[attr-defined]
    assert server.counters()[POST] == 2, "the introspection query, then the query"


def test_queries_over_10000_characters_and_bad_variables_are_refused(server):
    long = raw(server, {"query": "{ queryComplexity { limit } }" + " " * 10_000})
    assert (long.status_code, long.json()) == (422, {"errors": [{"message": "Query too large"}]})
    assert raw(server, {"query": "{ queryComplexity { limit } }", "variables": "[1]"}).status_code == 422
    as_text = raw(server, {"query": "query($p: ID!) { project(fullPath: $p) { id } }", "variables": '{"p": "x/y"}'})
    assert as_text.json() == {"data": {"project": None}}, "variables may be a JSON string"
    empty = raw(server, {})
    assert empty.json() == {"errors": [{"message": "Unexpected end of document", "locations": []}]}


def test_get_requests_run_queries_too(server, items):
    answer = requests.get(
        f"{server.url}/api/graphql",
        params={
            "query": "query($p: ID!) { project(fullPath: $p) { fullPath } }",
            "variables": json.dumps({"p": items[0]["path_with_namespace"]}),
        },
        headers={"PRIVATE-TOKEN": TOKEN},
        timeout=10,
    )
    assert answer.json() == {"data": {"project": {"fullPath": items[0]["path_with_namespace"]}}}
    assert server.counters() == {GET: 1}


# -- broken repositories, faults and counts ------------------------------------------------------------------------


def test_a_missing_repository_reads_as_empty_and_the_page_is_intact(server, bank, items):
    shutil.rmtree(bank.repo_path(items[1]))
    nodes = graphql_client(server).execute(STATE, variable_values={"ids": [gid(p) for p in items]})["projects"]["nodes"]
    by_path = {n["fullPath"]: n["repository"] for n in nodes}
    assert by_path[items[1]["path_with_namespace"]] == {
        "rootRef": None,
        "blobs": {"nodes": []},
        "commit": None,
        "tree": None,
    }
    for project in (items[0], items[2]):
        assert by_path[project["path_with_namespace"]]["blobs"]["nodes"][0]["oid"] == git(
            bank, project, "rev-parse", "HEAD:item.json"
        )


def test_a_failing_gitaly_call_fails_the_whole_request_with_500(server, bank, items):
    server.faults.add(None, "status", status=500, path_regex=re.escape(f"/{items[1]['path_with_namespace']}.git"))
    answer = raw(server, {"query": STATE_TEXT, "variables": {"ids": [gid(p) for p in items]}})
    assert (answer.status_code, answer.json()) == (500, {"errors": [{"message": "Internal server error"}]})
    with pytest.raises(TransportQueryError, match="Internal server error"):
        graphql_client(server).execute(STATE, variable_values={"ids": [gid(items[1])]})
    server.faults.clear()
    assert (
        len(
            graphql_client(server).execute(STATE, variable_values={"ids": [gid(p) for p in items]})["projects"]["nodes"]
        )
        == 3
    )


def test_a_repository_slower_than_the_timeout_gives_null_and_errors_and_keeps_what_resolved(bank, items):
    with ItemBankServer(bank, tokens={TOKEN}, graphql_timeout=1.5) as server:
        server.faults.add(GITALY_ENDPOINT, "latency", seconds=2.0, times=1, path_regex=f"/{items[1]['path']}\\.git$")
        client = graphql_client(server)
        with pytest.raises(TransportQueryError) as partial:
            client.execute(STATE, variable_values={"ids": [gid(p) for p in items]})
        assert partial.value.data is not None
        nodes = partial.value.data["projects"]["nodes"]
        assert nodes[0]["fullPath"] == items[2]["path_with_namespace"]
        assert nodes[0]["repository"]["commit"]["sha"] == git(bank, items[2], "rev-parse", "HEAD"), "resolved first"
        slow = nodes[1]["repository"]
        assert slow["rootRef"] == "main", "the slow call itself completes"
        assert slow["blobs"] is None and slow["commit"] is None and slow["tree"] is None
        assert nodes[2] is None, "a later project's non-null id timed out: the node is null"
        errors = partial.value.errors or []
        assert errors[0] == {
            "message": "Timeout on Repository.blobs",
            "locations": [{"line": 8, "column": 9}],
            "path": ["projects", "nodes", 1, "repository", "blobs"],
        }
        assert {e["message"] for e in errors} == {
            "Timeout on Repository.blobs",
            "Timeout on Repository.commit",
            "Timeout on Repository.tree",
            "Timeout on Project.id",
        }
        whole = client.execute(STATE, variable_values={"ids": [gid(p) for p in items]})
        assert all(n["repository"]["commit"] for n in whole["projects"]["nodes"]), "the fault was used up"


def test_requests_are_counted_and_http_faults_apply_as_for_rest(server, items):
    client = graphql_client(server)
    server.faults.add(POST, "status", status=429, retry_after=3, times=1)
    with pytest.raises(TransportServerError) as limited:
        client.execute(STATE, variable_values={"ids": [gid(items[0])]})
    assert limited.value.code == 429
    server.faults.add(POST, "drop", times=1)
    with pytest.raises(TransportConnectionFailed):
        client.execute(STATE, variable_values={"ids": [gid(items[0])]})
    assert client.execute(STATE, variable_values={"ids": [gid(items[0])]})["projects"]["nodes"][0]["repository"]
    assert server.counters() == {POST: 3}
    server.reset_counters()
    raw(server, {"query": "{ queryComplexity { limit } }"}, "glpat-unknown")
    assert server.counters() == {POST: 1}, "refused requests count too"


def test_a_json_array_is_a_batch_answered_in_order(server, items):
    batch = [
        {"query": "query($p: ID!) { project(fullPath: $p) { fullPath } }", "variables": {"p": p["path_with_namespace"]}}
        for p in (items[2], items[0])
    ]
    answer = requests.post(f"{server.url}/api/graphql", json=batch, headers={"PRIVATE-TOKEN": TOKEN}, timeout=10)
    assert answer.json() == [
        {"data": {"project": {"fullPath": items[2]["path_with_namespace"]}}},
        {"data": {"project": {"fullPath": items[0]["path_with_namespace"]}}},
    ]
    assert server.counters() == {POST: 1}
