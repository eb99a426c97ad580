"""Git smart HTTP by running ``git http-backend`` as a CGI program, and GitLab's git refusals.

``git receive-pack`` is enabled per request (``http.receivepack=true`` in the CGI's environment) only for users
allowed to push; the repositories' own config keeps it off. What a push changed is worked out in
:mod:`itembank_server.git_push`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .bank_repos import git_env
from .responses import Response, text_response

logger = logging.getLogger(__name__)

_GIT_PATH = re.compile(
    r"^/(?P<project>[^?#]+?/[^/?#]+?)(?P<suffix>\.git)?/(?P<action>info/refs|git-upload-pack|git-receive-pack)$"
)
ENDPOINTS = {"info/refs": "git info/refs", "git-upload-pack": "git upload-pack", "git-receive-pack": "git receive-pack"}

ACCESS_DENIED = (
    "HTTP Basic: Access denied. If a password was provided for Git authentication, the password was incorrect or "
    "you're required to use a token instead of a password. If a token was provided, it was either incorrect, "
    "expired, or improperly scoped.\n"
)
PROJECT_NOT_FOUND = "The project you were looking for could not be found or you don't have permission to view it.\n"
# Gitlab::GitAccess::ERROR_MESSAGES (lib/gitlab/git_access.rb), answered as 403 text by
# Repositories::GitHttpController (https://docs.gitlab.com/user/permissions/).
PUSH_DENIED = "You are not allowed to push code to this project.\n"
DOWNLOAD_DENIED = "You are not allowed to download code from this project.\n"
ARCHIVED = "You can't push code to an archived project.\n"
# Turns receive-pack on for one CGI run; the repositories' config keeps ``http.receivepack = false``.
_RECEIVE_PACK_ON = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.receivepack", "GIT_CONFIG_VALUE_0": "true"}


@dataclass(frozen=True)
class GitTarget:
    project: str  # full path as requested, without ``.git``
    has_suffix: bool
    action: str  # info/refs, git-upload-pack or git-receive-pack

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.action]


def parse_git_path(path: str) -> GitTarget | None:
    match = _GIT_PATH.match(path)
    if match is None:
        return None
    return GitTarget(match["project"], bool(match["suffix"]), match["action"])


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def unauthorized() -> Response:
    return text_response(401, ACCESS_DENIED, [("WWW-Authenticate", 'Basic realm="GitLab"')])


def project_not_found() -> Response:
    return text_response(404, PROJECT_NOT_FOUND)


def push_denied() -> Response:
    return text_response(403, PUSH_DENIED)


def download_denied() -> Response:
    return text_response(403, DOWNLOAD_DENIED)


def archived() -> Response:
    return text_response(403, ARCHIVED)


@dataclass
class CgiResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: Iterator[bytes]


class GitHttpBackend:
    """Runs ``git http-backend`` for one request, feeding the body in and streaming the answer out."""

    def __init__(self, project_root: Path):
        self.project_root = project_root

    def run(
        self,
        *,
        method: str,
        path_info: str,
        query: str,
        headers: Mapping[str, str],
        body: Iterable[bytes],
        remote_user: str,
        remote_addr: str,
        allow_push: bool = False,
    ) -> CgiResponse:
        env = self._environment(method, path_info, query, headers, remote_user, remote_addr)
        if allow_push:
            env.update(_RECEIVE_PACK_ON)
        process = subprocess.Popen(
            ["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        feeder = threading.Thread(target=_feed, args=(process, body), daemon=True)
        feeder.start()
        errors = bytearray()
        drainer = threading.Thread(target=lambda: errors.extend(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
        drainer.start()
        try:
            status, reason, cgi_headers, rest = _read_cgi_head(process)
        except Exception:
            _finish(process, feeder, drainer, errors)
            raise
        return CgiResponse(status, reason, cgi_headers, _stream(process, rest, feeder, drainer, errors))

    def _environment(
        self, method: str, path_info: str, query: str, headers: Mapping[str, str], remote_user: str, remote_addr: str
    ) -> dict[str, str]:
        env = git_env()
        env.pop("GIT_DIR", None)
        env.update(
            {
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "GIT_PROJECT_ROOT": str(self.project_root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path_info,
                "QUERY_STRING": query,
                "REQUEST_METHOD": method,
                "REMOTE_USER": remote_user,
                "REMOTE_ADDR": remote_addr,
                "CONTENT_TYPE": headers.get("Content-Type") or "",
            }
        )
        if headers.get("Content-Length") and "chunked" not in (headers.get("Transfer-Encoding") or "").lower():
            env["CONTENT_LENGTH"] = headers["Content-Length"]
        for header, variable in (("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "HTTP_GIT_PROTOCOL")):
            if headers.get(header):
                env[variable] = headers[header]
        return env


def _feed(process: subprocess.Popen, body: Iterable[bytes]) -> None:
    """Copy the request body to the CGI; keep consuming it if the CGI stops reading (the connection stays usable)."""
    stdin = process.stdin
    assert stdin is not None
    try:
        for chunk in body:
            if stdin is not None:
                try:
                    stdin.write(chunk)
                except OSError:  # the CGI stopped reading
                    stdin = None
    except Exception:  # the client went away mid-body; the response side will notice too
        logger.debug("request body ended early", exc_info=True)
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]


def _read_cgi_head(process: subprocess.Popen) -> tuple[int, str, list[tuple[str, str]], bytes]:
    stdout = process.stdout
    assert stdout is not None
    buffer = b""
    while True:
        ends = [(buffer.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if sep in buffer]
        if ends:
            position, separator = min(ends)
            return (*_parse_cgi_headers(buffer[:position]), buffer[position + len(separator) :])
        chunk = stdout.read1(65536)
        if not chunk:
            raise RuntimeError(f"git http-backend ended without headers: {buffer[:200]!r}")
        buffer += chunk


def _parse_cgi_headers(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    status, reason, headers = 200, "OK", []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            code, _, reason = value.partition(" ")
            status = int(code)
        elif name:
            headers.append((name, value))
    return status, reason, headers


def _stream(
    process: subprocess.Popen, first: bytes, feeder: threading.Thread, drainer: threading.Thread, errors: bytearray
) -> Iterator[bytes]:
    completed = False
    try:
        if first:
            yield first
        while chunk := process.stdout.read1(65536):  # type: ignore[union-attr]
            yield chunk
        completed = True
    finally:
        _finish(process, feeder, drainer, errors, kill=not completed)


def _finish(
    process: subprocess.Popen,
    feeder: threading.Thread,
    drainer: threading.Thread,
    errors: bytearray,
    *,
    kill: bool = True,
) -> None:
    """Reap the CGI; ``kill`` it when its output is no longer wanted."""
    if kill and process.poll() is None:
        process.kill()
    process.wait()
    feeder.join()
    drainer.join()
    process.stdout.close()  # type: ignore[union-attr]
    process.stderr.close()  # type: ignore[union-attr]
    if errors:
        logger.debug("git http-backend: %s", errors.decode(errors="replace").strip())
