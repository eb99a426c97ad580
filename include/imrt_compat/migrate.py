"""The schema command, run by the ``imrt-migrate`` init container in Helm and the ``imrt-migrate`` service in Compose::

    python -m imrt_compat.migrate upgrade            # this service's own tables to the newest revision
    python -m imrt_compat.migrate bootstrap-legacy   # a new environment only: the legacy tables that are missing,
                                                     # with the legacy grants and Flyway history
    python -m imrt_compat.migrate current            # the revision the database is at, and the newest one

The database is the Airflow connection the DAG uses (``imrt_default``; ``--conn-id`` names another), read the
way Airflow reads it (``AIRFLOW_CONN_IMRT_DEFAULT``, a secrets backend), so no password is put on a command line.
The migrations themselves are :mod:`imrt_sync.schema_migrations`'s.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import sqlalchemy as sa

from imrt_sync.legacy_bootstrap import bootstrap_legacy
from imrt_sync.schema_migrations import (
    VERSION_TABLE,
    SchemaNotReady,
    current_revision,
    head_revision,
    require_current_schema,
    upgrade,
)

from .engine import connection_engine
from .settings import DEFAULTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imrt_compat.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--conn-id", default=DEFAULTS["imrt_db_conn_id"], help="Airflow connection of the imrt database"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade", help="migrate this service's own tables to the newest revision")
    commands.add_parser(
        "bootstrap-legacy",
        help="create the missing legacy tables, with the legacy grants and Flyway history (a new environment only)",
    )
    commands.add_parser("current", help="print the current and the newest revision; exit 1 unless ready to run")
    return parser


def run_command(name: str, engine: sa.Engine) -> int:
    if name == "upgrade":
        print(f"imrt database at revision {upgrade(engine)} ({VERSION_TABLE})")
    elif name == "bootstrap-legacy":
        created = bootstrap_legacy(engine)
        print(f"created: {', '.join(created)}" if created else "nothing created (the log above says why)")
    else:
        print(f"current: {current_revision(engine) or 'none'}  head: {head_revision()}")
        try:
            require_current_schema(engine)
        except SchemaNotReady as exc:
            print(exc)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    engine = connection_engine(args.conn_id)
    # After Airflow's import, which configures logging its own way: Alembic's "Running upgrade" lines must show.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        return run_command(args.command, engine)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
