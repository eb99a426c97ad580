"""FAB's login through an OpenID Connect identity provider, as a person does it, in a real browser.

The identity provider is ``devstack.oidc_provider`` (django-oauth-toolkit behind Keycloak's URL layout, realm
``imrt``) as a local process on 127.0.0.1, with static users whose ``groups`` claim carries Keycloak-style full
group paths. The module's real stack runs the deployments' auth manager with the deployments' OAuth configuration,
``imrt_compat/oauth_login.py`` as ``[fab] config_file``, configured the way a deployment does it: the discovery
URL, the client id and the role mapping in the environment, the client secret in a file.

Debian's chromium under playwright opens a DAG page of the UI, is sent to FAB's login page, presses "Sign In with
keycloak", fills the provider's own form and comes back logged in. The Airflow token the browser then holds (the
``_token`` cookie) is used on the REST API: the automation group's user got ``IMRT Sync Automation`` (may trigger
item_synchronization, may not pause it or read connections), the viewers' user ``Viewer`` (reads, may not trigger),
a user of no mapped group nothing. A group changed at the provider changes the roles at the next login.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests
from e2e_helpers import wait_until
from stack_fixtures import RealStack

from devstack.airflow_stack import free_port
from devstack.browser import log_in_through_idp
from devstack.oidc_provider import IdpClient, IdpConfig, IdpUser, OidcProvider, redirect_uri
from imrt_compat.roles import AUTOMATION_ROLE
from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

PROVIDER = "keycloak"  # FAB's provider name: its button and the redirect URI's last segment
CLIENT_ID = "imrt-airflow"
AUTOMATION_GROUP, VIEWER_GROUP = "/imrt/sync-automation", "/imrt/viewers"  # Keycloak's full group paths
ROLES_MAPPING = {AUTOMATION_GROUP: [AUTOMATION_ROLE], VIEWER_GROUP: ["Viewer"]}
PUBLIC = "Public"  # AUTH_USER_REGISTRATION_ROLE: every IdP user has it; it holds no permission
DAG = f"/api/v2/dags/{DAG_ID}"
CACHE_TTL = 5

STACK = RealStack(
    name="oidc",
    group="iat-oidc",
    token="glpat-oidc-login-token",
    bank_size=1,
    seed=23,
    options={"users": {"admin": "Admin"}, "auth_manager": "fab"},
)


def _user(username: str, given_name: str, groups: tuple[str, ...]) -> IdpUser:
    return IdpUser(username, secrets.token_urlsafe(12), groups, f"{username}@imrt.example.org", given_name, "Tester")


@dataclass
class Oidc:
    provider: OidcProvider
    config: IdpConfig
    config_file: Path
    secret_file: Path
    airflow_port: int

    def user(self, username: str) -> IdpUser:
        return next(u for u in self.config.users if u.username == username)

    def move(self, username: str, groups: tuple[str, ...]) -> None:
        """Change a user's groups at the provider (its administrator's change, in the running provider)."""
        self.config = self.config.with_groups(username, groups)
        self.config.write(self.config_file)
        self.provider.apply()


@pytest.fixture(scope="module")
def oidc(tmp_path_factory) -> Iterator[Oidc]:
    """The identity provider, started before the stack: its client's redirect URI names the stack's port."""
    root = tmp_path_factory.mktemp("oidc")
    airflow_port = free_port()
    secret_file = root / "imrt_oidc_client_secret"  # what a Docker secret or a mounted Kubernetes Secret is
    secret_file.touch(mode=0o600)
    secret_file.write_text(secrets.token_urlsafe(32) + "\n")
    config = IdpConfig(
        realm="imrt",
        clients=(
            IdpClient(CLIENT_ID, str(secret_file), (redirect_uri(f"http://127.0.0.1:{airflow_port}", PROVIDER),)),
        ),
        users=(
            _user("ada.automation", "Ada", (AUTOMATION_GROUP,)),
            _user("vic.viewer", "Vic", (VIEWER_GROUP,)),
            _user("nora.nogroup", "Nora", ("/imrt/other",)),
        ),
    )
    config_file = config.write(root / "idp.json")
    with OidcProvider(config_file, root / "state") as provider:
        yield Oidc(provider, config, config_file, secret_file, airflow_port)


@pytest.fixture(scope="module")
def stack_spec(oidc) -> RealStack:
    """STACK with the deployments' OAuth configuration, on the port the provider's client expects."""
    oauth_config = importlib.util.find_spec("imrt_compat.oauth_login").origin
    return replace(
        STACK,
        options={**STACK.options, "api_port": oidc.airflow_port},
        extra_env={
            "AIRFLOW__FAB__CONFIG_FILE": oauth_config,
            "IMRT_OIDC_DISCOVERY_URL": oidc.provider.discovery_url,
            "IMRT_OIDC_CLIENT_ID": CLIENT_ID,
            "IMRT_OIDC_CLIENT_SECRET_FILE": str(oidc.secret_file),
            "IMRT_OIDC_ROLES_MAPPING": json.dumps(ROLES_MAPPING),
            # The API server keeps a user's roles for [fab] cache_ttl seconds (30 by default): shorter here, so that
            # the roles of a second login are in force soon (docs/authentication.md).
            "AIRFLOW__FAB__CACHE_TTL": str(CACHE_TTL),
        },
    )


def log_in(browser, stack, oidc: Oidc, username: str, shots: Path, reads_dag: bool = True) -> str:
    """Log ``username`` into the UI through the identity provider; return the Airflow token the browser got."""
    login = log_in_through_idp(
        browser,
        stack.url,
        f"/dags/{DAG_ID}",
        PROVIDER,
        oidc.provider.issuer,
        username,
        oidc.user(username).password,
        wait_for_text="list_ids" if reads_dag else None,
        screenshots=shots,
    )
    assert login.password_fields_at_airflow == 0  # FAB's login page: one button per provider, no password form
    assert login.button_text == f"Sign In with {PROVIDER}"
    # the provider redirected to /auth/oauth-authorized/keycloak, FAB logged the user in and went where it began
    assert login.final_url.rstrip("/").endswith(f"/dags/{DAG_ID}")
    callback = redirect_uri(stack.url, PROVIDER) + "?"
    assert any(url.startswith(callback) and "code=" in url for url in login.visited), login.visited
    assert len(login.tokens) == 1, "FAB hands the browser an Airflow token after the login"
    return login.tokens[0]


def roles(stack, username: str) -> set[str]:
    """The FAB user's roles, as the admin sees them (FAB's users API)."""
    response = stack.api("GET", f"/auth/fab/v1/users/{username}")
    assert response.status_code == 200, response.text
    return {role["name"] for role in response.json()["roles"]}


def trigger_status(stack, token: str) -> int:
    response = stack.api("POST", f"{DAG}/dagRuns", token=token, json={"logical_date": None, "conf": {}})
    return response.status_code


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("oidc-screens")


def test_the_automation_group_gets_the_automation_role(stack, oidc, browser, shots):
    token = log_in(browser, stack, oidc, "ada.automation", shots)
    assert roles(stack, "ada.automation") == {AUTOMATION_ROLE, PUBLIC}
    user = stack.api("GET", "/auth/fab/v1/users/ada.automation").json()
    assert (user["first_name"], user["email"]) == ("Ada", "ada.automation@imrt.example.org")  # from the claims

    triggered = stack.api("POST", f"{DAG}/dagRuns", token=token, json={"logical_date": None, "conf": {}})
    assert triggered.status_code == 200, triggered.text
    assert triggered.json()["triggering_user_name"] == "ada.automation"
    assert stack.api("GET", DAG, token=token).status_code == 200
    refused = {
        "pause": stack.api("PATCH", DAG, token=token, json={"is_paused": True}),
        "connections": stack.api("GET", "/api/v2/connections", token=token),
        "users": stack.api("GET", "/auth/fab/v1/users", token=token),
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
    assert stack.api("GET", DAG).json()["is_paused"] is True  # unchanged


def test_the_viewer_group_gets_viewer(stack, oidc, browser, shots):
    token = log_in(browser, stack, oidc, "vic.viewer", shots)
    assert roles(stack, "vic.viewer") == {"Viewer", PUBLIC}
    assert stack.api("GET", DAG, token=token).status_code == 200
    assert stack.api("GET", "/api/v2/connections", token=token).status_code == 403
    assert trigger_status(stack, token) == 403
    assert stack.api("PATCH", DAG, token=token, json={"is_paused": False}).status_code == 403


def test_a_user_of_no_mapped_group_may_do_nothing(stack, oidc, browser, shots):
    token = log_in(browser, stack, oidc, "nora.nogroup", shots, reads_dag=False)
    assert roles(stack, "nora.nogroup") == {PUBLIC}
    assert stack.api("GET", DAG, token=token).status_code == 403
    assert trigger_status(stack, token) == 403


def test_an_idp_user_has_no_password_at_airflow(stack, oidc):
    """Only the deployments' own FAB users (the admin, the automation account) get tokens from /auth/token."""
    user = oidc.user("ada.automation")
    response = requests.post(
        f"{stack.url}/auth/token", json={"username": user.username, "password": user.password}, timeout=30
    )
    assert response.status_code == 401
    assert stack.token("admin")  # under AUTH_OAUTH too


def test_a_group_changed_at_the_provider_changes_the_roles_at_the_next_login(stack, oidc, browser, shots):
    oidc.move("vic.viewer", (AUTOMATION_GROUP,))
    token = log_in(browser, stack, oidc, "vic.viewer", shots)
    assert roles(stack, "vic.viewer") == {AUTOMATION_ROLE, PUBLIC}  # AUTH_ROLES_SYNC_AT_LOGIN: Viewer is gone
    # the API server may still hold the user's old roles for [fab] cache_ttl seconds
    assert wait_until(lambda: trigger_status(stack, token) == 200, CACHE_TTL + 15, "the new roles in force")
    assert stack.api("GET", "/api/v2/connections", token=token).status_code == 403
