"""The imrt database's schema: migrations of this service's own tables, bootstrap of the legacy ones, and the check
the tasks and the API server make instead of changing the schema themselves (docs/deployment.md, "Database migrations").

Its command line is ``python -m imrt_compat.migrate`` (the database from the workflow's connection).
"""

from __future__ import annotations

import functools
import logging

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from . import schema
from .errors import PermanentError
from .legacy_bootstrap import bootstrap_legacy

__all__ = [
    "VERSION_TABLE",
    "SchemaNotReady",
    "head_revision",
    "current_revision",
    "upgrade",
    "prepare_database",
    "require_current_schema",
]

# Neither Flyway's flyway_schema_history (legacy tables) nor Airflow's alembic_version (its metadata database).
VERSION_TABLE = "imrt_alembic_version"
UPGRADE_COMMAND = "python -m imrt_compat.migrate upgrade"
BOOTSTRAP_COMMAND = "python -m imrt_compat.migrate bootstrap-legacy"

log = logging.getLogger(__name__)


def include_object(obj, name: str | None, type_: str, reflected: bool, compare_to) -> bool:
    """Alembic's autogenerate compares this service's own tables only: the legacy ones belong to Flyway."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in {own.name for own in schema.OWN_TABLES}


class SchemaNotReady(RuntimeError, PermanentError):
    """The imrt database is not at the schema this code needs; the message names the command that fixes it."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "imrt_sync:migrations")
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision of this service's own tables."""
    head = _scripts().get_current_head()
    if head is None:  # no migration scripts: an incomplete install, never a database at "no revision" yet
        raise RuntimeError("imrt_sync.migrations holds no revision: the package is incomplete")
    return head


def _revision_of(conn: sa.Connection) -> str | None:
    """The revision recorded in ``imrt_alembic_version`` (``None``: never migrated). Reads only."""
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return _revision_of(conn)


def upgrade(engine: sa.Engine) -> str:
    """Migrate this service's own tables to the head revision; returns it. Safe to run from several processes at
    once (two init containers): the migrations run in one transaction under the schema advisory lock."""
    config = alembic_config()
    with engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(schema.SCHEMA_LOCK_KEY)))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return head_revision()


def prepare_database(engine: sa.Engine) -> list[str]:
    """A new environment's database, ready to run: :func:`~imrt_sync.legacy_bootstrap.bootstrap_legacy`, then
    :func:`upgrade`.

    What ``make run``, the end-to-end stacks and the tests do; returns the legacy objects created.
    """
    created = bootstrap_legacy(engine)
    upgrade(engine)
    return created


def _missing_legacy_objects(conn: sa.Connection) -> list[str]:
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    sequences = set(inspector.get_sequence_names())
    return [seq.name for seq in schema.SEQUENCES if seq.name not in sequences] + [
        table.name for table in schema.LEGACY_TABLES if table.name not in tables
    ]


def require_current_schema(engine: sa.Engine) -> None:
    """Raise :class:`SchemaNotReady` unless the own tables are at the head revision and the legacy tables exist.

    Reads the version table and the catalog only: a task or the API server never changes the schema.
    """
    with engine.connect() as conn:
        current = _revision_of(conn)
        missing = _missing_legacy_objects(conn)
    head = head_revision()
    if current != head:
        if current is not None and current not in {script.revision for script in _scripts().walk_revisions()}:
            raise SchemaNotReady(
                f"the imrt database is at schema revision {current}, which this code does not know (it needs {head}):"
                " it was migrated by a newer release; deploy that release"
            )
        raise SchemaNotReady(
            f"the imrt database is at schema revision {current or 'none'}, this code needs {head}: "
            f"run `{UPGRADE_COMMAND}`"
        )
    if missing:
        raise SchemaNotReady(
            f"the imrt database lacks the legacy tables or sequences {', '.join(missing)}: restore the legacy schema"
            f" (Flyway), or for a new environment run `{BOOTSTRAP_COMMAND}`"
        )
