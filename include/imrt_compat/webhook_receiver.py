"""The GitLab webhook receiver, served by Airflow's API server at ``/webHook`` (and ``/systemHook``), the legacy paths
(SmarterApp/AP_IMRT_ItemIngestService at tag 0.1.46,
``src/main/java/org/opentestsystem/ap/imrt/iis/controller/GitHookController.java``); docs/real-time-path.md.

A request is checked (secret token, size, shape), recorded in ``imrt_webhook_event`` and answered at once; the
targeted run is started after the answer. A run started for events stays queued while another run is active
(``max_active_runs=1``) and takes every event due when it starts, so a burst of pushes costs one run, not one per
push. A sweeper thread in every API server process, every ``[imrt] webhook_sweep_seconds``: gives the events of
runs that ended without closing them their failed attempt (back-off, or ``failed`` after the last attempt), prunes
closed events past ``imrt_webhook_retention_days``, and starts a run when a pending event is due (the server
restarted between recording and triggering, the DAG was paused, a failed event's back-off is over). Neither the
receiver nor the sweeper starts a run for events that are not due.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager

import sqlalchemy as sa
from airflow.utils.session import create_session
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from imrt_sync import EVENTS_DAG_ID
from imrt_sync.config import EventRetryPolicy, ReceiverSettings
from imrt_sync.webhook_events import (
    MAX_BODY_BYTES,
    EventLog,
    EventRejected,
    parse_event,
    token_accepted,
    triage,
    webhook_run_id,
)

from . import airflow_runs
from .engine import server_engine
from .settings import SettingsError, receiver_settings, webhook_sweep_seconds
from .task_contract import LIST_IDS

log = logging.getLogger(__name__)

EVENTS_RUN_LOCK_KEY = 0x494D5254_57484B53  # "IMRTWHKS": one process at a time decides whether to start a run
QUEUED = "queued"
RECORD_DEADLINE_SECONDS = 8.0  # GitLab gives up on a hook after 10 s


def ensure_events_run(policy: EventRetryPolicy) -> str | None:
    """Start a run for the due events unless a run will take them (:func:`will_claim`); return the run that will."""
    engine = server_engine()
    events = EventLog(engine)
    with engine.begin() as lock_conn, create_session() as session:
        lock_conn.execute(sa.select(sa.func.pg_advisory_xact_lock(EVENTS_RUN_LOCK_KEY)))
        release_ended_claims(events, session, policy)
        if not events.has_due(lock_conn):
            return None
        claiming = set(events.claiming_runs())
        for run in airflow_runs.active_runs(EVENTS_DAG_ID, session):
            if will_claim(run, claiming, session):
                return run.run_id
        airflow_runs.check_triggerable(EVENTS_DAG_ID, session)
        run_id = airflow_runs.trigger(
            EVENTS_DAG_ID,
            webhook_run_id(),
            {},
            None,
            session,
            note="Started by GitLab hook events (imrt_webhook_event)",
        )
        log.info("started run %s for pending GitLab hook events", run_id)
        return run_id


def will_claim(run: airflow_runs.ActiveRun, claiming: set[str], session) -> bool:
    """Whether the hook events run has yet to claim events: queued, or its ``list_ids`` (which claims) not over and
    no events claimed by it yet."""
    if run.state == QUEUED:
        return True
    return run.run_id not in claiming and airflow_runs.task_not_finished(EVENTS_DAG_ID, run.run_id, LIST_IDS, session)


def release_ended_claims(events: EventLog, session, policy: EventRetryPolicy) -> int:
    """Events claimed by runs that are over (or gone) without closing them failed that attempt."""
    claiming = events.claiming_runs()
    if not claiming:
        return 0
    states = airflow_runs.run_states(EVENTS_DAG_ID, claiming, session)
    ended = [run_id for run_id in claiming if states.get(run_id) not in (QUEUED, "running")]
    if not ended:
        return 0
    closed = events.release(ended, f"run {', '.join(ended)} ended without closing its events", policy)
    log.warning(
        "GitLab hook events of ended runs %s: %d will be retried later, %d failed after %d attempts",
        ended,
        closed.retrying,
        closed.failed,
        policy.max_attempts,
    )
    return closed.retrying + closed.failed


def start_events_run_quietly(policy: EventRetryPolicy) -> None:
    """After an answer: start the run now if an event is due; the sweeper tries again later otherwise."""
    try:
        ensure_events_run(policy)
    except airflow_runs.DagUnavailable as exc:
        log.warning("GitLab hook events wait: %s", exc.detail)
    except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
        log.warning("GitLab hook events wait: the imrt database is unreachable or busy (%s)", type(exc).__name__)
    except Exception:
        log.warning("could not start a run for GitLab hook events; the sweeper will retry", exc_info=True)


def sweep() -> None:
    """One pass of the sweeper: prune closed events past the retention, then start a run if an event is due."""
    try:
        settings = receiver_settings()
    except SettingsError as exc:
        log.error("GitLab hook events wait: %s", exc)
        return
    except Exception:
        log.warning("GitLab hook events wait: could not read the imrt_* Airflow variables", exc_info=True)
        return
    try:
        pruned = EventLog(server_engine()).prune(settings.event_retry.retention_days)
    except Exception:
        log.warning("could not prune closed GitLab hook events", exc_info=True)
    else:
        if pruned:
            log.info(
                "pruned %d closed GitLab hook events older than %d days", pruned, settings.event_retry.retention_days
            )
    start_events_run_quietly(settings.event_retry)


class EventSweeper:
    """Every ``[imrt] webhook_sweep_seconds``: :func:`sweep`."""

    def __init__(self, period: float):
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="imrt-webhook-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sweep()
            self._stop.wait(self.period)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    sweeper = EventSweeper(webhook_sweep_seconds())
    sweeper.start()
    try:
        yield
    finally:
        sweeper.stop()


webhook_app = FastAPI(
    title="IMRT GitLab webhook receiver", openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan
)


def _answer(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise EventRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise EventRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


@webhook_app.post("/")
async def receive_event(request: Request, background: BackgroundTasks):
    """Check, record, answer; the run starts after the answer (GitLab gives a hook 10 s)."""
    try:
        settings: ReceiverSettings = await run_in_threadpool(receiver_settings)
        if not settings.secret:
            log.error("GitLab hook refused: the Airflow variable imrt_webhook_secret is not set")
        if not token_accepted(request.headers.get("x-gitlab-token"), settings.secret, settings.previous_secret):
            log.warning(
                "GitLab hook refused from %s: missing or wrong X-Gitlab-Token",
                request.client.host if request.client else "?",
            )
            return _answer(401, "missing or wrong X-Gitlab-Token")
        event = parse_event(
            request.headers.get("x-gitlab-event"), await _read_body(request), request.headers.get("x-gitlab-event-uuid")
        )
        triaged = triage(event, settings.scope, settings.ignore_projects)
        event_id = await asyncio.wait_for(
            run_in_threadpool(EventLog(server_engine()).record, event, triaged), RECORD_DEADLINE_SECONDS
        )
    except EventRejected as exc:
        return _answer(exc.status_code, exc.detail)
    except SettingsError as exc:
        log.error("GitLab hook not recorded: %s", exc)
        return _answer(503, "the receiver is misconfigured (see the API server log); the nightly sync will catch up")
    except TimeoutError:
        log.error("GitLab hook: the imrt database did not answer within %s s", RECORD_DEADLINE_SECONDS)
        return _answer(503, "the imrt database did not answer in time; the nightly sync will catch up")
    except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
        log.error("GitLab hook not recorded: the imrt database is unreachable or busy (%s)", type(exc).__name__)
        return _answer(503, "the imrt database is unreachable or busy; the nightly sync will catch up")
    except Exception as exc:
        log.exception("unexpected error in the GitLab hook receiver")
        return _answer(500, f"unexpected error: {type(exc).__name__}")
    log.info(
        "GitLab %s event %s for project %s recorded as %s%s",
        event.event_type,
        event_id,
        event.project_id,
        triaged.status,
        f" ({triaged.detail})" if triaged.detail else "",
    )
    if triaged.status == "pending":
        background.add_task(start_events_run_quietly, settings.event_retry)
    body = {"event": event_id, "status": triaged.status}
    if triaged.detail:
        body["detail"] = triaged.detail
    return JSONResponse(body)
