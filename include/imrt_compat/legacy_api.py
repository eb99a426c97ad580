"""The legacy job API of the Item Ingest Service, served by Airflow's API server (docs/legacy-api.md; the legacy
routes: SmarterApp/AP_IMRT_ItemIngestService at tag 0.1.61,
``src/main/java/org/opentestsystem/ap/imrt/iis/controller/ItemIngestJobController.java``).

``POST /sync``, ``POST /sync/{projectId}``, ``PUT /abandon/{jobInstanceId}`` and, added here to follow a run,
``GET /sync/{jobExecutionId}``, authenticated like the REST API (JWT bearer token or the UI's session cookie) and
authorised through the auth manager.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Annotated

import sqlalchemy as sa
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.utils.session import create_session
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from imrt_sync import DAG_ID
from imrt_sync.errors import PermanentError
from imrt_sync.spring_batch import SpringBatchMirror

from . import airflow_runs, settings
from .engine import server_engine
from .legacy_responses import abandon_response, already_running_message, execution_view, started_response

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod

log = logging.getLogger(__name__)

SYNC_LOCK_KEY = 0x494D5254_53594E43  # "IMRTSYNC": serialises concurrent POST /sync across API server workers


def _access(method: ResourceMethod) -> list:
    return [Depends(requires_access_dag(method=method, access_entity=DagAccessEntity.RUN, param_dag_id=DAG_ID))]


LARGE_BODY_BYTES = 1024 * 1024
# Ids as the legacy tables store them: project ids are integer columns, Spring Batch ids bigint.
ProjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]
BatchId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def no_request_body(request: Request) -> None:
    """The legacy routes take no request body (the legacy service read none): a body is refused, not ignored, so
    that a request meant for something else never starts or abandons a sync."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip() not in ("", "0"):
        too_large = not declared.strip().isdigit() or int(declared) > LARGE_BODY_BYTES
        raise HTTPException(413 if too_large else 400, "this endpoint takes no request body")
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        async for chunk in request.stream():
            if chunk:
                raise HTTPException(400, "this endpoint takes no request body")


NO_BODY = Depends(no_request_body)


# The routes' work runs here, so that a request can be answered when its deadline passes even if a database call
# hangs (a server that stopped answering without closing connections): hung calls hold these threads, not the
# API server's own.
_route_threads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="imrt-legacy-api")
_current_request = threading.local()


class RequestGivenUp(PermanentError):
    """The caller already got a 503 for this request: it must not change anything any more."""


def check_still_awaited() -> None:
    """Call before a change the caller must not get after a 503 (starting a run)."""
    given_up = getattr(_current_request, "given_up", None)
    if given_up is not None and given_up.is_set():
        raise RequestGivenUp


def json_errors(route: Callable) -> Callable:
    """Answer every failure of a route with a clear JSON error and the right status code, never a stack trace,
    and answer 503 when the route has not finished within ``[imrt] api_deadline_seconds``."""

    @functools.wraps(route)
    def guarded(*args, **kwargs):
        given_up = threading.Event()
        deadline = settings.api_deadline_seconds()
        answer = _route_threads.submit(_answered, given_up, route, args, kwargs)
        try:
            return answer.result(timeout=deadline)
        except FutureTimeout:
            given_up.set()
            log.error("the imrt database did not answer within %s s: answered 503", deadline)
            return JSONResponse(
                {"detail": f"the imrt database did not answer within {deadline:g} s; try again later"},
                status_code=503,
            )

    return guarded


def _answered(given_up: threading.Event, route: Callable, args, kwargs):
    _current_request.given_up = given_up
    try:
        return route(*args, **kwargs)
    except airflow_runs.DagUnavailable as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
        log.error("the imrt database is unreachable or busy: %s", type(exc).__name__)
        return JSONResponse({"detail": "the imrt database is unreachable or busy; try again later"}, status_code=503)
    except RequestGivenUp:
        log.warning("a request answered 503 after its deadline finished late: it changed nothing")
        return None
    except Exception as exc:
        log.exception("unexpected error in the legacy job API")
        return JSONResponse({"detail": f"unexpected error: {type(exc).__name__}"}, status_code=500)
    finally:
        _current_request.given_up = None


sync_app = FastAPI(title="IMRT legacy /sync", openapi_url=None, docs_url=None, redoc_url=None)
abandon_app = FastAPI(title="IMRT legacy /abandon", openapi_url=None, docs_url=None, redoc_url=None)


def start_sync(conf_params: dict, user_name: str | None) -> JSONResponse | PlainTextResponse:
    """Start a run unless one is active; the Spring Batch execution row comes first, so its id names the run."""
    mirror = SpringBatchMirror(server_engine())
    with server_engine().begin() as lock_conn:
        if lock_conn.scalar(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SYNC_LOCK_KEY}):
            with create_session() as session:
                started = _start_unless_running(mirror, conf_params, user_name, session)
            if started is not None:
                log.info("POST /sync started run legacy__%s", started.job_execution_id)
                return JSONResponse(started_response(started))
    # A run is active, or another request is starting one this very moment.
    return PlainTextResponse(already_running_message(mirror.job_instance_id()), status_code=409)


