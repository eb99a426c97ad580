"""Airflow plugin: the legacy Item Ingest Service API, the GitLab hook receiver, the Spring Batch mirror and the
creation of the DAG's GitLab pool when Airflow's jobs start (see ``include/imrt_compat``)."""

from airflow.plugins_manager import AirflowPlugin

from imrt_compat import guardrails, legacy_api, listener, webhook_receiver


class ImrtCompatPlugin(AirflowPlugin):
    name = "imrt_compat"
    fastapi_apps = [
        {"app": legacy_api.sync_app, "url_prefix": "/sync", "name": "IMRT legacy /sync"},
        {"app": legacy_api.abandon_app, "url_prefix": "/abandon", "name": "IMRT legacy /abandon"},
        {"app": webhook_receiver.webhook_app, "url_prefix": "/webHook", "name": "IMRT GitLab webhook receiver"},
    ]
    fastapi_root_middlewares = [
        {"middleware": legacy_api.LegacyPathMiddleware, "args": [], "kwargs": {}, "name": "IMRT legacy paths"},
    ]
    listeners = [listener, guardrails]
