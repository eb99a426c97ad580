"""The deploy test's deployment values: a .env for docker-compose.yaml and the secret files it names, written the
way docs/deployment.md tells an operator to (fresh random values, files mode 0440 group 0), plus the TLS
certificate of the external name, issued by a CA made for the run (trustme)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import trustme

EXTERNAL_HOST = "imrt.deploy-test.example"
GROUP = "iat-demo"
ADMIN = "admin"
AUTOMATION = "imrt-sync"
ALERT_TO = "imrt-operators@example.org"
ALERT_FROM = "imrt-airflow@example.org"


@dataclass(frozen=True)
class Ports:
    https: int = 8443
    statsd_exporter: int = 9102
    itembank: int = 8929


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


def token(length: int = 24) -> str:
    return secrets.token_urlsafe(length)


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


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
    ]


def connections(imrt_password: str, itembank_token: str) -> dict:
    return {
        "gitlab_default": {"conn_type": "http", "host": "http://itembank:8929", "password": itembank_token,
                           "extra": {"timeout": 60}},
        "imrt_default": {"conn_type": "postgres", "host": "imrt-db", "port": 5432, "login": "imrt",
                         "password": imrt_password, "schema": "imrt"},
        "smtp_default": {"conn_type": "smtp", "host": "mailsink", "port": 1025,
                         "extra": {"from_email": ALERT_FROM, "disable_tls": True, "disable_ssl": True, "timeout": 30}},
    }


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
        "airflow_db_password": token(), "imrt_db_password": token(), "airflow_fernet_key": fernet_key(),
        "airflow_jwt_secret": token(48), "airflow_api_secret_key": token(48), "airflow_admin_password": token(),
        "imrt_automation_password": token(), "itembank_tokens": token(),
    }
    for name, value in values.items():
        write_secret(secrets_dir, name, value)
    write_secret(secrets_dir, "airflow_connections.json",
                 json.dumps(connections(values["imrt_db_password"], values["itembank_tokens"]), indent=2))
    write_secret(secrets_dir, "airflow_variables.json", json.dumps({"imrt_webhook_secret": token()}, indent=2))
    ca_file = tls_files(secrets_dir)
    env_file = work_dir / "deploy-test.env"
    env_file.write_text("\n".join(env_lines(secrets_dir, ports)) + "\n")
    env_file.chmod(0o600)
    return Deployment(work_dir, env_file, secrets_dir, ca_file, ports)
