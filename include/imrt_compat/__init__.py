"""The Airflow adapter of ``imrt_sync``: the settings read from Airflow, the legacy job API (``POST /sync``,
``PUT /abandon``), the GitLab hook receiver, the listener that mirrors runs into the Spring Batch tables, roles,
guardrails, alerts and metrics."""
