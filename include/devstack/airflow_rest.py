"""The REST API of an Airflow 3 API server, as one of its users (``AirflowStack`` is one on its own stack)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from . import edge_workers

_HTTP_TIMEOUT = 30.0
_PAGE_LIMIT = 100  # [api] maximum_page_limit's default: a larger limit is cut to it


class AirflowStackError(RuntimeError):
    """The stack could not be started, one of its processes died, or its API server answered with an error."""


def url_segment(segment: str) -> str:
    """One URL path segment (run ids contain ``:`` and ``+``)."""
    return quote(segment, safe="")


class AirflowRestClient:
    """Requests to the API server at ``url`` with the JWT of a user whose password is in ``passwords``.

    Tokens come from ``POST /auth/token`` and are cached per user; ``default_user``'s is used unless told otherwise.
    """

    def __init__(self, url: str, passwords: Mapping[str, str], default_user: str) -> None:
        self.url = url
        self.default_user = default_user
        self._passwords = passwords
        self._session = requests.Session()
        self._cached_tokens: dict[str, str] = {}

    def password(self, username: str) -> str:
        return self._passwords[username]

    def health(self) -> dict[str, Any] | None:
        """The health document, or None while the API server does not answer."""
        try:
            response = self._session.get(f"{self.url}/api/v2/monitor/health", timeout=5)
            return response.json() if response.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def edge_worker_states(self) -> dict[str, str]:
        """Hostname -> state of every edge worker registered with the API server (``GET /edge_worker/ui/worker``)."""
        workers = self._api_json("GET", f"{edge_workers.EDGE_API_PATH}/ui/worker")["workers"]
        return {worker["worker_name"]: worker["state"] for worker in workers}

    def token(self, username: str = "admin") -> str:
        """A fresh JWT for ``username`` from ``POST /auth/token``."""
        response = self._session.post(
            f"{self.url}/auth/token",
            json={"username": username, "password": self.password(username)},
            timeout=_HTTP_TIMEOUT,
        )
        if response.status_code not in (200, 201):
            raise AirflowStackError(f"POST /auth/token for {username!r}: {response.status_code} {response.text}")
        return response.json()["access_token"]

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        """A request to the API server at ``path`` (e.g. ``/api/v2/dags``).

        ``token=None`` uses the (cached) token of the default admin user; ``token=""`` sends no Authorization header.
        Other keyword arguments go to ``requests``; a timeout is always set.
        """
        if token is None:
            user = self.default_user
            if user not in self._cached_tokens:
                self._cached_tokens[user] = self.token(user)
            token = self._cached_tokens[user]
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", _HTTP_TIMEOUT)
        return self._session.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def _api_json(self, method: str, path: str, *, expected: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        response = self.api(method, path, **kwargs)
        if response.status_code not in expected:
            raise AirflowStackError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def import_errors(self) -> list[dict]:
        return self._api_json("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"]

    def unpause(self, dag_id: str) -> None:
        document = self._api_json("PATCH", f"/api/v2/dags/{url_segment(dag_id)}", json={"is_paused": False})
        if document.get("is_paused"):
            raise AirflowStackError(f"DAG {dag_id!r} still paused: {document}")

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> str:
        """Trigger a manual run; return its ``dag_run_id``."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return self._api_json("POST", f"/api/v2/dags/{url_segment(dag_id)}/dagRuns", json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._api_json("GET", f"/api/v2/dags/{url_segment(dag_id)}/dagRuns/{url_segment(run_id)}")

    def dag_runs(self, dag_id: str, **query: Any) -> list[dict]:
        """Every run of the DAG that ``query`` selects, all pages of ``GET .../dagRuns`` (the API answers 50 runs
        per page unless told otherwise, at most ``[api] maximum_page_limit``, 100 by default).

        ``query`` is passed as query parameters, e.g. ``state=["queued", "running"]``, ``order_by="-run_after"``,
        ``run_after_gte=...``. Pages are read with ``offset`` until ``total_entries`` runs have been seen.
        """
        found: list[dict] = []
        while True:
            page = self._api_json(
                "GET",
                f"/api/v2/dags/{url_segment(dag_id)}/dagRuns",
                params={**query, "limit": _PAGE_LIMIT, "offset": len(found)},
            )
            found.extend(page["dag_runs"])
            if not page["dag_runs"] or len(found) >= page["total_entries"]:
                return found

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """All task instances of the run, mapped ones included (one per map index)."""
        found: list[dict] = []
        while True:
            page = self._api_json(
                "GET",
                f"/api/v2/dags/{url_segment(dag_id)}/dagRuns/{url_segment(run_id)}/taskInstances",
                params={"limit": 100, "offset": len(found)},
            )
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task attempt's log as text, one line per log event."""
        document = self._api_json(
            "GET",
            f"/api/v2/dags/{url_segment(dag_id)}/dagRuns/{url_segment(run_id)}"
            f"/taskInstances/{url_segment(task_id)}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        content = document.get("content")
        if isinstance(content, str):
            return content
        lines = []
        for entry in content or []:
            if isinstance(entry, str):
                lines.append(entry)
                continue
            extra = {k: v for k, v in entry.items() if k not in ("timestamp", "level", "event", "logger")}
            prefix = " ".join(str(entry[k]) for k in ("timestamp", "level", "logger") if entry.get(k))
            suffix = " ".join(f"{k}={v}" for k, v in extra.items())
            lines.append(" ".join(part for part in (prefix, str(entry.get("event", "")), suffix) if part))
        return "\n".join(lines)
