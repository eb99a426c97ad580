"""Failure alerts: the DAG's ``on_failure_callback`` sends the run's exit message and URL through an Airflow
notifier. SMTP (``SmtpNotifier``) by default; any notifier class by configuration (``[imrt] failure_notifier``).

DAG callbacks run in the dag-processor (docs/reliability.md, "Failure alert"; Airflow's "Callbacks" page:
https://airflow.apache.org/docs/apache-airflow/3.3.2/administration-and-deployment/logging-monitoring/callbacks.html):
the notifier's connection (``smtp_default``) and
``[api] base_url`` must be set there.
"""

from __future__ import annotations

import importlib
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from . import settings
from .task_contract import LISTING_FAILURE, VERDICT

SMTP_NOTIFIER = settings.imrt_default("failure_notifier")  # the default notifier: Airflow's SmtpNotifier
SUBJECT = "[IMRT] item synchronization failed: {{ imrt_run_id }}"
BODY = (
    "<p>Item synchronization run <b>{{ imrt_run_id }}</b> failed ({{ imrt_reason }}).</p>"
    "<p>Exit message: {{ imrt_exit_message | e }}</p>"
    '<p>Run: <a href="{{ imrt_run_url }}">{{ imrt_run_url }}</a></p>'
)


def run_url(dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI (``[api] base_url`` is the public address)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def exit_message(context) -> str:
    """The legacy exit message ``summary`` published (XCom); where the callback has no task channel to read XComs
    (``dag.test()`` runs callbacks after its in-process channel closed), the one recorded in Spring Batch's
    ``batch_job_execution``; when the run ended before ``summary`` reported, the reason Airflow gives."""
    ti = context.get("ti")
    if ti is not None:
        try:
            verdict, listing = VERDICT.pull(ti), LISTING_FAILURE.pull(ti)
        except ImportError:  # no task channel in this process
            verdict, listing = None, None
            recorded = _recorded_exit_message(context)
            if recorded:
                return recorded
        if verdict and verdict.get("message"):
            return verdict["message"]
        if listing and listing.get("error"):
            return f"Listing the item bank failed: {listing['error']}"
    return f"The run ended ({context.get('reason') or 'failed'}) before its summary task reported"


def _recorded_exit_message(context) -> str | None:
    from imrt_sync.spring_batch import SpringBatchMirror

    from .engine import task_engine

    engine = task_engine()
    try:
        execution = SpringBatchMirror(engine).execution_for_run(context["run_id"])
        return execution.exit_message if execution is not None else None
    finally:
        engine.dispose()


class RunFailureNotifier(BaseNotifier):
    """Adds ``imrt_exit_message``, ``imrt_run_url``, ``imrt_run_id`` and ``imrt_reason`` to the context, then calls
    the configured notifier, whose templated fields may use them."""

    template_fields = ()

    def __init__(self, notifier_class: str, notifier_kwargs: dict):
        super().__init__()
        self.notifier_class = notifier_class
        self.notifier_kwargs = notifier_kwargs

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Nothing of its own to render: the configured notifier renders its fields with the enriched context."""

    def notify(self, context) -> None:
        dag_run = context.get("dag_run")
        run_id = dag_run.run_id if dag_run is not None else context["run_id"]
        dag_id = context["dag"].dag_id
        enriched = {
            **context,
            # dag.test() passes the serialized DAG, which has no template environment (the dag-processor passes
            # the DAG itself): without a DAG, the notifier renders in a plain sandboxed environment
            "dag": context["dag"] if hasattr(context["dag"], "get_template_env") else None,
            "imrt_run_id": run_id,
            "imrt_reason": context.get("reason") or "failed",
            "imrt_exit_message": exit_message(context),
            "imrt_run_url": run_url(dag_id, run_id),
        }
        _notifier_class(self.notifier_class)(**self.notifier_kwargs)(enriched)


def _notifier_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def failure_notifier() -> RunFailureNotifier | None:
    """The configured notifier, or None when alerts are not configured (SMTP without ``[imrt] alert_email_to``)."""
    notifier_class = settings.failure_notifier()
    kwargs = settings.failure_notifier_kwargs()
    if notifier_class != SMTP_NOTIFIER:
        return RunFailureNotifier(notifier_class, kwargs)
    recipients = settings.alert_recipients()
    if not recipients and "to" not in kwargs:
        return None
    smtp = {"to": recipients, "subject": SUBJECT, "html_content": BODY, "smtp_conn_id": settings.alert_smtp_conn_id()}
    sender = settings.alert_email_from()
    if sender:
        smtp["from_email"] = sender
    return RunFailureNotifier(notifier_class, {**smtp, **kwargs})
