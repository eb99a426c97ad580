"""Alembic environment: the connection comes from :func:`imrt_sync.schema_migrations.upgrade`, already in a
transaction and holding the schema lock; only this service's own tables are the migrations' business."""

from alembic import context

from imrt_sync import schema
from imrt_sync.schema_migrations import VERSION_TABLE, include_object

if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported: run python -m imrt_compat.migrate upgrade")

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=schema.metadata,
    version_table=VERSION_TABLE,
    include_object=include_object,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
