"""Helpers shared by the item bank server tests (imported by name: this directory is on sys.path)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import requests

from devstack.git_env import basic_auth_header as token_basic_auth
from devstack.git_env import isolated_git_env
from itembank_server import ItemBankServer

TOKEN = "glpat-test-token"
GROUP = "iat-dev"


def basic_auth_header(token: str = TOKEN, user: str = "oauth2") -> str:
    return token_basic_auth(token, user)


def git_env(home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """Environment for a git client isolated from user config, sending the token as GitLab expects."""
    return isolated_git_env(home, token)


def run_git(
    *args: str, env: dict[str, str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Api:
    """A requests session authenticated with PRIVATE-TOKEN against ``/api/v4``."""

    def __init__(self, server: ItemBankServer, token: str = TOKEN):
        self.server = server
        self.session = requests.Session()
        self.session.headers["PRIVATE-TOKEN"] = token

    def url(self, path: str) -> str:
        return f"{self.server.url}/api/v4{path}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url(path), timeout=10, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.session.delete(self.url(path), timeout=10, **kwargs)
