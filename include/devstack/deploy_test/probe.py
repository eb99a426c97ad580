"""HTTP to the deployment as its users reach it: the external URL through the proxy (TLS verified against the
run's CA), the StatsD exporter and the demo item bank on their loopback ports; SQL through ``psql`` in the
database containers."""

from __future__ import annotations

import socket
import time
from typing import Any

import requests
import urllib3.util.connection

from . import engine
from .settings import EXTERNAL_HOST, Deployment

DAG_ID = "item_synchronization"
EVENTS_DAG_ID = "item_synchronization_events"
_original_create_connection = urllib3.util.connection.create_connection


def resolve_external_host_to_loopback() -> None:
    """What DNS would do for the external name: point it at this machine, where the proxy listens. Only this
    process's connections are affected; TLS still checks the certificate against the external name."""

    def create_connection(address, *args, **kwargs):
        host, port = address
        return _original_create_connection(("127.0.0.1" if host == EXTERNAL_HOST else host, port), *args, **kwargs)

    urllib3.util.connection.create_connection = create_connection


class Airflow:
    """The API at the external URL, as the admin or the automation account."""

    def __init__(self, deployment: Deployment) -> None:
        resolve_external_host_to_loopback()
        self.url = deployment.external_url
        self.deployment = deployment
        self.session = requests.Session()
        # Per request, not session.verify: requests lets REQUESTS_CA_BUNDLE from the environment override that.
        self.verify = str(deployment.ca_file)
        self._tokens: dict[str, str] = {}

    def token(self, username: str, password_secret: str) -> str:
        if username not in self._tokens:
            answer = self.session.post(
                f"{self.url}/auth/token",
                timeout=30,
                verify=self.verify,
                json={"username": username, "password": self.deployment.secret(password_secret)},
            )
            answer.raise_for_status()
            self._tokens[username] = answer.json()["access_token"]
        return self._tokens[username]

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.request(
            method, f"{self.url}{path}", headers=headers, timeout=60, verify=self.verify, **kwargs
        )

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.get(url, timeout=30, verify=self.verify, **kwargs)


def wait_for(what: str, probe, timeout: float, interval: float = 2.0):
    """probe() until it returns something truthy; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except (requests.RequestException, OSError, engine.EngineError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s" + (f" (last error: {last_error})" if last_error else ""))


class Sql:
    """psql inside a database container (local socket, as the database's owner)."""

    def __init__(self, compose: engine.Compose, service: str, user: str, database: str) -> None:
        self.compose, self.service, self.user, self.database = compose, service, user, database

    def rows(self, statement: str) -> list[list[str]]:
        container = self.compose.container_ids()[self.service]
        out = engine.docker(
            "exec",
            container,
            "psql",
            "-X",
            "-U",
            self.user,
            "-d",
            self.database,
            "-tA",
            "-F",
            "\t",
            "-c",
            statement,
            timeout=60,
        )
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    def value(self, statement: str) -> str | None:
        rows = self.rows(statement)
        return rows[0][0] if rows else None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False
