"""A local OpenID Connect identity provider for the login tests: django-oauth-toolkit (PyPI, Jazzband) behind
Keycloak's URL layout, with static users (password, name, e-mail, groups) and static confidential clients.

    python -m devstack.oidc_provider serve --config idp.json --state-dir DIR [--host H] [--port P] [--issuer URL]
    python -m devstack.oidc_provider apply --config idp.json --state-dir DIR   # users and clients only

``serve`` migrates its SQLite database in ``DIR``, makes the users and clients exactly what the configuration says
(``apply``), then serves until killed; ``apply`` does the same without serving, for a running provider (a group
changed at the IdP). ``DIR`` also keeps the signing key and Django's secret key, so a restart keeps both.

The configuration (JSON; the test writes it, a container would mount it):

.. code-block:: json

    {"realm": "imrt",
     "clients": [{"client_id": "imrt-airflow", "client_secret_file": "/run/secrets/imrt_oidc_client_secret",
                  "redirect_uris": ["https://imrt.example.org/auth/oauth-authorized/keycloak"]}],
     "users": [{"username": "ada", "password": "...", "email": "ada@example.org", "given_name": "Ada",
                "family_name": "Lovelace", "groups": ["/imrt/sync-automation"]}]}

What a client sees, as with a Keycloak realm ``<realm>`` at the provider's address:

* discovery ``/realms/<realm>/.well-known/openid-configuration``; issuer ``<address>/realms/<realm>`` (or
  ``--issuer``); endpoints ``/realms/<realm>/protocol/openid-connect/{auth,token,userinfo,certs,logout}``;
* the authorization-code flow only, PKCE required, RS256 ID tokens, the client secret in the token request (HTTP
  basic or form), the redirect URI compared exactly; no consent page;
* a login form (Username, Password, "Sign in") at ``/realms/<realm>/login``;
* claims ``sub``, ``preferred_username``, ``name``, ``given_name``, ``family_name``, ``email`` and ``groups``
  (``devstack.oidc_provider.claims``), in the ID token and the userinfo answer.

``OidcProvider`` runs it as a local process for the tests; nothing here imports Django into the caller. The package
needs nothing else of ``devstack`` (a container needs ``include/devstack/__init__.py``, this package, and
Django, django-oauth-toolkit and jwcrypto at the versions of requirements-dev.txt).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

DEFAULT_REALM = "imrt"


@dataclass(frozen=True)
class IdpUser:
    username: str
    password: str
    groups: tuple[str, ...] = ()
    email: str = ""
    given_name: str = ""
    family_name: str = ""


@dataclass(frozen=True)
class IdpClient:
    client_id: str
    client_secret_file: str
    redirect_uris: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True)
class IdpConfig:
    realm: str = DEFAULT_REALM
    clients: tuple[IdpClient, ...] = ()
    users: tuple[IdpUser, ...] = ()

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for client in data["clients"]:
            client["redirect_uris"] = list(client["redirect_uris"])
        for user in data["users"]:
            user["groups"] = list(user["groups"])
        return data

    def write(self, path: Path) -> Path:
        """Write the configuration (it holds passwords: mode 0600)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.as_json(), fh, indent=2)
        return path

    def with_groups(self, username: str, groups: Iterable[str]) -> IdpConfig:
        """The same configuration with ``username`` in exactly ``groups``."""
        users = tuple(
            IdpUser(**{**asdict(u), "groups": tuple(groups)}) if u.username == username else u for u in self.users
        )
        return IdpConfig(realm=self.realm, clients=self.clients, users=users)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def read_config(path: Path) -> dict[str, Any]:
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(config, dict) or not isinstance(config.get("realm", DEFAULT_REALM), str):
        raise ValueError(f"{path}: not an identity provider configuration")
    return config


class OidcProviderError(RuntimeError):
    pass


class OidcProvider:
    """The test identity provider as a local process on ``host`` (``python -m devstack.oidc_provider serve``).

    Use as a context manager, or ``start()`` and ``stop()``; ``apply()`` re-reads the configuration file into the
    running provider. Its output goes to ``<state_dir>/provider.log``.
    """

    def __init__(
        self,
        config_file: Path,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        issuer: str = "",
    ) -> None:
        self.config_file = Path(config_file).resolve()
        self.state_dir = Path(state_dir).resolve()
        self.realm = read_config(self.config_file).get("realm", DEFAULT_REALM)
        self.host = host
        self.port = port or free_port(host)
        self.issuer_option = issuer
        self.process: subprocess.Popen | None = None
        self.log_file = self.state_dir / "provider.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.issuer_option.rstrip("/") or f"{self.url}/realms/{self.realm}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def _command(self, action: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "devstack.oidc_provider",
            action,
            "--config",
            str(self.config_file),
            "--state-dir",
            str(self.state_dir),
        ]

    def __enter__(self) -> OidcProvider:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 90) -> None:
        """Start the provider and wait until it serves its discovery document."""
        if self.process is not None:
            raise OidcProviderError("already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [*self._command("serve"), "--host", self.host, "--port", str(self.port)]
        if self.issuer_option:
            command += ["--issuer", self.issuer_option]
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise OidcProviderError(f"the identity provider exited ({code}):\n{self.log_tail()}")
            try:
                if requests.get(self.discovery_url, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise OidcProviderError(f"the identity provider did not answer in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def apply(self, timeout: float = 60) -> None:
        """Make the running provider's users and clients what the configuration file now says."""
        result = subprocess.run(
            self._command("apply"), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise OidcProviderError(f"apply failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the provider's process group, SIGKILL after ``timeout``. Idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


def redirect_uri(airflow_url: str, provider: str) -> str:
    """The redirect URI FAB sends for ``provider``: ``<Airflow's external URL>/auth/oauth-authorized/<provider>``."""
    return f"{airflow_url.rstrip('/')}/auth/oauth-authorized/{provider}"


__all__ = [
    "IdpClient",
    "IdpConfig",
    "IdpUser",
    "OidcProvider",
    "OidcProviderError",
    "read_config",
    "redirect_uri",
]
