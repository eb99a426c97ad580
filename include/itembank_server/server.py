"""The HTTP front end: REST v4 subset, git smart HTTP and the ``/-/`` test-control routes on one port.

Every token belongs to a user (:mod:`itembank_server.users`); the tokens given to :class:`ItemBankServer` (or
``ITEMBANK_TOKENS``) belong to the administrator ``root``. Git access follows ``Gitlab::GitAccess``: an unknown
token is 401, a project the user cannot see is 404, pulling needs Reporter (any signed-in user for an internal or
public project), pushing Developer (https://docs.gitlab.com/user/permissions/#project-members-permissions,
https://docs.gitlab.com/user/public_access/). Pushes through this front end fire the
push hooks (:mod:`itembank_server.git_push`); direct store writes fire none. The ``/-/`` routes need an
administrator's token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import api, bank_repos, git_http, git_push, graphql_api
from .access import AccessControlledApi
from .bank_store import ItemBank
from .faults import Counters, Fault, Faults
from .pagination import COUNT_LIMIT
from .responses import Response, dump_json, json_response, status_line, text_response
from .users import DEVELOPER, ROOT_USERNAME
from .webhook_delivery import DEFAULT_TIMEOUT, SystemHook, WebhookDispatcher

logger = logging.getLogger(__name__)

TOKENS_ENV = "ITEMBANK_TOKENS"
TLS_HANDSHAKE_FAILED = "TLS handshake failed"  # the counter of connections that ended in the TLS handshake
_PRE_RESPONSE_FAULTS = ("latency", "drop", "status")
_MAX_API_BODY = 10 * 1024 * 1024
_API_HEADERS = [
    ("Cache-Control", "max-age=0, private, must-revalidate"),
    ("Vary", "Origin"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
]


def tokens_from_env() -> set[str]:
    return {t.strip() for t in os.environ.get(TOKENS_ENV, "").split(",") if t.strip()}


class BadRequestBody(ValueError):
    """The request body is malformed or too large: answer 400/413 and close the connection."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class RequestBody:
    """The request body as a stream of chunks (Content-Length or chunked); ``drain`` reads what is left."""

    def __init__(self, rfile, headers) -> None:
        self._rfile = rfile
        chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        try:
            self._length = None if chunked else int(headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequestBody("invalid Content-Length") from None
        if self._length is not None and self._length < 0:
            raise BadRequestBody("negative Content-Length")
        self._chunks = self._chunked() if chunked else self._sized()

    def chunks(self) -> Iterator[bytes]:
        return self._chunks

    def read(self, limit: int) -> bytes:
        data = bytearray()
        for chunk in self._chunks:
            data += chunk
            if len(data) > limit:
                raise BadRequestBody("request body too large", 413)
        return bytes(data)

    def drain(self) -> None:
        for _ in self._chunks:
            pass

    def _sized(self) -> Iterator[bytes]:
        remaining = self._length or 0
        while remaining > 0:
            chunk = self._rfile.read(min(remaining, 65536))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def _chunked(self) -> Iterator[bytes]:
        while True:
            try:
                size = int(self._rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise BadRequestBody("invalid chunk size") from None
            if size == 0:
                while self._rfile.readline(1024).strip():  # trailers
                    pass
                return
            chunk = self._rfile.read(size)
            if len(chunk) < size:
                raise ConnectionError("client closed the connection mid-chunk")
            self._rfile.readline(1024)
            yield chunk


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    app: ItemBankServer

    def __init__(self, address, handler, app: ItemBankServer, tls: ssl.SSLContext | None = None):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.tls = tls
        self._active: dict[socket.socket, threading.Thread] = {}
        self._active_lock = threading.Lock()
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        if self.tls is not None:
            request = self._tls_handshake(request, client_address)
            if request is None:
                return
        with self._active_lock:
            self._active[request] = threading.current_thread()
        try:
            super().finish_request(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(request, None)
            if self.tls is not None:  # the plain socket socketserver closes gave its descriptor to the TLS one
                self.shutdown_request(request)

    def _tls_handshake(self, request: socket.socket, client_address) -> ssl.SSLSocket | None:
        """The connection after the TLS handshake, done in the connection's own thread (a client that stalls or
        rejects the certificate holds up no other); None when the handshake failed."""
        request.settimeout(_Handler.timeout)
        try:
            return self.tls.wrap_socket(request, server_side=True)  # type: ignore[union-attr]
        except (ssl.SSLError, OSError) as error:
            logger.debug("TLS handshake with %s failed: %s", client_address[0], error)
            self.app.count(TLS_HANDSHAKE_FAILED)
            return None

    def close_connections(self, timeout: float) -> None:
        """Shut idle keep-alive connections (and any in flight), then wait for their threads."""
        with self._active_lock:
            active = dict(self._active)
        for sock in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in active.values():
            thread.join(max(0.0, deadline - time.monotonic()))


class ItemBankServer:
    """Serves an :class:`ItemBank` like GitLab does, from a background thread."""

    def __init__(
        self,
        bank: ItemBank,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] | None = None,
        *,
        external_url: str | None = None,
        system_hooks: Sequence[SystemHook | str] = (),
        hook_timeout: float = DEFAULT_TIMEOUT,
        hook_ca_bundle: str | None = None,
        count_limit: int = COUNT_LIMIT,
        keyset_group_projects: bool = True,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        graphql_timeout: float = graphql_api.DEFAULT_TIMEOUT,
        graphql_repository_commit: bool = True,
    ):
        """``system_hooks``: :class:`SystemHook` or ``URL[,token=T][,push_events=false]...`` specs;
        ``hook_timeout``: seconds a hook request may take (GitLab's webhook timeout, default 10);
        ``hook_ca_bundle``: CA certificates for hooks verifying TLS (default: the system's trust store);
        ``count_limit``: above this many records offset listings leave out X-Total, X-Total-Pages and rel="last",
        as GitLab does above 10,000 (https://docs.gitlab.com/api/rest/#pagination-response-headers);
        ``keyset_group_projects``: off, group project listings ignore ``pagination=keyset`` and answer offset pages,
        as GitLab's ``GET /groups/:id/projects`` does (``lib/api/groups.rb`` pages it with ``paginate``);
        ``tls_cert``/``tls_key``: PEM certificate (chain) and private key: the server answers over HTTPS only, REST
        and git alike, and its URL (``web_url``, ``http_url_to_repo``) is ``https://``, as a GitLab whose
        ``external_url`` is ``https://`` with ``nginx['ssl_certificate']`` and ``nginx['ssl_certificate_key']`` set
        (https://docs.gitlab.com/omnibus/settings/ssl/#configure-https-manually,
        https://docs.gitlab.com/omnibus/settings/configuration/#configure-the-external-url-for-gitlab);
        ``graphql_timeout``: seconds a GraphQL query may run before its remaining fields time out (GitLab's
        ``gitlab.graphql_timeout``, default 30; :mod:`itembank_server.graphql_api`);
        ``graphql_repository_commit``: off, GraphQL's ``Repository`` has no ``commit`` field, as before GitLab added
        it in 2025.
        """
        self.bank = bank
        self.tokens = frozenset(tokens if tokens is not None else tokens_from_env())
        if not self.tokens:
            raise ValueError(f"no access tokens configured (pass tokens= or set {TOKENS_ENV})")
        root = bank.ensure_user(ROOT_USERNAME, admin=True)
        for token in self.tokens:
            bank.add_token(root["id"], token)
        unmatched = [f"{method} unmatched" for method in ("GET", "POST", "PUT", "PATCH", "DELETE")]
        graphql_endpoints = [*graphql_api.ENDPOINTS, graphql_api.GITALY_ENDPOINT]
        self.faults = Faults(
            known_endpoints=[*api.endpoints(), *graphql_endpoints, *git_http.ENDPOINTS.values(), *unmatched]
        )
        self._counters = Counters()
        self._httpd = _HttpServer((host, port), _Handler, self, _tls_context(tls_cert, tls_key))
        self.host = host
        self.port = self._httpd.server_address[1]
        scheme = "https" if tls_cert else "http"
        self.url = (external_url or f"{scheme}://{_url_host(host)}:{self.port}").rstrip("/")
        self.hooks = WebhookDispatcher(
            bank, lambda: self.url, system_hooks, timeout=hook_timeout, ca_bundle=hook_ca_bundle
        )
        self.api = AccessControlledApi(
            bank,
            lambda: self.url,
            self.faults,
            self.hooks,
            count_limit=count_limit,
            keyset_group_projects=keyset_group_projects,
        )
        self.git = git_http.GitHttpBackend(bank.repos_dir)
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.graphql = graphql_api.GraphqlApi(
            bank,
            lambda: self.url,
            self.faults,
            self.stopping,
            timeout=graphql_timeout,
            repository_commit=graphql_repository_commit,
        )

    def start(self) -> ItemBankServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="itembank-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections(timeout)
        self._httpd.server_close()
        self.hooks.close()

    def __enter__(self) -> ItemBankServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def counters(self) -> dict[str, int]:
        return self._counters.snapshot()

    def reset_counters(self) -> None:
        self._counters.reset()

    def count(self, endpoint: str) -> None:
        self._counters.increment(endpoint)

    def user_for_token(self, token: str | None) -> dict | None:
        """The user the token belongs to, None for a missing or unknown token."""
        return self.bank.user_for_token(token)


@dataclass(frozen=True)
class AllowedGitRequest:
    """A git request let through: the project, the user, and whether it pushes."""

    project: dict
    user: dict
    push: bool


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS settings; None for HTTP. TLS 1.2 or later, as the bundled nginx's default
    ``nginx['ssl_protocols'] = "TLSv1.2 TLSv1.3"`` (https://docs.gitlab.com/omnibus/settings/nginx/)."""
    if cert is None:
        if key is not None:
            raise ValueError("tls_key given without tls_cert")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    timeout = 300
    # As GitLab's nginx (``tcp_nodelay on``): headers and body go out in two sends, and without TCP_NODELAY the body
    # waits for the client's delayed ACK, about 40 ms per response on Linux.
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    @property
    def app(self) -> ItemBankServer:
        return self.server.app

    # -- dispatch ----------------------------------------------------------------------------------

    def _handle(self) -> None:
        self._started = time.monotonic()
        self._response_started = False
        try:
            self._body = RequestBody(self.rfile, self.headers)
            self._route()
        except BadRequestBody as error:
            self.close_connection = True
            if not self._response_started:
                self._send(json_response(error.status, {"error": status_line(error.status)}))
        except OSError as error:
            logger.debug("connection error: %s", error)
            self.close_connection = True
        except Exception:
            logger.exception("error answering %s %s", self.command, self.path)
            self.close_connection = True
            if not self._response_started:
                self._send(json_response(500, {"message": "500 Internal Server Error"}))

    def _route(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, url.query
        if path.startswith("/-/"):
            self._send(self._admin(path, query))
            return
        method = "GET" if self.command == "HEAD" else self.command
        if path == graphql_api.GRAPHQL_PATH and method in ("GET", "POST"):
            endpoint = f"{method} {graphql_api.GRAPHQL_PATH}"
            self.app.count(endpoint)
            if not self._apply_faults(endpoint, path, is_api=True):
                self._graphql(method, query)
            return
        git_target = git_http.parse_git_path(path)
        if git_target is not None:
            endpoint, resolution = git_target.endpoint, None
        else:
            resolution = api.resolve(self.command, path)
            endpoint = resolution.endpoint
        self.app.count(endpoint)
        if self._apply_faults(endpoint, path, is_api=git_target is None):
            return
        if git_target is not None:
            self._git(git_target, query)
        else:
            self._api(resolution, path, query)  # type: ignore[arg-type]

    def _apply_faults(self, endpoint: str, path: str, *, is_api: bool) -> bool:
        """Apply latency, drop and status faults; True when the request has been dealt with."""
        faults = self.app.faults.take(endpoint, path, _PRE_RESPONSE_FAULTS)
        if "latency" in faults and self.app.stopping.wait(float(faults["latency"].params["seconds"])):
            self.close_connection = True  # the server is stopping: give up rather than delay shutdown
            return True
        if "drop" in faults:
            self._body.drain()
            self.close_connection = True
            return True
        if "status" in faults:
            self._body.drain()
            self._send(fault_response(faults["status"], is_api=is_api))
            return True
        return False

    # -- REST --------------------------------------------------------------------------------------

    def _api(self, resolution: api.Resolution, path: str, query: str) -> None:
        body = self._body.read(_MAX_API_BODY)
        if not path.startswith("/api/"):
            self._send(text_response(404, "404 Not Found\n"))
            return
        if resolution.route is None:
            self._send(api.unmatched_response(resolution), api_headers=True)
            return
        request = api.ApiRequest(self.command, path, parse_qsl(query, keep_blank_values=True), self.headers, body)
        request.user = self.app.user_for_token(api.presented_token(request))
        if request.user is None:
            self._send(json_response(401, {"message": "401 Unauthorized"}), api_headers=True)
            return
        self._send(self.app.api.handle(resolution, request), api_headers=True)

    # -- GraphQL -----------------------------------------------------------------------------------

    def _graphql(self, method: str, query: str) -> None:
        """``/api/graphql`` (:mod:`itembank_server.graphql_api`): the token as for REST; an unknown one is GitLab's
        401 ``Invalid token`` (``GraphqlController#authorize_access_api!``). A request without a token is refused
        the same way: GitLab would answer it with public data only, and this server models no anonymous access."""
        body = self._body.read(_MAX_API_BODY)
        params = parse_qsl(query, keep_blank_values=True)
        request = api.ApiRequest(method, graphql_api.GRAPHQL_PATH, params, self.headers, body)
        user = self.app.user_for_token(api.presented_token(request))
        if user is None:
            self._send(graphql_api.error_response(401, "Invalid token"), api_headers=True)
            return
        self._send(self.app.graphql.handle(method, params, self.headers, body, user), api_headers=True)

    # -- git ---------------------------------------------------------------------------------------

    def _git(self, target: git_http.GitTarget, query: str) -> None:
        access, rejection = self._git_access(target, query)
        if rejection is not None:
            self._body.drain()
            self._send(rejection)
            return
        assert access is not None
        repo = self.app.bank.ensure_repo(access.project)
        credentials = git_http.basic_credentials(self.headers)

        def run_cgi() -> git_http.CgiResponse:
            return self.app.git.run(
                method=self.command,
                path_info=f"/{repo.relative_to(self.app.bank.repos_dir).as_posix()}/{target.action}",
                query=query,
                headers=self.headers,
                body=self._body.chunks(),
                remote_user=credentials[0] if credentials else "",
                remote_addr=self.client_address[0],
                allow_push=access.push,
            )

        if target.action == "git-receive-pack":
            self._receive_pack(access, repo, run_cgi)
        else:
            cgi = run_cgi()
            self._send_stream(cgi.status, cgi.reason, cgi.headers, cgi.body)

    def _receive_pack(self, access: AllowedGitRequest, repo, run_cgi) -> None:
        """Run a push under the repository lock, record what it changed and fire the push hooks, then answer.

        The CGI's answer (the small report-status) is held back until the project row is updated and the hooks
        are queued, so a client whose ``git push`` returned sees the push's effects.
        """
        project, changes = access.project, []
        try:
            with self.app.bank.repository_lock(project["id"]):
                refs_before = bank_repos.list_refs(repo)
                try:
                    cgi = run_cgi()
                    answer = b"".join(cgi.body)
                finally:
                    refs_after = bank_repos.list_refs(repo)
                    changes = git_push.ref_changes(refs_before, refs_after)
                    if changes:
                        project = git_push.apply_push(self.app.bank, project, repo, changes, refs_after)
        finally:
            for change in changes:
                self.app.hooks.push(project, access.user, change.before, change.after, change.ref)
        self._send_stream(cgi.status, cgi.reason, cgi.headers, iter([answer]))

    def _git_access(self, target: git_http.GitTarget, query: str) -> tuple[AllowedGitRequest | None, Response | None]:
        """Who may do what to which project, or the answer refusing the request (``Gitlab::GitAccess``'s order:
        authentication, project visibility, archived, push/download access; lib/gitlab/git_access.rb)."""
        credentials = git_http.basic_credentials(self.headers)
        user = self.app.user_for_token(credentials[1]) if credentials is not None else None
        if user is None:
            return None, git_http.unauthorized()
        bank = self.app.bank
        project = bank.find_project(target.project)
        level = bank.project_access_level(user, project) if project is not None else 0
        if project is None or not bank.can_read_project(user, project, level):
            return None, git_http.project_not_found()
        service = dict(parse_qsl(query)).get("service")
        push = target.action == "git-receive-pack" or service == "git-receive-pack"
        if push and project["archived"]:
            return None, git_http.archived()
        if push and level < DEVELOPER:
            return None, git_http.push_denied()
        if not push and not bank.can_download_code(user, project, level):
            return None, git_http.download_denied()
        expected_method = "GET" if target.action == "info/refs" else "POST"
        known_service = service in ("git-upload-pack", "git-receive-pack")
        if self.command != expected_method or (target.action == "info/refs" and not known_service):
            return None, text_response(404, "Not Found\n")
        if not target.has_suffix and target.action == "info/refs":
            location = f"{self.app.url}/{target.project}.git/info/refs" + (f"?{query}" if query else "")
            return None, text_response(301, f"Redirecting to {location}\n", [("Location", location)])
        return AllowedGitRequest(project, user, push), None

    # -- test control --------------------------------------------------------------------------------

    def _admin(self, path: str, query: str) -> Response:
        body = self._body.read(_MAX_API_BODY)
        if path == "/-/health":
            return text_response(200, "GitLab OK")
        request = api.ApiRequest(self.command, path, parse_qsl(query, keep_blank_values=True), self.headers, body)
        user = self.app.user_for_token(api.presented_token(request))
        if user is None:
            return json_response(401, {"message": "401 Unauthorized"})
        if not user["admin"]:
            return json_response(403, {"message": "403 Forbidden"})
        routes = {
            ("GET", "/-/counters"): lambda: json_response(200, self.app.counters()),
            ("POST", "/-/counters/reset"): self._reset_counters,
            ("GET", "/-/faults"): lambda: json_response(200, self.app.faults.list()),
            ("POST", "/-/faults"): lambda: self._add_fault(body),
            ("DELETE", "/-/faults"): self._clear_faults,
            ("GET", "/-/hook_deliveries"): lambda: self._hook_deliveries(request.params),
        }
        handler = routes.get((self.command, path))
        if handler is not None:
            return handler()
        if any(route_path == path for _, route_path in routes):
            return json_response(405, {"error": "405 Not Allowed"})
        return json_response(404, {"error": "404 Not Found"})

    def _hook_deliveries(self, params: dict[str, str]) -> Response:
        """Recorded hook requests, oldest first; ``hook_id``, ``system_hook_id`` and ``project_id`` filter them."""
        try:
            filters = {
                name: int(params[name]) for name in ("hook_id", "system_hook_id", "project_id") if params.get(name)
            }
        except ValueError:
            return json_response(400, {"error": "hook_id, system_hook_id and project_id are integers"})
        return json_response(200, self.app.hooks.deliveries(**filters))

    def _reset_counters(self) -> Response:
        self.app.reset_counters()
        return Response(204)

    def _clear_faults(self) -> Response:
        self.app.faults.clear()
        return Response(204)

    def _add_fault(self, body: bytes) -> Response:
        try:
            spec = json.loads(body or b"{}")
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
            kind = spec.pop("kind")
            fault = self.app.faults.add(spec.pop("endpoint", None), kind, **spec)
        except (ValueError, KeyError, TypeError) as error:
            return json_response(400, {"error": str(error)})
        return json_response(201, fault.describe())

    # -- writing responses -------------------------------------------------------------------------

    def _send(self, response: Response, *, api_headers: bool = False) -> None:
        self._response_started = True
        headers = list(response.headers)
        if api_headers:
            headers += [*_API_HEADERS, ("X-Request-Id", uuid.uuid4().hex[:26].upper())]
            headers.append(("X-Runtime", f"{time.monotonic() - self._started:.6f}"))
        self.send_response(response.status)
        for name, value in headers:
            self.send_header(name, value)
        body = b"" if self.command == "HEAD" else response.body
        if response.status not in (204, 304):
            self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and response.status not in (204, 304):
            self.wfile.write(body)

    def _send_stream(self, status: int, reason: str, headers: list[tuple[str, str]], chunks: Iterator[bytes]) -> None:
        """Stream a CGI answer: as-is with its Content-Length, chunked otherwise."""
        self._response_started = True
        sized = any(name.lower() == "content-length" for name, _ in headers)
        try:
            self.send_response(status, reason or None)
            for name, value in headers:
                self.send_header(name, value)
            if not sized:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk if sized else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if not sized:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def fault_response(fault: Fault, *, is_api: bool) -> Response:
    """The answer an injected ``status`` fault gives, shaped like GitLab's own (429: Rack::Attack's)."""
    status = int(fault.params["status"])
    headers = [tuple(h) for h in fault.params.get("headers", [])]
    if status == 429:
        retry_after = str(fault.params.get("retry_after", 60))
        headers += [("Retry-After", retry_after), ("RateLimit-Reset", retry_after)]
    body = fault.params.get("body")
    if body is not None:
        payload = body.encode("utf-8") if isinstance(body, str) else dump_json(body)
        content_type = "text/plain; charset=utf-8" if isinstance(body, str) else "application/json"
        return Response(status, payload, [("Content-Type", content_type), *headers])  # type: ignore[list-item]
    if status == 429:
        return text_response(429, "Retry later\n", headers)  # type: ignore[arg-type]
    if is_api:
        return json_response(status, {"message": status_line(status)}, headers)  # type: ignore[arg-type]
    return text_response(status, status_line(status) + "\n", headers)  # type: ignore[arg-type]
