"""Alembic migrations of this service's own tables (``imrt_webhook_event`` and the others of
:data:`imrt_sync.schema.OWN_TABLES`), versioned in ``imrt_alembic_version``: apart from Flyway's
``flyway_schema_history`` (legacy tables) and Airflow's ``alembic_version`` (its metadata database).

Run them with ``python -m imrt_compat.migrate upgrade`` (:mod:`imrt_sync.schema_migrations`). A new revision goes in
``versions/`` with ``down_revision`` set to the current head, and :mod:`imrt_sync.schema` changes with it.
"""
