"""FAB's login through the organisation's OpenID Connect identity provider: the ``webserver_config.py`` of both
deployments, configured from the environment (docs/authentication.md).

Point ``[fab] config_file`` at this file (the image has it at ``/opt/airflow/include/imrt_compat/oauth_login.py``;
FAB executes it as a config file, so it uses absolute imports only), or write a ``webserver_config.py`` holding
``from imrt_compat.oauth_login import *``. Nothing here is secret or site-specific; the deployment sets:

``IMRT_OIDC_DISCOVERY_URL`` (required)
    the IdP's OpenID Connect discovery document, e.g. Keycloak's
    ``https://sso.example.org/realms/<realm>/.well-known/openid-configuration``: Authlib takes the authorization,
    token, userinfo and key endpoints and the issuer from it (``server_metadata_url``).
``IMRT_OIDC_CLIENT_ID`` (required)
    the client registered at the IdP for Airflow (confidential, authorization-code flow). Its redirect URI is
    ``https://<external host>/auth/oauth-authorized/<IMRT_OIDC_PROVIDER>``.
``IMRT_OIDC_CLIENT_SECRET_FILE`` (default ``/run/secrets/imrt_oidc_client_secret``, where Compose mounts the Docker
    secret ``imrt_oidc_client_secret``)
    a file holding the client secret (a Kubernetes Secret mounted as a file in the chart). Never an environment
    variable: every process of the container, tasks included, would inherit it.
``IMRT_OIDC_ROLES_MAPPING`` (required)
    JSON object from a value of the IdP's ``groups`` claim to FAB roles, e.g.
    ``{"/imrt-sync-automation": ["IMRT Sync Automation"], "/imrt-viewers": ["Viewer"]}``. The keys must be the
    claim's values exactly as the IdP sends them: Keycloak's group-membership mapper sends full paths
    (``/parent/group``) unless "Full group path" is off.
``IMRT_OIDC_PROVIDER`` (default ``keycloak``)
    FAB's name of the provider: the login button and the last segment of the redirect URI. FAB reads the user per
    name (``FabAirflowSecurityManagerOverride.get_oauth_user_info``, provider 3.10.2): for ``keycloak`` it GETs
    ``openid-connect/userinfo`` relative to ``api_base_url``; for a name FAB does not know, the ``userinfo_endpoint``
    of the discovery document. Both read ``preferred_username`` (the FAB user name), ``given_name``,
    ``family_name``, ``email`` and ``groups``.
``IMRT_OIDC_API_BASE_URL`` (default: the discovery URL without ``.well-known/openid-configuration``, plus
    ``protocol/``: Keycloak's ``https://sso.example.org/realms/<realm>/protocol/``)
    the base of FAB's relative API calls; ends with ``/`` (relative URLs are joined to it).
``IMRT_OIDC_SCOPE`` (default ``openid profile email``)
    the scopes asked for; the IdP must put ``groups`` in the userinfo answer for them.

Every login (``AUTH_ROLES_SYNC_AT_LOGIN``) sets the user's roles from the ``groups`` claim, plus
``AUTH_USER_REGISTRATION_ROLE`` ``Public``, which holds no permission: a user in none of the mapped groups is
registered but may do nothing, and a user moved to another group at the IdP gets the new roles on the next login.
The authorization-code flow uses PKCE (S256). The deployments' own FAB users (the admin, the automation account)
keep their passwords and ``POST /auth/token``; users registered through the IdP have no password there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from flask_appbuilder.const import AUTH_OAUTH

from imrt_sync.errors import PermanentError

DEFAULT_PROVIDER = "keycloak"
DEFAULT_SCOPE = "openid profile email"
DEFAULT_CLIENT_SECRET_FILE = "/run/secrets/imrt_oidc_client_secret"
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
REGISTRATION_ROLE = "Public"  # FAB's role without permissions


class OAuthConfigError(RuntimeError, PermanentError):
    """The environment does not describe a usable identity provider login."""


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise OAuthConfigError(f"{name} is not set: the OIDC login (imrt_compat.oauth_login) needs it")
    return value


def api_base_url(environ: Mapping[str, str]) -> str:
    """``IMRT_OIDC_API_BASE_URL``, or Keycloak's ``<issuer>/protocol/`` derived from the discovery URL; ends in /."""
    explicit = environ.get("IMRT_OIDC_API_BASE_URL", "").strip()
    if explicit:
        return explicit if explicit.endswith("/") else explicit + "/"
    discovery = _required(environ, "IMRT_OIDC_DISCOVERY_URL")
    if not discovery.endswith(DISCOVERY_SUFFIX):
        raise OAuthConfigError(
            f"IMRT_OIDC_API_BASE_URL is not set and IMRT_OIDC_DISCOVERY_URL does not end in {DISCOVERY_SUFFIX}"
        )
    return discovery.removesuffix(DISCOVERY_SUFFIX) + "/protocol/"


