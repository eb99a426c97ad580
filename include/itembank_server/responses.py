"""Plain response values shared by the REST, git and admin front ends."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class ApiError(Exception):
    """Raised by handlers to answer with a GitLab-shaped JSON error."""

    def __init__(self, status: int, payload: dict, headers: list[tuple[str, str]] | None = None):
        super().__init__(payload)
        self.response = json_response(status, payload, headers)


def dump_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(status: int, value: object, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, dump_json(value), [("Content-Type", "application/json"), *(headers or [])])


def text_response(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, text.encode("utf-8"), [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])])


def status_line(status: int) -> str:
    """``"404 Not Found"`` style text GitLab uses in its error messages."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def not_found_message(what: str) -> ApiError:
    """GitLab's ``not_found!(what)``: ``{"message": "404 <what> Not Found"}``."""
    return ApiError(404, {"message": f"404 {what} Not Found"})


def invalid_param(name: str, problem: str = "is invalid") -> ApiError:
    """Grape's parameter validation error: ``{"error": "<name> is invalid"}``."""
    return ApiError(400, {"error": f"{name} {problem}"})
