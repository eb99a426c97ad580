"""This service's own tables as they were when migrations began (``ensure_schema`` had created them until then).

Adopts a database where ``ensure_schema`` already ran: a table that exists is kept with its rows and gets, with
``IF NOT EXISTS``, the columns and indexes added to it after its first release; a missing table is created. Either
way the tables end in the same shape, and the revision is recorded in ``imrt_alembic_version``.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_NOW = sa.text("current_timestamp")

# Added to tables created by an earlier ensure_schema (idempotent on a table created just above).
_ADDITIVE = (
    "ALTER TABLE imrt_webhook_event ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE imrt_webhook_event ADD COLUMN IF NOT EXISTS next_attempt_at TIMESTAMP WITH TIME ZONE",
    "CREATE INDEX IF NOT EXISTS imrt_webhook_event_open ON imrt_webhook_event (status)"
    " WHERE status IN ('pending', 'claimed')",
    "CREATE INDEX IF NOT EXISTS imrt_webhook_event_project ON imrt_webhook_event (project_id, received_at)",
    "CREATE INDEX IF NOT EXISTS imrt_webhook_event_commit ON imrt_webhook_event (commit_sha)",
    "CREATE INDEX IF NOT EXISTS imrt_webhook_event_received ON imrt_webhook_event (received_at)",
    "ALTER TABLE imrt_project_head ADD COLUMN IF NOT EXISTS source_head_sha VARCHAR(64)",
)


def _create_webhook_event() -> None:
    op.create_table(
        "imrt_webhook_event",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("project_id", sa.BigInteger),
        sa.Column("project_path", sa.String),
        sa.Column("ref", sa.String),
        sa.Column("commit_sha", sa.String(64)),
        sa.Column("gitlab_event_uuid", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String),
        sa.Column("run_id", sa.String(250)),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    )


def _create_webhook_ignored_count() -> None:
    op.create_table(
        "imrt_webhook_ignored_count",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("reason", sa.String(40), primary_key=True),
        sa.Column("events", sa.BigInteger, nullable=False),
    )


def _create_project_webhook() -> None:
    op.create_table(
        "imrt_project_hook",
        sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hook_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("secret_fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )


def _create_project_head() -> None:
    op.create_table(
        "imrt_project_head",
        sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("source_head_sha", sa.String(64), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )


_CREATE = {
    "imrt_webhook_event": _create_webhook_event,
    "imrt_webhook_ignored_count": _create_webhook_ignored_count,
    "imrt_project_hook": _create_project_webhook,
    "imrt_project_head": _create_project_head,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in _CREATE.items():
        if name not in existing:
            create()
    for statement in _ADDITIVE:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("migrations of the imrt database go forward only")
