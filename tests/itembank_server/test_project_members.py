"""Project membership and members including inherited ones (https://docs.gitlab.com/api/members/), driven with
python-gitlab (``project.members``, ``project.members_all``, ``group.members_all``) where it has the call.

A user's role on a project is the highest of its project membership and its group memberships; ``members/all``
answers per user the highest membership, and 404 ``{"message": "404 Not found"}`` for a user with none
(``find_by!`` in lib/api/members.rb).
"""

from __future__ import annotations

import gitlab
import pytest
import requests
from itembank_helpers import GROUP, TOKEN

from itembank_server import ItemBank
from itembank_server.users import DEVELOPER, GUEST, MAINTAINER, OWNER, REPORTER

NOT_FOUND = {"message": "404 Not found"}
FORBIDDEN = {"message": "403 Forbidden"}


def person(bank: ItemBank, name: str) -> dict:
    user = bank.create_user(name)
    bank.add_token(user["id"], f"glpat-{name}")
    return user


def client(server, name: str | None = None) -> gitlab.Gitlab:
    token = TOKEN if name is None else f"glpat-{name}"
    return gitlab.Gitlab(server.url, private_token=token, retry_transient_errors=False)


def call(server, method: str, route: str, name: str | None = None, **payload) -> requests.Response:
    token = TOKEN if name is None else f"glpat-{name}"
    url = f"{server.url}/api/v4{route}"
    return requests.request(method, url, headers={"PRIVATE-TOKEN": token}, json=payload or None, timeout=10)


@pytest.fixture
def setup(bank: ItemBank) -> dict:
    """A private group (``reader``: Reporter) with a subgroup holding two private projects."""
    group = bank.create_group(GROUP)
    subgroup = bank.create_group(f"{GROUP}/math")
    reader = person(bank, "reader")
    bank.add_member(group, reader["id"], REPORTER)
    return {
        "group": group,
        "subgroup": subgroup,
        "reader": reader,
        "item": bank.create_project(subgroup, "item", {"item.json": {"id": 1}}),
        "other": bank.create_project(subgroup, "other"),
    }


def test_project_members_are_added_listed_and_removed_through_python_gitlab(server, bank, setup):
    outsider = person(bank, "outsider")
    project = client(server).projects.get(setup["item"]["id"])
    assert project.members.list(get_all=True) == []
    created = project.members.create({"user_id": outsider["id"], "access_level": DEVELOPER})
    assert (created.username, created.access_level) == ("outsider", DEVELOPER)
    assert [(m.username, m.access_level) for m in project.members.list(get_all=True)] == [("outsider", DEVELOPER)]
    assert project.members.get(outsider["id"]).access_level == DEVELOPER
    assert client(server, "outsider").projects.get(setup["item"]["id"]).path == "item"
    missing = call(server, "GET", f"/projects/{setup['other']['id']}", "outsider")
    assert missing.status_code == 404, "a project membership opens that project only"

    project.members.delete(outsider["id"])
    assert bank.project_member(setup["item"], outsider["id"]) is None
    gone = call(server, "GET", f"/projects/{setup['item']['id']}", "outsider")
    assert (gone.status_code, gone.json()) == (404, {"message": "404 Project Not Found"})
    again = call(server, "DELETE", f"/projects/{setup['item']['id']}/members/{outsider['id']}")
    assert (again.status_code, again.json()) == (404, NOT_FOUND)


def test_the_role_on_a_project_is_the_highest_of_project_and_group_memberships(server, bank, setup):
    item, other = setup["item"]["id"], setup["other"]["id"]
    reader = setup["reader"]
    assert bank.project_access_level(reader, item) == REPORTER
    hooks = call(server, "GET", f"/projects/{item}/hooks", "reader")
    assert (hooks.status_code, hooks.json()) == (403, FORBIDDEN)
    bank.add_project_member(item, reader["id"], MAINTAINER)
    assert bank.project_access_level(reader, item) == MAINTAINER
    assert call(server, "GET", f"/projects/{item}/hooks", "reader").status_code == 200
    assert call(server, "GET", f"/projects/{other}/hooks", "reader").status_code == 403
    bank.add_member(setup["subgroup"], reader["id"], OWNER)
    assert bank.project_access_level(reader, other) == OWNER and bank.project_access_level(reader, item) == OWNER


