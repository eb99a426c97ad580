"""Airflow plugin: the legacy Item Ingest Service API and the Spring Batch mirror (see ``include/imrt_compat``)."""

from airflow.plugins_manager import AirflowPlugin

from imrt_compat import api, listener


class ImrtCompatPlugin(AirflowPlugin):
    name = "imrt_compat"
    fastapi_apps = [
        {"app": api.sync_app, "url_prefix": "/sync", "name": "IMRT legacy /sync"},
        {"app": api.abandon_app, "url_prefix": "/abandon", "name": "IMRT legacy /abandon"},
    ]
    fastapi_root_middlewares = [
        {"middleware": api.LegacySyncPathMiddleware, "args": [], "kwargs": {}, "name": "IMRT legacy /sync path"},
    ]
    listeners = [listener]
