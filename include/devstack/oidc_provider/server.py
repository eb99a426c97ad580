"""The Django side of the test identity provider: settings, Keycloak-shaped URLs, the ``groups`` claim, the static
users and clients, the HTTP server. Imported only by the provider's own process (``python -m
devstack.oidc_provider``): Django is configured once per process, here.

The OpenID Connect provider is django-oauth-toolkit's (OIDC enabled, RS256 ID tokens, PKCE required, consent
skipped for the configured clients, as for a Keycloak client without "Consent required"); users log in through
Django's own login form with a password. What is ours: the URL layout, the claims and the converging of the
static configuration.
"""

from __future__ import annotations

import json
import secrets
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

URLCONF = "devstack_oidc_provider_urls"  # a module made in configure(): the realm is part of every path
DATABASE = "idp.sqlite3"
SIGNING_KEY = "signing-key.pem"
SECRET_KEY = "django-secret-key"

LOGIN_TEMPLATE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in to {{ realm }}</title></head>
<body>
<h1>Sign in to {{ realm }}</h1>
<p>IMRT test identity provider (django-oauth-toolkit)</p>
<form method="post">
  {% csrf_token %}
  {% if form.errors %}<p role="alert">Invalid username or password.</p>{% endif %}
  <p><label for="id_username">Username</label> {{ form.username }}</p>
  <p><label for="id_password">Password</label> {{ form.password }}</p>
  <input type="hidden" name="next" value="{{ next }}">
  <button type="submit">Sign in</button>
</form>
</body>
</html>
"""


def _kept(path: Path, make) -> str:
    """The content of ``path``, made once by ``make()`` (mode 0600)."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make(), encoding="utf-8")
    return path.read_text(encoding="utf-8")


def _new_rsa_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def realm_prefix(realm: str) -> str:
    return f"realms/{realm}/"


def configure(state_dir: Path, realm: str, issuer: str = "") -> None:
    """Configure Django for this process: the database, keys and sessions kept in ``state_dir``.

    ``issuer``: the issuer and the host of every endpoint in the discovery document. Empty: taken from each
    request's host (``http://<host the caller used>/realms/<realm>``), which is right as long as the browser and
    Airflow reach the provider at the same address.
    """
    import django
    from django.conf import settings

    state_dir.mkdir(parents=True, exist_ok=True)
    settings.configure(
        DEBUG=False,
        SECRET_KEY=_kept(state_dir / SECRET_KEY, lambda: secrets.token_urlsafe(50)),
        ALLOWED_HOSTS=["*"],  # a test provider, reached as 127.0.0.1 or by a container name
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "oauth2_provider",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        ROOT_URLCONF=URLCONF,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(state_dir / DATABASE)}},
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "loaders": [
                        ("django.template.loaders.locmem.Loader", {"imrt_idp/login.html": LOGIN_TEMPLATE}),
                        "django.template.loaders.app_directories.Loader",
                    ],
                    "context_processors": ["django.template.context_processors.request"],
                },
            }
        ],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGIN_URL=f"/{realm_prefix(realm)}login",
        # Distinct names: on 127.0.0.1 the provider shares cookies with Airflow (cookies ignore the port).
        SESSION_COOKIE_NAME="imrt_idp_session",
        CSRF_COOKIE_NAME="imrt_idp_csrftoken",
        OAUTH2_PROVIDER={
            "OIDC_ENABLED": True,
            "OIDC_RSA_PRIVATE_KEY": _kept(state_dir / SIGNING_KEY, _new_rsa_key),
            "OIDC_ISS_ENDPOINT": issuer.rstrip("/"),
            "OAUTH2_VALIDATOR_CLASS": "devstack.oidc_provider.claims.GroupsClaimValidator",
            "SCOPES": {"openid": "OpenID Connect", "profile": "Your name", "email": "Your e-mail address"},
            "DEFAULT_SCOPES": ["openid"],
            "PKCE_REQUIRED": True,
        },
    )
    django.setup()
    sys.modules[URLCONF] = _urlconf(realm)


def _urlconf(realm: str) -> types.ModuleType:
    """Keycloak's paths (``/realms/<realm>/protocol/openid-connect/...``), so that a FAB configuration written for
    Keycloak (provider name ``keycloak``: userinfo at ``<api_base_url>openid-connect/userinfo``) works unchanged."""
    from django.contrib.auth.views import LoginView
    from django.urls import include, path
    from oauth2_provider import views

    prefix = realm_prefix(realm)
    endpoints = f"{prefix}protocol/openid-connect/"
    oidc = [
        path(
            f"{prefix}.well-known/openid-configuration",
            views.ConnectDiscoveryInfoView.as_view(),
            name="oidc-connect-discovery-info",
        ),
        path(f"{endpoints}auth", views.AuthorizationView.as_view(), name="authorize"),
        path(f"{endpoints}token", views.TokenView.as_view(), name="token"),
        path(f"{endpoints}userinfo", views.UserInfoView.as_view(), name="user-info"),
        path(f"{endpoints}certs", views.JwksInfoView.as_view(), name="jwks-info"),
        path(f"{endpoints}logout", views.RPInitiatedLogoutView.as_view(), name="rp-initiated-logout"),
    ]
    login = LoginView.as_view(template_name="imrt_idp/login.html", extra_context={"realm": realm})
    module = types.ModuleType(URLCONF)
    module.urlpatterns = [path("", include((oidc, "oauth2_provider"))), path(f"{prefix}login", login, name="login")]
    return module


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def _client_secret(client: Mapping[str, Any]) -> str:
    path = Path(client["client_secret_file"])
    secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not secret:
        raise SystemExit(f"client {client['client_id']}: the secret file {path} is empty")
    return secret


def apply(config: Mapping[str, Any]) -> dict[str, int]:
    """Make the users, their groups and the clients exactly what ``config`` says (others are deleted)."""
    from django.contrib.auth.models import Group, User
    from django.db import transaction
    from oauth2_provider.models import Application

    users, clients = config.get("users", []), config.get("clients", [])
    with transaction.atomic():
        User.objects.exclude(username__in=[u["username"] for u in users]).delete()
        for spec in users:
            user, _ = User.objects.get_or_create(username=spec["username"])
            user.email = spec.get("email", "")
            user.first_name = spec.get("given_name", "")
            user.last_name = spec.get("family_name", "")
            user.is_active = True
            user.set_password(spec["password"])
            user.save()
            user.groups.set([Group.objects.get_or_create(name=name)[0] for name in spec.get("groups", [])])
        Group.objects.filter(user__isnull=True).delete()
        Application.objects.exclude(client_id__in=[c["client_id"] for c in clients]).delete()
        for spec in clients:
            Application.objects.update_or_create(
                client_id=spec["client_id"],
                defaults={
                    "name": spec.get("name", spec["client_id"]),
                    "client_secret": _client_secret(spec),
                    "client_type": Application.CLIENT_CONFIDENTIAL,
                    "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
                    "redirect_uris": " ".join(spec["redirect_uris"]),
                    "algorithm": Application.RS256_ALGORITHM,
                    "skip_authorization": True,
                },
            )
    return {"users": len(users), "clients": len(clients)}


def serve(host: str, port: int) -> None:
    """Serve until killed: Django's threaded WSGI server (``runserver`` without its reloader)."""
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application

    def ready(bound_port: int) -> None:
        print(json.dumps({"ready": f"http://{host}:{bound_port}"}), flush=True)

    run(host, port, get_wsgi_application(), threading=True, on_bind=ready)
