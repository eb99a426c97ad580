"""What the sweep compares and when each project's hook was last checked.

``imrt_project_head.item_blob_oid``: the blob id of ``item.json`` at the default branch's head of the last sync, the
change token of a sweep on a GitLab whose GraphQL ``Repository`` has no ``commit`` field (NULL until the project's
next sync: the sweep then reads it on its own). ``imrt_project_hook_check``: when ``dispatch_webhooks`` last
checked each project's hooks, so a sweep run checks the longest unchecked first.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF NOT EXISTS: a database made from the model (``schema.metadata.create_all``, as ensure_schema did) has both.
    op.execute("ALTER TABLE imrt_project_head ADD COLUMN IF NOT EXISTS item_blob_oid VARCHAR(64)")
    op.execute(
        "CREATE TABLE IF NOT EXISTS imrt_project_hook_check ("
        " project_id BIGINT NOT NULL PRIMARY KEY,"
        " checked_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )


def downgrade() -> None:
    raise NotImplementedError("migrations of the imrt database go forward only")
