"""The environment of a git client as a developer runs one against GitLab: isolated from this machine's git
configuration and prompts, sending the access token as GitLab expects it over HTTP (basic auth, user ``oauth2``).

The token travels in ``GIT_CONFIG_*`` environment variables (an ``http.extraHeader``), never on a command line.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path


def basic_auth_header(token: str, user: str = "oauth2") -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def isolated_git_env(home: Path, token: str | None = None) -> dict[str, str]:
    """This process's environment with git isolated under ``home``, and the token's header when one is given."""
    env = {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
    }
    if token is not None:
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: {basic_auth_header(token)}",
            }
        )
    return env
