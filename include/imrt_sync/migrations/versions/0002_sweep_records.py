"""What the sweep compares and when each project's hook was last checked.

``imrt_project_head.item_blob_oid``: the blob id of ``item.json`` at the default branch's head of the last sync, the
change token of a sweep on a GitLab whose GraphQL ``Repository`` has no ``commit`` field (NULL until the project's
next sync: the sweep then reads it on its own). ``imrt_project_hook_check``: when ``dispatch_webhooks`` last
checked each project's hooks, so a sweep run checks the longest unchecked first.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("imrt_project_head", sa.Column("item_blob_oid", sa.String(64), nullable=True))
    op.create_table(
        "imrt_project_hook_check",
        sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("current_timestamp")),
    )


def downgrade() -> None:
    raise NotImplementedError("migrations of the imrt database go forward only")
