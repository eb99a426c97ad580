"""The deploy test's identity provider login: a person logs into the deployed UI through the demo provider
(docker-compose.oidc.yaml), in Debian's chromium, over the TLS proxy; the provider's ``groups`` claim decides the
Airflow roles.

The browser resolves the external name and the provider's name to this machine, where the proxy and the provider
publish their ports; the API server reaches the provider under the same name inside the compose network, so the
issuer, the redirect URI and every endpoint are the ones a real deployment uses.
"""

from __future__ import annotations

from devstack.browser import chromium, log_in_through_idp
from devstack.oidc_provider import redirect_uri
from imrt_compat.roles import AUTOMATION_ROLE

from .checks import RUN_WITHIN, Check, dag_run
from .probe import DAG_ID, Airflow, wait_for
from .settings import ADMIN, EXTERNAL_HOST, IDP_HOST, OIDC_PROVIDER, Deployment

PUBLIC = "Public"  # AUTH_USER_REGISTRATION_ROLE of imrt_compat.oauth_login: no permission
DAG = f"/api/v2/dags/{DAG_ID}"
EXPECTED_ROLES = {"ada.automation": {AUTOMATION_ROLE, PUBLIC}, "vic.viewer": {"Viewer", PUBLIC}}


def roles(airflow: Airflow, username: str) -> set[str]:
    """The FAB user's roles, as the admin sees them."""
    admin = airflow.token(ADMIN, "airflow_admin_password")
    answer = airflow.call("GET", f"/auth/fab/v1/users/{username}", token=admin)
    answer.raise_for_status()
    return {role["name"] for role in answer.json()["roles"]}


def rights(airflow: Airflow, token: str) -> dict[str, int]:
    """What the logged-in user may do, as HTTP statuses: read the DAG, pause it, read connections, start a run
    (a dry run, which writes nothing; a started one is followed to its end)."""
    started = airflow.call(
        "POST", f"{DAG}/dagRuns", token=token, json={"logical_date": None, "conf": {"dry_run": True}}
    )
    if started.status_code == 200:
        run_id = started.json()["dag_run_id"]
        wait_for(
            f"dry run {run_id} ended", lambda: dag_run(airflow, run_id)["state"] in ("success", "failed"), RUN_WITHIN, 3
        )
    return {
        "read the DAG": airflow.call("GET", DAG, token=token).status_code,
        "pause it": airflow.call("PATCH", DAG, token=token, json={"is_paused": True}).status_code,
        "read connections": airflow.call("GET", "/api/v2/connections", token=token).status_code,
        "start a dry run": started.status_code,
    }


EXPECTED_RIGHTS = {
    "ada.automation": {"read the DAG": 200, "pause it": 403, "read connections": 403, "start a dry run": 200},
    "vic.viewer": {"read the DAG": 200, "pause it": 403, "read connections": 403, "start a dry run": 403},
}


def check_idp_login(deployment: Deployment, airflow: Airflow) -> Check:
    """Each mapped group's user logs in through the provider and gets its role and only its rights."""
    callback = redirect_uri(deployment.external_url, OIDC_PROVIDER) + "?"
    evidence, ok = [], True
    with chromium(host_map={EXTERNAL_HOST: "127.0.0.1", IDP_HOST: "127.0.0.1"}) as browser:
        for username in EXPECTED_ROLES:
            # The browser does not know the run's CA; requests (the API checks) verifies the certificate against it.
            login = log_in_through_idp(
                browser,
                deployment.external_url,
                f"/dags/{DAG_ID}",
                OIDC_PROVIDER,
                deployment.idp_issuer,
                username,
                deployment.idp_password(username),
                ignore_https_errors=True,
            )
            came_back = any(url.startswith(callback) and "code=" in url for url in login.visited)
            got_roles = roles(airflow, username) if login.tokens else set()
            got_rights = rights(airflow, login.tokens[0]) if len(login.tokens) == 1 else {}
            held = (
                came_back
                and len(login.tokens) == 1
                and got_roles == EXPECTED_ROLES[username]
                and got_rights == EXPECTED_RIGHTS[username]
            )
            ok = ok and held
            evidence.append(
                f"{username}: back through {callback[:-1]}: {came_back}, Airflow token: "
                f"{len(login.tokens) == 1}, roles {sorted(got_roles)}, rights {got_rights}"
            )
    return Check("login through the identity provider", ok, "; ".join(evidence))
