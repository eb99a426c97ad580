"""A new environment's legacy schema, as the schema project's Flyway would have left it (docs/deployment.md,
"Database migrations").

The legacy tables belong to the schema project SmarterApp/AP_IMRT_Schema, whose Flyway 5.0.7 migrations
``V1__imrt_ddl.sql`` .. ``V20__imrt_ddl.sql`` (its tag 0.1.5; the scripts are unchanged since) built the schema the
legacy service of IIS tag 0.1.46 ran on. :func:`bootstrap_legacy` does in one transaction what those twenty scripts
did to an empty database:

* the tables and sequences, from the model in :mod:`imrt_sync.schema`;
* the scripts' GRANTs to ``imrt_ingest`` and ``imrt_search`` (:data:`LEGACY_GRANTS`), to each role that exists; a
  missing role is skipped with a warning that names the grants to run once it exists;
* Flyway's history table, ``flyway_schema_history``, with the rows V1..V20 that Flyway writes (:data:`FLYWAY_HISTORY`),
  so that the schema project's Flyway takes the database as its own and applies V21 and later.

The history holds the twenty rows Flyway writes, with Flyway's checksums of the real scripts, rather than a
``<< Flyway Baseline >>`` row at version 20. Flyway accepts either and migrates from V21. With the rows it also
validates V1..V20 against the scripts, and ``flyway info`` lists them as applied (Success), as on a database Flyway
built. Below a baseline it checks nothing and lists the scripts as "Below Baseline". The checksums were computed
the way Flyway 5.0.7 computes them (:func:`flyway_checksum`) from the exact scripts. They are equal to the rows that
Flyway 5.0.7, compiled from its source, wrote when it ran those scripts on PostgreSQL.

Flyway is never overruled: on a database that has ``flyway_schema_history`` the bootstrap changes nothing, and it
writes the history only when it created the whole legacy schema itself. When some legacy tables existed, it creates
the rest and leaves the history to the operator (a Flyway baseline), because it cannot tell which versions built
those tables.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import sqlalchemy as sa

from . import schema

__all__ = [
    "FLYWAY_TABLE",
    "FLYWAY_HISTORY",
    "LEGACY_GRANTS",
    "LEGACY_ROLES",
    "FlywayMigration",
    "LegacyGrant",
    "bootstrap_legacy",
    "flyway_checksum",
    "flyway_schema_history",
]

log = logging.getLogger(__name__)

FLYWAY_TABLE = "flyway_schema_history"


# ------------------------------------------------------------------------------------------- Flyway history

_flyway_metadata = sa.MetaData()

# Flyway 5.0.7's table, as its PostgreSQL createMetaDataTable.sql creates it (flyway-core
# org/flywaydb/core/internal/database/postgresql/createMetaDataTable.sql).
flyway_schema_history = sa.Table(
    FLYWAY_TABLE,
    _flyway_metadata,
    sa.Column("installed_rank", sa.Integer, nullable=False, autoincrement=False),
    sa.Column("version", sa.String(50)),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("script", sa.String(1000), nullable=False),
    sa.Column("checksum", sa.Integer),
    sa.Column("installed_by", sa.String(100), nullable=False),
    sa.Column("installed_on", sa.DateTime(timezone=False), nullable=False, server_default=sa.text("now()")),
    sa.Column("execution_time", sa.Integer, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.PrimaryKeyConstraint("installed_rank", name=f"{FLYWAY_TABLE}_pk"),
    sa.Index(f"{FLYWAY_TABLE}_s_idx", "success"),
)


@dataclass(frozen=True)
class FlywayMigration:
    """One versioned SQL migration of the schema project, as Flyway records it once applied."""

    version: int
    checksum: int  # flyway_checksum() of the script's text
    description: str = "imrt ddl"  # Flyway's: the file name after "__", underscores as spaces

    @property
    def script(self) -> str:
        return f"V{self.version}__imrt_ddl.sql"


# src/main/resources/db/migration/V1__imrt_ddl.sql .. V20__imrt_ddl.sql of AP_IMRT_Schema at tag 0.1.5.
FLYWAY_HISTORY = tuple(
    FlywayMigration(version, checksum)
    for version, checksum in enumerate(
        (
            -1098534408,
            -2099173256,
            1211634498,
            -765342003,
            -255131459,
            -1557317747,
            979784847,
            -1185048752,
            -74559386,
            -1938378218,
            -1597248110,
            1105454712,
            -1234276047,
            642903460,
            -376792860,
            -222078989,
            1316087472,
            740158603,
            1192009438,
            -1638536202,
        ),
        start=1,
    )
)


def flyway_checksum(script_text: str) -> int:
    """Flyway 5.0.7's checksum of a SQL migration's text.

    ``SqlMigrationResolver.calculateChecksum`` feeds CRC-32 the UTF-8 bytes of each line that a ``BufferedReader``
    reads (line breaks ``\\n``, ``\\r``, ``\\r\\n`` left out), after ``FileCopyUtils.copyToString`` dropped a leading
    byte order mark, and keeps it as a Java ``int``.
    """
    text = script_text.removeprefix("\ufeff")
    crc = zlib.crc32(text.replace("\r", "").replace("\n", "").encode("utf-8"))
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def _write_flyway_history(conn: sa.Connection) -> None:
    """Flyway's table and its rows V1..V20, as Flyway writes them (``execution_time`` 0: nothing was timed)."""
    flyway_schema_history.create(conn)
    installed_by = conn.scalar(sa.text("SELECT current_user"))  # what Flyway records when not configured otherwise
    conn.execute(
        flyway_schema_history.insert(),
        [
            {
                "installed_rank": migration.version,
                "version": str(migration.version),
                "description": migration.description,
                "type": "SQL",
                "script": migration.script,
                "checksum": migration.checksum,
                "installed_by": installed_by,
                "execution_time": 0,
                "success": True,
            }
            for migration in FLYWAY_HISTORY
        ],
    )


