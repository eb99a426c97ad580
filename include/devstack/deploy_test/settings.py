"""The deploy test's deployment values: a .env for docker-compose.yaml and the secret files it names, written the
way docs/deployment.md tells an operator to (fresh random values, files mode 0440 group 0), plus the TLS
certificate of the external name, issued by a CA made for the run (trustme)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from devstack.oidc_provider import redirect_uri
from imrt_compat.roles import AUTOMATION_ROLE

EXTERNAL_HOST = "imrt.deploy-test.example"
GROUP = "iat-demo"
ADMIN = "admin"
AUTOMATION = "imrt-sync"
ALERT_TO = "imrt-operators@example.org"
ALERT_FROM = "imrt-airflow@example.org"
# The demo identity provider (docker-compose.oidc.yaml): its name for the browser and the API server, the client
# registered for Airflow, and one user per mapped group (Keycloak-style full group paths).
IDP_HOST = "idp.deploy-test.example"
IDP_REALM = "imrt"
OIDC_PROVIDER = "keycloak"
OIDC_CLIENT_ID = "imrt-airflow"
AUTOMATION_GROUP, VIEWER_GROUP = "/imrt/sync-automation", "/imrt/viewers"
IDP_USERS = {"ada.automation": AUTOMATION_GROUP, "vic.viewer": VIEWER_GROUP}


@dataclass(frozen=True)
class Ports:
    https: int = 8443
    statsd_exporter: int = 9102
    itembank: int = 8929
    idp: int = 8180


@dataclass(frozen=True)
class Deployment:
    """What the checks need to know of the deployment they run against (passwords stay in files)."""

    work_dir: Path
    env_file: Path
    secrets_dir: Path
    ca_file: Path
    ports: Ports

    @property
    def external_url(self) -> str:
        return f"https://{EXTERNAL_HOST}:{self.ports.https}"

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()

    @property
    def itembank_token(self) -> str:
        return self.secret("itembank_tokens").split(",")[0]

    @property
    def idp_issuer(self) -> str:
        return idp_issuer(self.ports)

    def idp_password(self, username: str) -> str:
        config = json.loads(self.secret("imrt_idp_config.json"))
        return next(user["password"] for user in config["users"] if user["username"] == username)


def token(length: int = 24) -> str:
    return secrets.token_urlsafe(length)


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def idp_issuer(ports: Ports) -> str:
    return f"http://{IDP_HOST}:{ports.idp}/realms/{IDP_REALM}"


def roles_mapping() -> dict[str, list[str]]:
    return {AUTOMATION_GROUP: [AUTOMATION_ROLE], VIEWER_GROUP: ["Viewer"]}


def oidc_env_lines(ports: Ports) -> list[str]:
    """docker-compose.oidc.yaml's values: the login through the demo identity provider."""
    return [
        f"IMRT_IDP_HOST={IDP_HOST}",
        f"IMRT_IDP_PORT={ports.idp}",
        f"IMRT_OIDC_DISCOVERY_URL={idp_issuer(ports)}/.well-known/openid-configuration",
        f"IMRT_OIDC_CLIENT_ID={OIDC_CLIENT_ID}",
        f"IMRT_OIDC_PROVIDER={OIDC_PROVIDER}",
        f"IMRT_OIDC_ROLES_MAPPING='{json.dumps(roles_mapping())}'",
    ]


def idp_config(ports: Ports) -> dict:
    """The demo provider's realm: Airflow's client (its secret the Docker secret imrt_oidc_client_secret) and a
    user per mapped group, with fresh passwords."""
    return {
        "realm": IDP_REALM,
        "clients": [
            {
                "client_id": OIDC_CLIENT_ID,
                "client_secret_file": "/run/secrets/imrt_oidc_client_secret",
                "redirect_uris": [redirect_uri(f"https://{EXTERNAL_HOST}:{ports.https}", OIDC_PROVIDER)],
            }
        ],
        "users": [
            {
                "username": username,
                "password": token(),
                "groups": [group],
                "email": f"{username}@example.org",
                "given_name": username.split(".")[0].title(),
                "family_name": "Tester",
            }
            for username, group in IDP_USERS.items()
        ],
    }