def test_adding_members_answers_as_gitlab(server, bank, setup):
    keeper = person(bank, "keeper")
    outsider = person(bank, "outsider")
    bank.add_project_member(setup["item"], keeper["id"], MAINTAINER)
    route = f"/projects/{setup['item']['id']}/members"
    reader_id = setup["reader"]["id"]
    cases = [
        ("keeper", {"user_id": outsider["id"], "access_level": OWNER}, 403, FORBIDDEN),
        ("keeper", {"user_id": 9999, "access_level": GUEST}, 404, {"message": "404 User Not Found"}),
        ("keeper", {"user_id": keeper["id"], "access_level": GUEST}, 409, {"message": "Member already exists"}),
        ("keeper", {"user_id": outsider["id"]}, 400, {"error": "access_level is missing"}),
        (
            "keeper",
            {"user_id": outsider["id"], "access_level": 35},
            400,
            {"message": {"access_level": ["is not included in the list"]}},
        ),
        (
            "keeper",
            {"user_id": reader_id, "access_level": GUEST},
            400,
            {
                "message": {
                    "access_level": [
                        f"should be greater than or equal to Reporter inherited membership from group {GROUP}"
                    ]
                }
            },
        ),
        ("reader", {"user_id": outsider["id"], "access_level": GUEST}, 403, FORBIDDEN),
    ]
    for name, payload, status, body in cases:
        response = call(server, "POST", route, name, **payload)
        assert (response.status_code, response.json()) == (status, body), payload
    assert [m["username"] for m in bank.project_members(setup["item"])] == ["keeper"]
    owner = call(server, "POST", route, None, user_id=outsider["id"], access_level=OWNER)
    assert owner.status_code == 201 and owner.json()["access_level"] == OWNER
    removing_owner = call(server, "DELETE", f"{route}/{outsider['id']}", "keeper")
    assert (removing_owner.status_code, removing_owner.json()) == (403, FORBIDDEN)
    assert call(server, "DELETE", f"{route}/{outsider['id']}").status_code == 204


def test_group_members_below_an_inherited_role_are_refused(server, setup):
    route = f"/groups/{setup['subgroup']['id']}/members"
    lower = call(server, "POST", route, None, user_id=setup["reader"]["id"], access_level=GUEST)
    problem = f"should be greater than or equal to Reporter inherited membership from group {GROUP}"
    assert (lower.status_code, lower.json()) == (400, {"message": {"access_level": [problem]}})
    higher = call(server, "POST", route, None, user_id=setup["reader"]["id"], access_level=DEVELOPER)
    assert higher.status_code == 201


def test_members_all_includes_inherited_memberships_with_the_highest_role(server, bank, setup):
    reader, developer = setup["reader"], person(bank, "developer")
    bank.add_member(setup["subgroup"], developer["id"], DEVELOPER)
    bank.add_project_member(setup["item"], reader["id"], MAINTAINER)
    root = client(server)
    subgroup = root.groups.get(setup["subgroup"]["id"])
    assert subgroup.members_all.get(reader["id"]).access_level == REPORTER, "inherited from the parent group"
    assert [(m.username, m.access_level) for m in subgroup.members_all.list(get_all=True)] == [
        ("reader", REPORTER),
        ("developer", DEVELOPER),
    ]
    assert [m.username for m in subgroup.members.list(get_all=True)] == ["developer"], "direct members only"
    project = root.projects.get(setup["item"]["id"])
    assert project.members_all.get(reader["id"]).access_level == MAINTAINER, "the project membership is higher"
    assert project.members_all.get(developer["id"]).access_level == DEVELOPER
    assert {m.username: m.access_level for m in project.members_all.list(get_all=True)} == {
        "reader": MAINTAINER,
        "developer": DEVELOPER,
    }

    outsider = person(bank, "outsider")
    for route in (f"/groups/{setup['subgroup']['id']}", f"/projects/{setup['item']['id']}"):
        response = call(server, "GET", f"{route}/members/all/{outsider['id']}")
        assert (response.status_code, response.json()) == (404, NOT_FOUND)
    with pytest.raises(gitlab.GitlabGetError) as missing:
        project.members_all.get(outsider["id"])
    assert missing.value.response_code == 404 and missing.value.error_message == "404 Not found"
    listed = call(server, "GET", f"/groups/{setup['subgroup']['id']}/members/all", "reader")
    assert listed.status_code == 200 and listed.headers["X-Total"] == "2"


def test_members_all_needs_read_access(server, bank, setup):
    outsider = person(bank, "outsider")
    for route in (f"/groups/{GROUP}/members/all", f"/projects/{setup['item']['id']}/members/all/1"):
        response = call(server, "GET", route, "outsider")
        assert response.status_code == 404 and response.json()["message"].startswith("404 ")
    bank.add_project_member(setup["item"], outsider["id"], GUEST)
    assert call(server, "GET", f"/projects/{setup['item']['id']}/members/all", "outsider").status_code == 200
    parent_members = call(server, "GET", f"/groups/{GROUP}/members/all", "outsider")
    assert (parent_members.status_code, parent_members.json()) == (403, FORBIDDEN)


def test_deleting_a_project_deletes_its_memberships(bank, setup):
    bank.add_project_member(setup["item"], setup["reader"]["id"], MAINTAINER)
    bank.delete_project(setup["item"]["id"])
    assert bank._rows("SELECT count(*) FROM project_members")[0][0] == 0


def test_a_project_shows_the_users_own_permissions(server, bank, setup):
    reader = setup["reader"]
    bank.add_project_member(setup["item"], reader["id"], MAINTAINER)
    as_reader = client(server, "reader").projects.get(setup["item"]["id"]).permissions
    assert as_reader == {
        "project_access": {"access_level": MAINTAINER, "notification_level": 3},
        "group_access": {"access_level": REPORTER, "notification_level": 3},
    }
    as_admin = client(server).projects.get(setup["item"]["id"]).permissions
    assert as_admin == {"project_access": None, "group_access": None}, "an administrator without memberships"
    listed = call(server, "GET", f"/groups/{GROUP}/projects", "reader", include_subgroups="true").json()
    assert all("permissions" not in project for project in listed), "Entities::Project has none"