def client_secret(environ: Mapping[str, str]) -> str:
    """The client secret, read from the file ``IMRT_OIDC_CLIENT_SECRET_FILE`` (its final newline dropped)."""
    path = Path(environ.get("IMRT_OIDC_CLIENT_SECRET_FILE", "").strip() or DEFAULT_CLIENT_SECRET_FILE)
    try:
        secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise OAuthConfigError(f"cannot read the OIDC client secret file {path}: {exc.strerror}") from None
    if not secret:
        raise OAuthConfigError(f"the OIDC client secret file {path} is empty")
    return secret


def roles_mapping(environ: Mapping[str, str]) -> dict[str, list[str]]:
    """``IMRT_OIDC_ROLES_MAPPING``: {claim value: [FAB role, ...]}."""
    text = _required(environ, "IMRT_OIDC_ROLES_MAPPING")
    try:
        mapping = json.loads(text)
    except ValueError as exc:
        raise OAuthConfigError(f"IMRT_OIDC_ROLES_MAPPING is not JSON: {exc}") from None
    valid = isinstance(mapping, dict) and all(
        isinstance(group, str)
        and group
        and isinstance(roles, list)
        and roles
        and all(isinstance(role, str) and role for role in roles)
        for group, roles in mapping.items()
    )
    if not valid or not mapping:
        raise OAuthConfigError('IMRT_OIDC_ROLES_MAPPING must be a JSON object {"<group>": ["<FAB role>", ...], ...}')
    return mapping


def oauth_providers(environ: Mapping[str, str]) -> list[dict]:
    """FAB's ``OAUTH_PROVIDERS``: one OpenID Connect provider, found through its discovery document."""
    return [
        {
            "name": environ.get("IMRT_OIDC_PROVIDER", "").strip() or DEFAULT_PROVIDER,
            "icon": "fa-key",
            "token_key": "access_token",
            "remote_app": {
                "client_id": _required(environ, "IMRT_OIDC_CLIENT_ID"),
                "client_secret": client_secret(environ),
                "server_metadata_url": _required(environ, "IMRT_OIDC_DISCOVERY_URL"),
                "api_base_url": api_base_url(environ),
                "client_kwargs": {
                    "scope": environ.get("IMRT_OIDC_SCOPE", "").strip() or DEFAULT_SCOPE,
                    "code_challenge_method": "S256",
                },
            },
        }
    ]


AUTH_TYPE = AUTH_OAUTH
OAUTH_PROVIDERS = oauth_providers(os.environ)
AUTH_USER_REGISTRATION = True  # the first login creates the FAB user ...
AUTH_USER_REGISTRATION_ROLE = REGISTRATION_ROLE  # ... with no permission but those of its mapped groups
AUTH_ROLES_MAPPING = roles_mapping(os.environ)
AUTH_ROLES_SYNC_AT_LOGIN = True

__all__ = [
    "AUTH_TYPE",
    "OAUTH_PROVIDERS",
    "AUTH_USER_REGISTRATION",
    "AUTH_USER_REGISTRATION_ROLE",
    "AUTH_ROLES_MAPPING",
    "AUTH_ROLES_SYNC_AT_LOGIN",
]