def _start_unless_running(mirror: SpringBatchMirror, conf_params: dict, user_name: str | None, session):
    airflow_runs.check_triggerable(DAG_ID, session)
    reconcile(mirror, session)
    if airflow_runs.active_runs(DAG_ID, session):
        return None  # the hook events' runs are another DAG's (EVENTS_DAG_ID): they never make /sync answer 409
    check_still_awaited()
    execution = mirror.create_execution()
    run_id = f"legacy__{execution.job_execution_id}"
    mirror.link_run(execution.job_execution_id, run_id)
    try:
        airflow_runs.trigger(
            DAG_ID,
            run_id,
            {**conf_params, "jobExecutionId": execution.job_execution_id},
            user_name,
            session,
            note=f"Started by the legacy /sync endpoint: Spring Batch job execution {execution.job_execution_id}",
        )
    except Exception as exc:
        mirror.mark_finished(run_id, "FAILED", f"Airflow refused the run: {type(exc).__name__}: {exc}")
        raise
    return execution


def reconcile(mirror: SpringBatchMirror, session) -> list[int]:
    """Repair executions left running for runs that have ended: Airflow's run state is the truth."""
    return mirror.reconcile(lambda run_ids: airflow_runs.run_states(DAG_ID, run_ids, session))


def _register_sync_routes(app: FastAPI, anonymous: Callable[[], bool]) -> None:
    if anonymous():
        log.warning("[imrt] allow_anonymous_sync is on: POST /sync accepts requests without a token")

        @app.post("/", dependencies=[NO_BODY])
        @json_errors
        def post_sync_anonymously():
            return start_sync({}, None)
    else:

        @app.post("/", dependencies=[*_access("POST"), NO_BODY])
        @json_errors
        def post_sync(user: GetUserDep):
            return start_sync({}, user.get_name())

    @app.post("/{project_id}", dependencies=[*_access("POST"), NO_BODY])
    @json_errors
    def post_sync_item(project_id: ProjectId, user: GetUserDep):
        return start_sync({"item_ids": [project_id]}, user.get_name())

    # Like every legacy route, it needs the permission to trigger the DAG (a viewer gets 403): it also repairs rows.
    @app.get("/{job_execution_id}", dependencies=[*_access("POST"), NO_BODY])
    @json_errors
    def get_execution(job_execution_id: BatchId):
        mirror = SpringBatchMirror(server_engine())
        with create_session() as session:
            reconcile(mirror, session)
        execution = mirror.execution(job_execution_id)
        if execution is None:
            return JSONResponse({"detail": f"no job execution {job_execution_id}"}, status_code=404)
        return JSONResponse(execution_view(execution))


def _register_abandon_routes(app: FastAPI) -> None:
    @app.put("/{job_instance_id}", dependencies=[*_access("PUT"), NO_BODY])
    @json_errors
    def abandon(job_instance_id: BatchId):
        result = SpringBatchMirror(server_engine()).abandon(job_instance_id)
        status_code, body = abandon_response(result)
        if isinstance(body, str):
            return PlainTextResponse(body, status_code=status_code)
        with create_session() as session:
            for run_id in result.run_ids:
                stopped = airflow_runs.fail_run(DAG_ID, run_id, session)
                log.info(
                    "abandoned job instance %s: run %s %s",
                    job_instance_id,
                    run_id,
                    "marked failed" if stopped else "had already ended",
                )
        return JSONResponse(body, status_code=status_code)


_register_sync_routes(sync_app, settings.allow_anonymous_sync)
_register_abandon_routes(abandon_app)


class LegacyPathMiddleware:
    """Serve the legacy paths as they were: ``POST /sync`` itself (a mounted app matches only paths below its
    prefix), and GitLab's ``/webHook`` and ``/systemHook`` (plus ``[imrt] webhook_path``) by the hook receiver."""

    def __init__(self, app):
        self.app = app
        extra = settings.webhook_path()
        self.rewrites = {
            "/sync": "/sync/",
            "/webHook": "/webHook/",
            "/systemHook": "/webHook/",
            "/systemHook/": "/webHook/",
        }
        if extra.startswith("/") and extra not in self.rewrites:
            self.rewrites.update({extra: "/webHook/", f"{extra}/": "/webHook/"})

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"]
            relative = path.removeprefix(root) if root and path.startswith(root) else path
            target = self.rewrites.get(relative)
            if target is not None:
                new_path = f"{root}{target}" if root and path.startswith(root) else target
                scope = {**scope, "path": new_path, "raw_path": new_path.encode()}
        await self.app(scope, receive, send)
