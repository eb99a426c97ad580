"""The deployments' auth manager (``imrt_compat.fab_auth.ImrtFabAuthManager``, FAB) through the real API server.

Users and the automation role are made by ``python -m imrt_compat.roles``, the command the compose init and the Helm
job run; tokens come from FAB's JSON-only ``POST /auth/token``. The automation account may start and read
item_synchronization (legacy ``POST /sync`` and the REST trigger) and nothing else; a viewer may not start a sync.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import quote

import jwt
import pytest
import requests
from stack_fixtures import RealStack, unpause_and_finish_scheduled_run

from imrt_compat.roles import AUTOMATION_ROLE
from imrt_sync import DAG_ID, EVENTS_DAG_ID

pytestmark = pytest.mark.e2e

USERS = {"admin": "Admin", "automation": AUTOMATION_ROLE, "viewer": "Viewer"}
DAG = f"/api/v2/dags/{DAG_ID}"


STACK = RealStack(
    name="fab",
    group="iat-fab",
    token="glpat-fab-auth-token",
    bank_size=3,
    seed=14,
    options={"users": USERS, "auth_manager": "fab"},
)


@pytest.fixture(scope="module")
def stack(stack):
    """The module's stack, unpaused, its scheduled run finished: POST /sync answers 409 while paused or running."""
    unpause_and_finish_scheduled_run(stack, timeout=300)
    return stack


@pytest.fixture(scope="module")
def tokens(stack) -> dict[str, str]:
    return {user: stack.token(user) for user in USERS}


def call(stack, method: str, path: str, token: str, **kwargs) -> requests.Response:
    return stack.api(method, path, token=token, **kwargs)


def test_the_api_server_runs_the_fab_auth_manager(stack):
    assert stack.environment["AIRFLOW__CORE__AUTH_MANAGER"] == "imrt_compat.fab_auth.ImrtFabAuthManager"
    form = requests.post(
        f"{stack.url}/auth/token", data={"username": "admin", "password": stack.password("admin")}, timeout=30
    )
    assert form.status_code == 422, "FAB's /auth/token takes JSON only"
    wrong = requests.post(f"{stack.url}/auth/token", json={"username": "automation", "password": "wrong"}, timeout=30)
    assert wrong.status_code == 401


def test_a_token_issued_by_another_server_is_refused(stack):
    """An identity provider's access token (the runbook's OpenAM one) is not an Airflow token."""
    now = int(time.time())
    foreign = jwt.encode(
        {"sub": "automation", "iat": now, "nbf": now, "exp": now + 600}, secrets.token_bytes(64), algorithm="HS512"
    )
    assert call(stack, "POST", "/sync", foreign).status_code == 403
    assert call(stack, "POST", f"{DAG}/dagRuns", foreign, json={"logical_date": None}).status_code == 403


def test_automation_starts_syncs_through_the_legacy_route_and_the_rest_api(stack, tokens):
    token = tokens["automation"]
    started = call(stack, "POST", "/sync", token)
    assert started.status_code == 200, started.text
    execution_id = started.json()["jobExecutionId"]
    followed = call(stack, "GET", f"/sync/{execution_id}", token)
    assert followed.status_code == 200 and followed.json()["jobExecutionId"] == execution_id

    triggered = call(stack, "POST", f"{DAG}/dagRuns", token, json={"logical_date": None, "conf": {"source": "cron"}})
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["dag_run_id"]
    assert triggered.json()["triggered_by"] == "rest_api"

    # ... and reads what it started
    assert call(stack, "GET", DAG, token).status_code == 200
    assert call(stack, "GET", f"{DAG}/dagRuns/{quote(run_id, safe='')}", token).status_code == 200
    assert call(stack, "GET", f"{DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances", token).status_code == 200
    # ... and the pushes' runs, which it may not start (the hook receiver does)
    events_dag = f"/api/v2/dags/{EVENTS_DAG_ID}"
    assert call(stack, "GET", f"{events_dag}/dagRuns", token).status_code == 200
    started_events = call(stack, "POST", f"{events_dag}/dagRuns", token, json={"logical_date": None, "conf": {}})
    assert started_events.status_code == 403, started_events.text


def test_automation_may_not_pause_delete_or_change_the_dag_or_its_runs(stack, tokens):
    token = tokens["automation"]
    run_id = stack.trigger(DAG_ID, conf={"source": "admin"})
    run = f"{DAG}/dagRuns/{quote(run_id, safe='')}"
    before = stack.dag_run(DAG_ID, run_id)
    forbidden = {
        "pause": call(stack, "PATCH", DAG, token, json={"is_paused": True}),
        "pause (update_mask)": call(stack, "PATCH", f"{DAG}?update_mask=is_paused", token, json={"is_paused": True}),
        "delete DAG": call(stack, "DELETE", DAG, token),
        "patch run state": call(stack, "PATCH", run, token, json={"state": "failed"}),
        "patch run note": call(stack, "PATCH", run, token, json={"note": "x"}),
        "clear run": call(stack, "POST", f"{run}/clear", token, json={"dry_run": True}),
        "delete run": call(stack, "DELETE", run, token),
        "abandon": call(stack, "PUT", "/abandon/1", token),
        "connections": call(stack, "GET", "/api/v2/connections", token),
        "variables": call(stack, "GET", "/api/v2/variables", token),
    }
    assert {what: r.status_code for what, r in forbidden.items()} == dict.fromkeys(forbidden, 403)
    after = stack.dag_run(DAG_ID, run_id)
    assert (after["note"], after["dag_run_id"]) == (before["note"], run_id)
    assert after["state"] != "failed" or before["state"] == "failed"
    assert stack.api("GET", DAG).json()["is_paused"] is False


def test_the_refused_requests_are_allowed_to_an_admin(stack, tokens):
    """The 403s above come from the role, not from a broken route: the admin gets through."""
    run = f"{DAG}/dagRuns/{quote(stack.trigger(DAG_ID, conf={'source': 'admin'}), safe='')}"
    admin = tokens["admin"]
    assert call(stack, "PATCH", run, admin, json={"note": "checked"}).status_code == 200
    assert call(stack, "PATCH", run, admin, json={"state": "failed"}).status_code == 200
    assert call(stack, "DELETE", run, admin).status_code == 204


def test_a_viewer_reads_but_may_not_start_a_sync(stack, tokens):
    token = tokens["viewer"]
    assert call(stack, "GET", DAG, token).status_code == 200
    assert call(stack, "POST", "/sync", token).status_code == 403
    assert call(stack, "POST", f"{DAG}/dagRuns", token, json={"logical_date": None}).status_code == 403
    assert call(stack, "PATCH", DAG, token, json={"is_paused": True}).status_code == 403
