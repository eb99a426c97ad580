"""The legacy ``imrt`` database tables, as SQLAlchemy Core tables, as the schema project's Flyway migrations left
them (SmarterApp/AP_IMRT_Schema at tag 0.1.5: ``src/main/resources/db/migration/V1__imrt_ddl.sql`` ..
``V20__imrt_ddl.sql``).

* The Spring Batch metadata of migration ``V4__imrt_ddl.sql`` (the unquoted upper-case names of the DDL fold to
  lower case in PostgreSQL) and its three sequences.
* The IMRT tables touched by the item sync at schema V20 (IMRT release 0.1.2 / IIS tag 0.1.46): ``item``,
  ``item_git``, ``item_log``, ``stim_link`` (still with its audit columns, dropped only in V28), ``project_lock``,
  ``item_attachment`` and ``item_form``.

Plus tables of this service's own: ``imrt_webhook_event`` (the GitLab hook events the real-time path received),
``imrt_webhook_ignored_count`` (how many events were ignored, per day and reason), ``imrt_project_hook`` (the
project hooks IMRT created or fixed, with a fingerprint of the secret each carries), ``imrt_project_head`` (the
branch head each project was synced at: ``item_git`` records the last commit that changed ``item.json``, as the
legacy service did, so runs stay incremental by head through this table), and ``imrt_project_hook_check`` (when each
project's hooks were last checked).

Unnamed legacy constraints are left unnamed here too, so PostgreSQL gives them the same default names
(``item_pkey``, ``item_git_item_key_fkey``, ...). Database defaults are ``server_default``.

Two owners, two ways in (docs/deployment.md, "Database migrations"):

* this service's own tables are created and changed only by the Alembic migrations of :mod:`imrt_sync.migrations`
  (``python -m imrt_compat.migrate upgrade``; their version is in ``imrt_alembic_version``); the tables here are the
  model those migrations must produce (``tests/integration/test_migrations.py`` compares them);
* the legacy tables belong to the legacy Flyway migrations: :func:`imrt_sync.legacy_bootstrap.bootstrap_legacy`
  creates those that are missing, for a new environment only (``python -m imrt_compat.migrate bootstrap-legacy``),
  with the Flyway scripts' grants and history, and never drops or alters an existing one.

Every column is as the Flyway scripts ``V1__imrt_ddl.sql`` .. ``V20__imrt_ddl.sql`` of the schema project
(SmarterApp/AP_IMRT_Schema, tag 0.1.5) leave it: type, ``NOT NULL``, default, constraints and their names.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "metadata",
    "LEGACY_TABLES",
    "OWN_TABLES",
    "SEQUENCES",
    "batch_job_instance",
    "batch_job_execution",
    "batch_job_execution_params",
    "batch_step_execution",
    "batch_step_execution_context",
    "batch_job_execution_context",
    "batch_step_execution_seq",
    "batch_job_execution_seq",
    "batch_job_seq",
    "item",
    "item_git",
    "item_log",
    "stim_link",
    "project_lock",
    "item_attachment",
    "item_form",
    "imrt_webhook_event",
    "imrt_project_head",
    "imrt_webhook_ignored_count",
    "imrt_project_hook",
    "imrt_project_hook_check",
]

metadata = sa.MetaData()

_BIGINT_MAX = 9223372036854775807
EXIT_MESSAGE_LIMIT = 2500  # Spring Batch's exit_message columns (and the exit message this service writes)
_NULL = sa.text("NULL")
_NOW = sa.text("current_timestamp")

# Key of the PostgreSQL advisory lock that serialises schema changes (bootstrap, migrations) across processes
# ("IMRTSCHM").
SCHEMA_LOCK_KEY = 0x494D5254_5343484D


# ------------------------------------------------------------------------------ Spring Batch (V4__imrt_ddl.sql)

batch_job_seq = sa.Sequence("batch_job_seq", maxvalue=_BIGINT_MAX, cycle=False, metadata=metadata)
batch_job_execution_seq = sa.Sequence("batch_job_execution_seq", maxvalue=_BIGINT_MAX, cycle=False, metadata=metadata)
batch_step_execution_seq = sa.Sequence("batch_step_execution_seq", maxvalue=_BIGINT_MAX, cycle=False, metadata=metadata)
SEQUENCES = (batch_step_execution_seq, batch_job_execution_seq, batch_job_seq)

batch_job_instance = sa.Table(
    "batch_job_instance",
    metadata,
    sa.Column("job_instance_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger),
    sa.Column("job_name", sa.String(100), nullable=False),
    sa.Column("job_key", sa.String(32), nullable=False),
    sa.UniqueConstraint("job_name", "job_key", name="job_inst_un"),
)

batch_job_execution = sa.Table(
    "batch_job_execution",
    metadata,
    sa.Column("job_execution_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger),
    sa.Column("job_instance_id", sa.BigInteger, nullable=False),
    sa.Column("create_time", sa.DateTime(timezone=False), nullable=False),
    sa.Column("start_time", sa.DateTime(timezone=False), server_default=_NULL),
    sa.Column("end_time", sa.DateTime(timezone=False), server_default=_NULL),
    sa.Column("status", sa.String(10)),
    sa.Column("exit_code", sa.String(2500)),
    sa.Column("exit_message", sa.String(EXIT_MESSAGE_LIMIT)),
    sa.Column("last_updated", sa.DateTime(timezone=False)),
    sa.Column("job_configuration_location", sa.String(2500), nullable=True),
    sa.ForeignKeyConstraint(["job_instance_id"], ["batch_job_instance.job_instance_id"], name="job_inst_exec_fk"),
)

batch_job_execution_params = sa.Table(  # no primary key, as in Spring Batch 3
    "batch_job_execution_params",
    metadata,
    sa.Column("job_execution_id", sa.BigInteger, nullable=False),
    sa.Column("type_cd", sa.String(6), nullable=False),
    sa.Column("key_name", sa.String(100), nullable=False),
    sa.Column("string_val", sa.String(250)),
    sa.Column("date_val", sa.DateTime(timezone=False), server_default=_NULL),
    sa.Column("long_val", sa.BigInteger),
    sa.Column("double_val", sa.Double),
    sa.Column("identifying", sa.CHAR(1), nullable=False),
    sa.ForeignKeyConstraint(["job_execution_id"], ["batch_job_execution.job_execution_id"], name="job_exec_params_fk"),
)

batch_step_execution = sa.Table(
    "batch_step_execution",
    metadata,
    sa.Column("step_execution_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("step_name", sa.String(100), nullable=False),
    sa.Column("job_execution_id", sa.BigInteger, nullable=False),
    sa.Column("start_time", sa.DateTime(timezone=False), nullable=False),
    sa.Column("end_time", sa.DateTime(timezone=False), server_default=_NULL),
    sa.Column("status", sa.String(10)),
    sa.Column("commit_count", sa.BigInteger),
    sa.Column("read_count", sa.BigInteger),
    sa.Column("filter_count", sa.BigInteger),
    sa.Column("write_count", sa.BigInteger),
    sa.Column("read_skip_count", sa.BigInteger),
    sa.Column("write_skip_count", sa.BigInteger),
    sa.Column("process_skip_count", sa.BigInteger),
    sa.Column("rollback_count", sa.BigInteger),
    sa.Column("exit_code", sa.String(2500)),
    sa.Column("exit_message", sa.String(EXIT_MESSAGE_LIMIT)),
    sa.Column("last_updated", sa.DateTime(timezone=False)),
    sa.ForeignKeyConstraint(["job_execution_id"], ["batch_job_execution.job_execution_id"], name="job_exec_step_fk"),
)

batch_step_execution_context = sa.Table(
    "batch_step_execution_context",
    metadata,
    sa.Column("step_execution_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("short_context", sa.String(2500), nullable=False),
    sa.Column("serialized_context", sa.Text),
    sa.ForeignKeyConstraint(["step_execution_id"], ["batch_step_execution.step_execution_id"], name="step_exec_ctx_fk"),
)

batch_job_execution_context = sa.Table(
    "batch_job_execution_context",
    metadata,
    sa.Column("job_execution_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("short_context", sa.String(2500), nullable=False),
    sa.Column("serialized_context", sa.Text),
    sa.ForeignKeyConstraint(["job_execution_id"], ["batch_job_execution.job_execution_id"], name="job_exec_ctx_fk"),
)


# ------------------------------------------------------------------------------- IMRT tables (V1 .. V20)


def _audit_columns() -> list[sa.Column]:
    """``created_at``/``updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp``, ``updated_by VARCHAR NOT NULL``."""
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_by", sa.String, nullable=False),
    ]


def _text_column(name: str) -> sa.Column:
    """``VARCHAR NOT NULL`` (no default)."""
    return sa.Column(name, sa.String, nullable=False)


def _text_column_default_empty(name: str) -> sa.Column:
    """``VARCHAR NOT NULL DEFAULT ''``."""
    return sa.Column(name, sa.String, nullable=False, server_default="")


_STANDARD_COLUMNS = [
    f"{ordinal}_{field}"
    for ordinal in ("primary", "secondary", "tertiary", "quaternary")
    for field in ("claim", "content_domain", "common_core_standard", "target")
]

item = sa.Table(
    "item",
    metadata,
    # V1 (id: VARCHAR in V1, INTEGER from V13, unique from V8)
    sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),  # SERIAL
    sa.Column("id", sa.Integer, nullable=False),
    *(_text_column(name) for name in ("subject", "grade", "workflow_status", "item_type", "dok", "item_created_by")),
    sa.Column("item_created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("item_json", sa.JSON, nullable=False),
    *_audit_columns(),
    # V3
    _text_column("classification"),
    # V5/V13
    sa.Column("associated_stimulus_id", sa.Integer),
    # V6
    sa.Column("workflow_status_set_at", sa.DateTime(timezone=True), nullable=False),
    # V7
    _text_column("organization_type_id"),
    _text_column("organization_name"),
    # V9
    sa.Column("is_being_created", sa.Boolean, nullable=False, server_default=sa.false()),
    # V10
    *(_text_column_default_empty(name) for name in _STANDARD_COLUMNS),
    # V11, V12
    _text_column_default_empty("content_task_model"),
    _text_column_default_empty("item_author"),
    # V14
    sa.Column("item_difficulty_quintile", sa.Integer),
    sa.Column("form_count", sa.Integer),
    sa.Column("exposures_count", sa.Integer),
    # V15
    *(
        _text_column_default_empty(f"{kind}_{flag}")
        for kind in ("asl", "braille", "cc", "translation")
        for flag in ("required", "provided")
    ),
    # V16
    _text_column_default_empty("writing_purpose"),
    _text_column_default_empty("performance_task"),
    # V17
    sa.Column("sight_tts_provided", sa.Boolean),
    sa.Column("visual_tts_provided", sa.Boolean),
    _text_column_default_empty("visual_tts_required"),
    # V8
    sa.UniqueConstraint("id", name="unique_id_constraint"),
)

item_git = sa.Table(  # V1, V2, V9: one row per GitLab project
    "item_git",
    metadata,
    sa.Column("item_key", sa.Integer, sa.ForeignKey("item.key"), nullable=False),
    sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("project_path", sa.String, nullable=False),
    sa.Column("current_commit_hash", sa.String, nullable=False),
    *_audit_columns(),
    sa.Column("current_commit_date", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ingest_source", sa.String, nullable=False, server_default="master"),
    sa.UniqueConstraint("item_key", "project_id"),
)

item_log = sa.Table(  # V1, V9: one row per ingested commit
    "item_log",
    metadata,
    sa.Column("item_key", sa.Integer, sa.ForeignKey("item.key"), primary_key=True, autoincrement=False),
    sa.Column("commit_hash", sa.String, primary_key=True),
    sa.Column("commit_date", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    *_audit_columns(),
    sa.Column("ingest_source", sa.String, nullable=False, server_default="master"),
)

stim_link = sa.Table(  # V1, V3 (primary key item_key); audit columns until V28
    "stim_link",
    metadata,
    sa.Column("item_key", sa.Integer, sa.ForeignKey("item.key"), primary_key=True, autoincrement=False),
    sa.Column("item_key_stim", sa.Integer, sa.ForeignKey("item.key"), nullable=False),
    *_audit_columns(),
)

project_lock = sa.Table(  # V1
    "project_lock",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
    *_audit_columns(),
)

item_attachment = sa.Table(  # V15, V18, V20
    "item_attachment",
    metadata,
    sa.Column("item_key", sa.Integer, sa.ForeignKey("item.key"), primary_key=True, autoincrement=False),
    sa.Column("file_name", sa.String, primary_key=True),
    sa.Column("file_type", sa.String, primary_key=True),  # 'asl' | 'braille' | 'cc'
    sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    *_audit_columns(),
)

item_form = sa.Table(  # V19
    "item_form",
    metadata,
    sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),  # SERIAL
    sa.Column("item_key", sa.Integer, sa.ForeignKey("item.key"), nullable=False),
    sa.Column("assessment_type", sa.String),
    sa.Column("form_id", sa.String),
    sa.Column("form_type", sa.String),
    sa.Column("exposures", sa.Integer),
    *_audit_columns(),
)


# ------------------------------------------------------------------------- this service's own (not legacy)

imrt_webhook_event = sa.Table(  # every GitLab hook event received, and what became of it (imrt_sync.webhook_events)
    "imrt_webhook_event",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("event_type", sa.String(40), nullable=False),  # push | project_create | project_destroy | ...
    sa.Column("project_id", sa.BigInteger),
    sa.Column("project_path", sa.String),  # path with namespace, as GitLab sent it
    sa.Column("ref", sa.String),
    sa.Column("commit_sha", sa.String(64)),  # a push's checkout_sha (or after)
    sa.Column("gitlab_event_uuid", sa.String(64)),  # X-Gitlab-Event-UUID
    sa.Column("status", sa.String(16), nullable=False),  # ignored | pending | claimed | synced | failed
    sa.Column("detail", sa.String),  # why ignored, or why the item failed
    sa.Column("run_id", sa.String(250)),  # the Airflow run that took the event
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),  # runs that took the event
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),  # a pending event is due from then (NULL: now)
    sa.Index("imrt_webhook_event_open", "status", postgresql_where=sa.text("status IN ('pending', 'claimed')")),
    sa.Index("imrt_webhook_event_project", "project_id", "received_at"),
    sa.Index("imrt_webhook_event_commit", "commit_sha"),
    sa.Index("imrt_webhook_event_received", "received_at"),
)

imrt_webhook_ignored_count = sa.Table(  # ignored events outlive their pruned rows as counts
    "imrt_webhook_ignored_count",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),  # UTC day the events were received
    sa.Column("reason", sa.String(40), primary_key=True),  # event_type | outside_group | ignored_project | other_branch
    sa.Column("events", sa.BigInteger, nullable=False),
)

imrt_project_hook = sa.Table(  # project hooks IMRT created or fixed; GitLab never returns a hook's token
    "imrt_project_hook",
    metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hook_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("secret_fingerprint", sa.String(64), nullable=False),  # HMAC-SHA256 of the secret, never the secret
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
)

imrt_project_head = sa.Table(  # the default-branch head each project had when it was last synced
    "imrt_project_head",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("head_sha", sa.String(64), nullable=False),
    # The head of the create_<user> branch an item still being created was read from (NULL for the others).
    sa.Column("source_head_sha", sa.String(64), nullable=True),
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    # The blob id of item.json at that head (NULL without one): the sweep's change token where GitLab's GraphQL
    # Repository has no commit field.
    sa.Column("item_blob_oid", sa.String(64), nullable=True),
)

imrt_project_hook_check = sa.Table(  # when dispatch_webhooks last checked each project's hooks
    "imrt_project_hook_check",
    metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
)


LEGACY_TABLES = (
    batch_job_instance,
    batch_job_execution,
    batch_job_execution_params,
    batch_step_execution,
    batch_step_execution_context,
    batch_job_execution_context,
    item,
    item_git,
    item_log,
    stim_link,
    project_lock,
    item_attachment,
    item_form,
)
OWN_TABLES = (
    imrt_webhook_event,
    imrt_webhook_ignored_count,
    imrt_project_hook,
    imrt_project_head,
    imrt_project_hook_check,
)
