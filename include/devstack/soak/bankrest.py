"""The item bank server's GitLab REST routes, called as the administrator ``root`` (the soak's project and member
changes go through the routes GitLab has, so the server fires the system hooks GitLab would)."""

from __future__ import annotations

from dataclasses import dataclass

import requests

HTTP_TIMEOUT = 30


@dataclass(frozen=True)
class Answer:
    status: int
    body: object

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def short(self) -> str:
        """The status and what matters of the body: the project's path, GitLab's message, or the start of it."""
        body = self.body
        if isinstance(body, dict) and "path_with_namespace" in body:
            return f"{self.status} now {body['path_with_namespace']}"
        if isinstance(body, dict) and ("message" in body or "error" in body):
            return f"{self.status} {body.get('message') or body.get('error')}"[:160]
        if isinstance(body, dict) and "full_path" in body:
            return f"{self.status} {body['full_path']} {body.get('visibility', '')}".strip()
        return f"{self.status} {str(body)[:120]}".strip()


class BankRest:
    def __init__(self, server_url: str, root_token: str) -> None:
        self.base = f"{server_url}/api/v4"
        self._session = requests.Session()
        self._session.headers["PRIVATE-TOKEN"] = root_token

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, **kwargs) -> Answer:
        response = self._session.request(method, f"{self.base}{path}", timeout=HTTP_TIMEOUT, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Answer(response.status_code, body)

    def create_project(self, namespace_id: int, path: str) -> Answer:
        return self._call(
            "POST",
            "/projects",
            data={"namespace_id": namespace_id, "path": path, "name": path, "default_branch": "main"},
        )

    def delete_project(self, project_id: int) -> Answer:
        return self._call("DELETE", f"/projects/{project_id}")

    def rename_project(self, project_id: int, path: str) -> Answer:
        return self._call("PUT", f"/projects/{project_id}", data={"path": path, "name": path})

    def transfer_project(self, project_id: int, namespace: str) -> Answer:
        return self._call("PUT", f"/projects/{project_id}/transfer", data={"namespace": namespace})

    def archive_project(self, project_id: int, archived: bool) -> Answer:
        return self._call("POST", f"/projects/{project_id}/{'archive' if archived else 'unarchive'}")

    def set_project_visibility(self, project_id: int, visibility: str) -> Answer:
        return self._call("PUT", f"/projects/{project_id}", data={"visibility": visibility})

    def set_group_visibility(self, group_id: int, visibility: str) -> Answer:
        return self._call("PUT", f"/groups/{group_id}", data={"visibility": visibility})

    def remove_member(self, group_id: int, user_id: int) -> Answer:
        return self._call("DELETE", f"/groups/{group_id}/members/{user_id}")

    def add_member(self, group_id: int, user_id: int, access_level: int) -> Answer:
        return self._call(
            "POST", f"/groups/{group_id}/members", data={"user_id": user_id, "access_level": access_level}
        )