# ------------------------------------------------------------------------------------------------- grants

LEGACY_ROLES = ("imrt_ingest", "imrt_search")

# The tables in schema public when V1's GRANTs ran (Flyway had created its table first; standard_id, dropped by V10,
# is left out), then when V4's ran. GRANT ... ON ALL TABLES leaves sequences out; ON ALL SEQUENCES covers them.
_V1_TABLES = ("item", "item_git", "item_log", "stim_link", "project_lock", FLYWAY_TABLE)
_V4_TABLES = _V1_TABLES + tuple(table.name for table in schema.LEGACY_TABLES if table.name.startswith("batch_"))
_V1_SEQUENCES = ("item_key_seq",)  # item.key SERIAL
_V4_SEQUENCES = _V1_SEQUENCES + tuple(sequence.name for sequence in schema.SEQUENCES)


@dataclass(frozen=True)
class LegacyGrant:
    """A GRANT of the schema project's scripts, with the objects it reached that still exist at V20."""

    source: str  # script:line in AP_IMRT_Schema
    role: str
    privileges: str
    object_kind: str  # TABLE or SEQUENCE
    objects: tuple[str, ...]

    def describe(self, objects: list[str]) -> str:
        return f"GRANT {self.privileges} ON {self.object_kind} {', '.join(objects)} TO {self.role}"


_INGEST_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, REFERENCES"

LEGACY_GRANTS = (
    LegacyGrant("V1__imrt_ddl.sql:82", "imrt_ingest", _INGEST_TABLE_PRIVILEGES, "TABLE", _V1_TABLES),
    LegacyGrant("V1__imrt_ddl.sql:83", "imrt_ingest", "SELECT, UPDATE", "SEQUENCE", _V1_SEQUENCES),
    LegacyGrant("V1__imrt_ddl.sql:84", "imrt_search", "SELECT", "TABLE", _V1_TABLES),
    LegacyGrant("V1__imrt_ddl.sql:85", "imrt_search", "SELECT", "SEQUENCE", _V1_SEQUENCES),
    LegacyGrant("V4__imrt_ddl.sql:89", "imrt_ingest", _INGEST_TABLE_PRIVILEGES, "TABLE", _V4_TABLES),
    LegacyGrant("V4__imrt_ddl.sql:90", "imrt_ingest", "SELECT, UPDATE", "SEQUENCE", _V4_SEQUENCES),
)


