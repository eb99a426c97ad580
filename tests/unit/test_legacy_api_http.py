"""The HTTP plumbing of the legacy job API (``imrt_compat.legacy_api``), driven as ASGI apps in this process: the legacy
paths middleware, the no-body rule of the legacy routes and the JSON errors and deadline of ``json_errors``.

The end-to-end modules (tests/e2e/test_legacy_api.py, test_plugin_requests.py) cover the same code through the real
API server; these run in a second. ``[imrt]`` options are read when used, so each test sets them with
``AIRFLOW__IMRT__*`` environment variables.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from imrt_compat.airflow_runs import DagUnavailable
from imrt_compat.legacy_api import (
    LARGE_BODY_BYTES,
    NO_BODY,
    LegacyPathMiddleware,
    RequestGivenUp,
    check_still_awaited,
    json_errors,
)

TRACE_MARKERS = ("traceback", 'file "/', "sqlalchemy.", "psycopg", "site-packages", ".py")


def call(
    app,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    chunks: tuple[bytes, ...] = (),
    root_path: str = "",
) -> tuple[int, bytes]:
    """One HTTP request through ``app`` as an ASGI server makes it: the body arrives in ``chunks``; returns the
    status and the body of the answer."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


class RecordingApp:
    """The app behind the middleware: records the scope it is given and answers 200."""

    def __init__(self) -> None:
        self.scopes: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def path_seen(path: str, *, root_path: str = "") -> tuple[str, str]:
    """(path, raw_path) the app behind a new ``LegacyPathMiddleware`` sees for a request to ``path``."""
    downstream = RecordingApp()
    status, _ = call(LegacyPathMiddleware(downstream), "POST", path, root_path=root_path)
    assert status == 200
    [scope] = downstream.scopes
    return scope["path"], scope["raw_path"].decode()


# --------------------------------------------------------------------------------------- LegacyPathMiddleware


@pytest.fixture
def no_webhook_path(monkeypatch):
    monkeypatch.delenv("AIRFLOW__IMRT__WEBHOOK_PATH", raising=False)


@pytest.mark.parametrize(
    ("path", "seen"),
    [
        ("/sync", "/sync/"),  # a mounted app matches only paths below its prefix
        ("/webHook", "/webHook/"),
        ("/systemHook", "/webHook/"),
        ("/systemHook/", "/webHook/"),
    ],
)
def test_the_legacy_paths_are_rewritten_to_the_mounted_apps(no_webhook_path, path, seen):
    assert path_seen(path) == (seen, seen)


@pytest.mark.parametrize(
    "path",
    ["/sync/", "/sync/42", "/syncs", "/webHook/", "/webhook", "/systemhook", "/abandon/7", "/api/v2/dags", "/"],
)
def test_other_paths_reach_the_app_untouched(no_webhook_path, path):
    assert path_seen(path) == (path, path)


@pytest.mark.parametrize("configured", ["/gitlab/hook", "/gitlab/hook/"])
def test_the_configured_webhook_path_is_served_by_the_hook_receiver(monkeypatch, configured):
    monkeypatch.setenv("AIRFLOW__IMRT__WEBHOOK_PATH", configured)
    assert path_seen("/gitlab/hook") == ("/webHook/", "/webHook/")
    assert path_seen("/gitlab/hook/") == ("/webHook/", "/webHook/")
    assert path_seen("/gitlab/hook/more") == ("/gitlab/hook/more", "/gitlab/hook/more")
    assert path_seen("/webHook") == ("/webHook/", "/webHook/")


@pytest.mark.parametrize("configured", ["gitlab/hook", "/sync", ""])
def test_a_relative_or_taken_webhook_path_changes_nothing(monkeypatch, configured):
    monkeypatch.setenv("AIRFLOW__IMRT__WEBHOOK_PATH", configured)
    assert path_seen("gitlab/hook") == ("gitlab/hook", "gitlab/hook")
    assert path_seen("/sync") == ("/sync/", "/sync/"), "POST /sync still starts a sync"


def test_under_a_root_path_the_path_below_it_is_rewritten_and_the_prefix_kept(no_webhook_path):
    assert path_seen("/airflow/sync", root_path="/airflow") == ("/airflow/sync/", "/airflow/sync/")
    assert path_seen("/airflow/systemHook", root_path="/airflow") == ("/airflow/webHook/", "/airflow/webHook/")
    assert path_seen("/airflow/other", root_path="/airflow") == ("/airflow/other", "/airflow/other")
    # A proxy that stripped the prefix already: the path itself is the legacy one.
    assert path_seen("/webHook", root_path="/airflow") == ("/webHook/", "/webHook/")


def test_non_http_scopes_pass_through_untouched(no_webhook_path):
    seen: list[dict] = []

    async def downstream(scope, receive, send):
        seen.append(scope)

    scope = {"type": "websocket", "path": "/sync", "raw_path": b"/sync", "root_path": ""}
    asyncio.run(LegacyPathMiddleware(downstream)(scope, None, None))
    assert seen == [scope]


# -------------------------------------------------------------------------------------------- no_request_body


@pytest.fixture(scope="module")
def bodiless_app() -> FastAPI:
    app = FastAPI()

    @app.post("/", dependencies=[NO_BODY])
    def route():
        return {"started": True}

    return app