def env_lines(secrets_dir: Path, ports: Ports) -> list[str]:
    return [
        "AIRFLOW_UID=50000",
        f"IMRT_SECRETS_DIR={secrets_dir}",
        f"IMRT_EXTERNAL_HOST={EXTERNAL_HOST}",
        f"IMRT_HTTPS_PORT={ports.https}",
        "IMRT_PROXY_BIND=127.0.0.1",
        f"STATSD_EXPORTER_PORT={ports.statsd_exporter}",
        f"ITEMBANK_PORT={ports.itembank}",
        f"AIRFLOW_ADMIN_USERNAME={ADMIN}",
        f"IMRT_AUTOMATION_USERNAME={AUTOMATION}",
        "IMRT_ALLOW_ANONYMOUS_SYNC=False",
        f"AIRFLOW_VAR_IMRT_GITLAB_GROUP={GROUP}",
        "AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP=true",
        f"IMRT_ALERT_EMAIL_TO={ALERT_TO}",
        f"IMRT_ALERT_EMAIL_FROM={ALERT_FROM}",
        *oidc_env_lines(ports),
    ]


def connections(imrt_password: str, itembank_token: str) -> dict:
    return {
        "gitlab_default": {
            "conn_type": "http",
            "host": "http://itembank:8929",
            "password": itembank_token,
            "extra": {"timeout": 60},
        },
        "imrt_default": {
            "conn_type": "postgres",
            "host": "imrt-db",
            "port": 5432,
            "login": "imrt",
            "password": imrt_password,
            "schema": "imrt",
        },
        "smtp_default": {
            "conn_type": "smtp",
            "host": "mailsink",
            "port": 1025,
            "extra": {"from_email": ALERT_FROM, "disable_tls": True, "disable_ssl": True, "timeout": 30},
        },
    }


def secret_values(secrets_dir: Path) -> list[str]:
    """The secret values in the deployment's secret files: each plain file's value, the passwords and secrets in the
    JSON ones, the private key's first line of key material (certificates are not secret)."""
    values: list[str] = []
    for path in sorted(secrets_dir.iterdir()):
        text = path.read_text().strip()
        if path.suffix == ".json":
            values += [value for key, value in json_leaves(json.loads(text)) if key in SECRET_JSON_KEYS]
        elif text.startswith("-----BEGIN"):
            if "PRIVATE KEY" in text.splitlines()[0]:
                values.append(text.splitlines()[1])
        elif text:
            values.append(text)
    return values


SECRET_JSON_KEYS = ("password", "imrt_webhook_secret")


def json_leaves(node: object, key: str | None = None) -> Iterator[tuple[str | None, object]]:
    """(key, value) of every scalar of a JSON document; list items carry their list's key."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield from json_leaves(child, child_key)
    elif isinstance(node, list):
        for child in node:
            yield from json_leaves(child, key)
    else:
        yield key, node


def write_secret(directory: Path, name: str, value: str) -> None:
    path = directory / name
    path.write_text(value if value.endswith("\n") or not value else value + "\n")
    os.chown(path, 0, 0)
    path.chmod(0o440)


def tls_files(directory: Path) -> Path:
    """tls_certificate.pem (the certificate, then its CA: also the demo item bank's hook CA bundle) and
    tls_private_key.pem; returns the CA file the host's checks verify against."""
    authority = trustme.CA()
    issued = authority.issue_cert(EXTERNAL_HOST)
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems) + authority.cert_pem.bytes()
    write_secret(directory, "tls_certificate.pem", chain.decode())
    write_secret(directory, "tls_private_key.pem", issued.private_key_pem.bytes().decode())
    ca_file = directory.parent / "ca.pem"
    ca_file.write_bytes(authority.cert_pem.bytes())
    return ca_file


def write_deployment(work_dir: Path, ports: Ports) -> Deployment:
    secrets_dir = work_dir / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o750)
    values = {
        "airflow_db_password": token(),
        "imrt_db_password": token(),
        "airflow_fernet_key": fernet_key(),
        "airflow_jwt_secret": token(48),
        "airflow_api_secret_key": token(48),
        "airflow_admin_password": token(),
        "imrt_automation_password": token(),
        "itembank_tokens": token(),
        "imrt_oidc_client_secret": token(32),
    }
    for name, value in values.items():
        write_secret(secrets_dir, name, value)
    write_secret(
        secrets_dir,
        "airflow_connections.json",
        json.dumps(connections(values["imrt_db_password"], values["itembank_tokens"]), indent=2),
    )
    write_secret(secrets_dir, "airflow_variables.json", json.dumps({"imrt_webhook_secret": token()}, indent=2))
    write_secret(secrets_dir, "imrt_idp_config.json", json.dumps(idp_config(ports), indent=2))
    ca_file = tls_files(secrets_dir)
    env_file = work_dir / "deploy-test.env"
    env_file.write_text("\n".join(env_lines(secrets_dir, ports)) + "\n")
    env_file.chmod(0o600)
    return Deployment(work_dir, env_file, secrets_dir, ca_file, ports)