def _existing_roles(conn: sa.Connection) -> set[str]:
    return set(
        conn.scalars(sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"), {"names": list(LEGACY_ROLES)})
    )


def _grant_legacy_privileges(conn: sa.Connection, created: set[str]) -> None:
    """The scripts' GRANTs, on the objects this bootstrap created, to the roles that exist."""
    roles = _existing_roles(conn)
    quote = conn.dialect.identifier_preparer.quote
    skipped: dict[str, list[str]] = {}
    for grant in LEGACY_GRANTS:
        objects = [name for name in grant.objects if name in created]
        if not objects:
            continue
        if grant.role not in roles:
            skipped.setdefault(grant.role, []).append(grant.describe(objects))
            continue
        names = ", ".join(quote(name) for name in objects)
        conn.execute(sa.text(f"GRANT {grant.privileges} ON {grant.object_kind} {names} TO {quote(grant.role)}"))
        log.info("%s (%s)", grant.describe(objects), grant.source)
    for role, statements in skipped.items():
        log.warning(
            "role %s does not exist: the legacy schema's grants to it were skipped; once it exists, run as the"
            " tables' owner: %s",
            role,
            "; ".join(statements),
        )


# ------------------------------------------------------------------------------------------------ bootstrap


def _legacy_names() -> list[str]:
    """Sequences first, then tables in dependency order: the order they are created in."""
    return [sequence.name for sequence in schema.SEQUENCES] + [
        table.name for table in schema.metadata.sorted_tables if table in schema.LEGACY_TABLES
    ]


def _relations(conn: sa.Connection) -> set[str]:
    """Tables and sequences of the current schema, those created by SERIAL columns included."""
    return set(
        conn.scalars(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S')"
            )
        )
    )


def _create_legacy_objects(conn: sa.Connection) -> None:
    for sequence in schema.SEQUENCES:
        sequence.create(conn, checkfirst=True)
    schema.metadata.create_all(conn, tables=schema.LEGACY_TABLES, checkfirst=True)


def bootstrap_legacy(engine: sa.Engine) -> list[str]:
    """Create the legacy sequences and tables that are missing, as Flyway's V1..V20 left them; never drop or alter an
    existing one, and change nothing in a database that has Flyway's history table (Flyway manages it).

    When it creates the whole legacy schema (none of its tables or sequences existed), it also writes Flyway's history
    V1..V20 (:data:`FLYWAY_HISTORY`). It runs the V1/V4 GRANTs (:data:`LEGACY_GRANTS`) on what it created.

    Returns the names created (sequences first, then tables in dependency order, then ``flyway_schema_history``);
    ``[]`` when nothing was. Safe to call from several processes at once: everything runs in one transaction under a
    transaction-level advisory lock, so a second caller waits and then finds everything.
    """
    with engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(schema.SCHEMA_LOCK_KEY)))
        existing = _relations(conn)
        missing = [name for name in _legacy_names() if name not in existing]
        if FLYWAY_TABLE in existing:
            _leave_to_flyway(missing)
            return []
        if not missing:
            log.info("every legacy table and sequence exists (without a Flyway history): nothing to create")
            return []
        _create_legacy_objects(conn)
        created = list(missing)
        if len(missing) == len(_legacy_names()):
            _write_flyway_history(conn)
            created.append(FLYWAY_TABLE)
            log.info(
                "wrote Flyway's history V1..V20 of the legacy schema (%s): its next migration is V21", FLYWAY_TABLE
            )
        else:
            log.warning(
                "legacy tables or sequences existed, so no Flyway history was written: before the schema project's"
                " Flyway migrates this database, baseline it at the version those tables are at"
            )
        _grant_legacy_privileges(conn, _relations(conn) - existing)
    return created


def _leave_to_flyway(missing: list[str]) -> None:
    if missing:
        log.warning(
            "%s exists, so the schema project's Flyway manages this database: the missing legacy tables or sequences"
            " %s were not created; migrate it with that Flyway",
            FLYWAY_TABLE,
            ", ".join(missing),
        )
    else:
        log.info("%s exists (Flyway manages this database) and every legacy table and sequence exists", FLYWAY_TABLE)