def no_body_answer(app, headers: dict[str, str], chunks: tuple[bytes, ...] = ()) -> tuple[int, dict]:
    status, body = call(app, "POST", "/", headers=headers, chunks=chunks)
    return status, json.loads(body)


def test_a_request_without_a_body_is_served(bodiless_app):
    assert no_body_answer(bodiless_app, {}) == (200, {"started": True})
    assert no_body_answer(bodiless_app, {"Content-Length": "0"}) == (200, {"started": True})


def test_a_declared_body_is_refused_not_ignored(bodiless_app):
    status, body = no_body_answer(bodiless_app, {"Content-Length": "2"}, (b"{}",))
    assert (status, body) == (400, {"detail": "this endpoint takes no request body"})


@pytest.mark.parametrize("declared", [str(LARGE_BODY_BYTES + 1), "12abc", "-1"])
def test_a_body_over_one_mebibyte_or_an_unreadable_length_is_413(bodiless_app, declared):
    status, body = no_body_answer(bodiless_app, {"Content-Length": declared})
    assert (status, body) == (413, {"detail": "this endpoint takes no request body"})


def test_exactly_one_mebibyte_declared_is_400_not_413(bodiless_app):
    assert no_body_answer(bodiless_app, {"Content-Length": str(LARGE_BODY_BYTES)})[0] == 400


def test_a_chunked_body_is_refused(bodiless_app):
    status, body = no_body_answer(bodiless_app, {"Transfer-Encoding": "chunked"}, (b"", b"x"))
    assert (status, body) == (400, {"detail": "this endpoint takes no request body"})


def test_an_empty_chunked_body_is_served(bodiless_app):
    assert no_body_answer(bodiless_app, {"Transfer-Encoding": "chunked"}, (b"", b"")) == (200, {"started": True})


# ------------------------------------------------------------------------------------------------ json_errors


class SlowRoute:
    """A route that blocks until released, then asks ``check_still_awaited`` whether it may still change things."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()
        self.outcome: str | None = None

    def __call__(self):
        try:
            assert self.release.wait(30), "the test never released the route"
            try:
                check_still_awaited()
            except RequestGivenUp:
                self.outcome = "given up"
                raise
            self.outcome = "changed"
            return {"changed": True}
        finally:
            self.finished.set()


@pytest.fixture
def deadline(monkeypatch) -> float:
    seconds = 0.5
    monkeypatch.setenv("AIRFLOW__IMRT__API_DEADLINE_SECONDS", str(seconds))
    return seconds


def guarded_app(route, path: str = "/") -> FastAPI:
    app = FastAPI()
    app.post(path)(json_errors(route))
    return app


def answer(app) -> tuple[int, dict]:
    status, body = call(app, "POST", "/")
    assert not any(marker in body.decode().lower() for marker in TRACE_MARKERS), body
    return status, json.loads(body)


def test_a_route_past_the_deadline_answers_503_and_may_change_nothing_after(deadline):
    route = SlowRoute()
    status, body = answer(guarded_app(route))
    assert (status, body) == (
        503,
        {"detail": f"the imrt database did not answer within {deadline:g} s; try again later"},
    )
    assert not route.finished.is_set()

    route.release.set()
    assert route.finished.wait(10)
    assert route.outcome == "given up"


def test_a_route_within_the_deadline_may_change_things(deadline):
    route = SlowRoute()
    route.release.set()
    assert answer(guarded_app(route)) == (200, {"changed": True})
    assert route.outcome == "changed"


def test_the_deadline_is_read_for_each_request(monkeypatch):
    route = SlowRoute()
    app = guarded_app(route)
    monkeypatch.setenv("AIRFLOW__IMRT__API_DEADLINE_SECONDS", "0.2")
    assert answer(app)[1]["detail"].startswith("the imrt database did not answer within 0.2 s")
    route.release.set()
    assert route.finished.wait(10)


def raising(exc: BaseException):
    def route():
        raise exc

    return route


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.OperationalError("SELECT 1", {}, ConnectionError("password=hunter2 refused")),
        sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
    ],
)
def test_an_unreachable_or_busy_database_is_503(deadline, error):
    status, body = answer(guarded_app(raising(error)))
    assert (status, body) == (503, {"detail": "the imrt database is unreachable or busy; try again later"})


def test_any_other_failure_is_a_json_500_naming_only_its_kind(deadline):
    status, body = answer(guarded_app(raising(RuntimeError("internal detail in /opt/airflow/secret.py"))))
    assert (status, body) == (500, {"detail": "unexpected error: RuntimeError"})


@pytest.mark.parametrize(("code", "detail"), [(409, "the DAG is paused"), (404, "no DAG item_synchronization")])
def test_an_unavailable_dag_answers_its_own_status(deadline, code, detail):
    assert answer(guarded_app(raising(DagUnavailable(code, detail)))) == (code, {"detail": detail})


def test_a_route_answer_passes_through_unchanged(deadline):
    assert answer(guarded_app(lambda: JSONResponse({"detail": "no job execution 9"}, status_code=404))) == (
        404,
        {"detail": "no job execution 9"},
    )
