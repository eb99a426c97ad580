"""``bootstrap_legacy`` leaves a new database as the schema project's Flyway V1..V20 would: NOT NULL columns, the
V1/V4 grants, Flyway's history; and it never alters a database Flyway manages (docs/deployment.md, "Database
migrations")."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from imrt_sync import schema
from imrt_sync.legacy_bootstrap import FLYWAY_TABLE, LEGACY_ROLES, bootstrap_legacy, flyway_checksum

LOGGER = "imrt_sync.legacy_bootstrap"

# The nullable columns of the legacy tables once V1..V20 ran (every other column is NOT NULL).
NULLABLE_COLUMNS = {
    ("batch_job_instance", "version"),
    *(
        ("batch_job_execution", name)
        for name in (
            "version",
            "start_time",
            "end_time",
            "status",
            "exit_code",
            "exit_message",
            "last_updated",
            "job_configuration_location",
        )
    ),
    *(("batch_job_execution_params", name) for name in ("string_val", "date_val", "long_val", "double_val")),
    *(
        ("batch_step_execution", name)
        for name in (
            "end_time",
            "status",
            "commit_count",
            "read_count",
            "filter_count",
            "write_count",
            "read_skip_count",
            "write_skip_count",
            "process_skip_count",
            "rollback_count",
            "exit_code",
            "exit_message",
            "last_updated",
        )
    ),
    ("batch_step_execution_context", "serialized_context"),
    ("batch_job_execution_context", "serialized_context"),
    *(
        ("item", name)
        for name in (
            "associated_stimulus_id",
            "item_difficulty_quintile",
            "form_count",
            "exposures_count",
            "sight_tts_provided",
            "visual_tts_provided",
        )
    ),
    *(("item_form", name) for name in ("assessment_type", "form_id", "form_type", "exposures")),
}

# flyway_schema_history as Flyway 5.0.7 wrote it after running the schema project's V1..V20 (tag 0.1.5).
FLYWAY_CHECKSUMS = [
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
]

# Two of the scripts, quoted exactly (V2 ends without a line break, V8 with one).
V2_SCRIPT = (
    "/* Add current commit date column to item_git table. Use default on existing rows */\n"
    "ALTER TABLE item_git ADD COLUMN current_commit_date TIMESTAMPTZ NOT NULL DEFAULT timestamp with time zone"
    " '1970-01-01';\n"
    "/* No new rows without a value */\n"
    "ALTER TABLE item_git ALTER COLUMN current_commit_date DROP DEFAULT;"
)
V8_SCRIPT = (
    "/******************************************************************************\n"
    "* Add unique index on id in the item table\n"
    "*\n"
    "******************************************************************************/\n"
    "\n"
    "ALTER TABLE item ADD CONSTRAINT unique_id_constraint UNIQUE (id);\n"
)

# The V1/V4 grants (V1__imrt_ddl.sql:82-85, V4__imrt_ddl.sql:89-90) on the objects that exist at V20.
V1_TABLES = {"item", "item_git", "item_log", "stim_link", "project_lock", FLYWAY_TABLE}
BATCH_TABLES = {table.name for table in schema.LEGACY_TABLES if table.name.startswith("batch_")}
INGEST_TABLE_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "REFERENCES"}
EXPECTED_TABLE_GRANTS = {
    *(("imrt_ingest", table, privilege) for table in V1_TABLES | BATCH_TABLES for privilege in INGEST_TABLE_PRIVILEGES),
    *(("imrt_search", table, "SELECT") for table in V1_TABLES),
}
EXPECTED_SEQUENCE_GRANTS = {
    *(
        ("imrt_ingest", sequence, privilege)
        for sequence in ("item_key_seq", "batch_step_execution_seq", "batch_job_execution_seq", "batch_job_seq")
        for privilege in ("SELECT", "UPDATE")
    ),
    ("imrt_search", "item_key_seq", "SELECT"),
}


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def make_roles(imrt_engine):
    """``make_roles(*names)`` creates those of the legacy roles that do not exist (roles belong to the whole server);
    the test's end drops them with their privileges in the test's database."""
    created: list[str] = []

    def make(*names: str) -> None:
        with imrt_engine.begin() as conn:
            for name in names:
                if not conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}):
                    conn.execute(sa.text(f'CREATE ROLE "{name}"'))
                    created.append(name)

    yield make
    with imrt_engine.begin() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
            conn.execute(sa.text(f'DROP ROLE "{name}"'))


@pytest.fixture
def no_legacy_roles(imrt_engine):
    with imrt_engine.connect() as conn:
        existing = conn.scalars(
            sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:n)"), {"n": list(LEGACY_ROLES)}
        ).all()
    if existing:
        pytest.skip(f"the test server has the roles {existing}, which this test needs absent")


def table_grants(engine: sa.Engine) -> set[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants"
                " WHERE table_schema = 'public' AND grantee = ANY(:roles)"
            ),
            {"roles": list(LEGACY_ROLES)},
        )
        return {tuple(row) for row in rows}


def sequence_grants(engine: sa.Engine) -> set[tuple[str, str, str]]:
    """Sequence privileges are not in information_schema: read the ACLs."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT acl.grantee::regrole::text, c.relname, acl.privilege_type"
                " FROM pg_class c, aclexplode(c.relacl) acl"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S'"
                " AND acl.grantee::regrole::text = ANY(:roles)"
            ),
            {"roles": list(LEGACY_ROLES)},
        )
        return {tuple(row) for row in rows}


def history(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT installed_rank, version, description, type, script, checksum, installed_by, installed_on,"
                    " execution_time, success FROM flyway_schema_history ORDER BY installed_rank"
                )
            )
        ]


def snapshot(engine: sa.Engine) -> list[tuple]:
    """Every relation, column (type, NOT NULL, default), constraint, index and ACL of the public schema."""
    with engine.connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT c.relname, c.relkind, c.relacl::text, a.attname, format_type(a.atttypid, a.atttypmod),"
                " a.attnotnull, pg_get_expr(d.adbin, d.adrelid)"
                " FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                " LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"
                " WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1, 4"
            )
        ).all()
        constraints = conn.execute(
            sa.text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
            )
        ).all()
        indexes = conn.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
        ).all()
    return [tuple(row) for row in (*columns, *constraints, *indexes)]


def emulate_flyway_v21(engine: sa.Engine) -> None:
    """What the schema project's Flyway does next: V21__imrt_ddl.sql and its history row."""
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE item ADD COLUMN test_category VARCHAR NOT NULL DEFAULT ''"))
        conn.execute(
            sa.text(
                "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum,"
                " installed_by, execution_time, success)"
                " VALUES (21, '21', 'imrt ddl', 'SQL', 'V21__imrt_ddl.sql', -169004832, 'imrt_admin', 3, true)"
            )
        )


# ------------------------------------------------------------------------------------------------ columns


def test_every_column_is_not_null_as_the_flyway_scripts_leave_it(imrt_engine):
    bootstrap_legacy(imrt_engine)

    with imrt_engine.connect() as conn:
        nullable = conn.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND is_nullable = 'YES' AND table_name = ANY(:tables)"
            ),
            {"tables": [table.name for table in schema.LEGACY_TABLES]},
        ).all()
    assert {
        tuple(row) for row in nullable
    } == NULLABLE_COLUMNS  # stim_link.item_key_stim (V1), item_form.item_key (V19)


def test_a_stimulus_link_and_a_form_need_their_item_keys(imrt_engine):
    bootstrap_legacy(imrt_engine)

    with imrt_engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError, match='null value in column "item_key_stim"'):
            conn.execute(schema.stim_link.insert().values(item_key=1, item_key_stim=None, updated_by="jdoe"))
        conn.rollback()
        with pytest.raises(sa.exc.IntegrityError, match='null value in column "item_key" of relation "item_form"'):
            conn.execute(schema.item_form.insert().values(item_key=None, updated_by="jdoe"))


# ------------------------------------------------------------------------------------------ Flyway history


def test_flyway_history_table_has_flyways_layout(imrt_engine):
    bootstrap_legacy(imrt_engine)

    with imrt_engine.connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'flyway_schema_history'"
                " ORDER BY ordinal_position"
            )
        ).all()
        indexes = conn.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'flyway_schema_history' ORDER BY 1")
        ).all()
    assert [tuple(column) for column in columns] == [  # Flyway 5.0.7's postgresql/createMetaDataTable.sql
        ("installed_rank", "integer", None, "NO", None),
        ("version", "character varying", 50, "YES", None),
        ("description", "character varying", 200, "NO", None),
        ("type", "character varying", 20, "NO", None),
        ("script", "character varying", 1000, "NO", None),
        ("checksum", "integer", None, "YES", None),
        ("installed_by", "character varying", 100, "NO", None),
        ("installed_on", "timestamp without time zone", None, "NO", "now()"),
        ("execution_time", "integer", None, "NO", None),
        ("success", "boolean", None, "NO", None),
    ]
    assert [tuple(index) for index in indexes] == [
        (
            "flyway_schema_history_pk",
            "CREATE UNIQUE INDEX flyway_schema_history_pk ON public.flyway_schema_history USING btree (installed_rank)",
        ),
        (
            "flyway_schema_history_s_idx",
            "CREATE INDEX flyway_schema_history_s_idx ON public.flyway_schema_history USING btree (success)",
        ),
    ]


def test_flyway_history_has_the_rows_flyway_wrote_for_v1_to_v20(imrt_engine):
    created = bootstrap_legacy(imrt_engine)

    assert created[-1] == FLYWAY_TABLE
    with imrt_engine.connect() as conn:
        user = conn.scalar(sa.text("SELECT current_user"))
    rows = history(imrt_engine)
    assert [row[:7] + row[8:] for row in rows] == [
        (version, str(version), "imrt ddl", "SQL", f"V{version}__imrt_ddl.sql", checksum, user, 0, True)
        for version, checksum in enumerate(FLYWAY_CHECKSUMS, start=1)
    ]
    assert all(row[7] is not None for row in rows)  # installed_on


def test_flyway_checksum_is_flyways_crc32_of_the_lines():
    assert flyway_checksum(V2_SCRIPT) == FLYWAY_CHECKSUMS[1]
    assert flyway_checksum(V8_SCRIPT) == FLYWAY_CHECKSUMS[7]
    # Flyway reads lines: the line breaks and a byte order mark are not part of the checksum.
    assert flyway_checksum("\ufeff" + V8_SCRIPT.replace("\n", "\r\n")) == FLYWAY_CHECKSUMS[7]
    assert flyway_checksum(V8_SCRIPT.replace("UNIQUE", "unique")) != FLYWAY_CHECKSUMS[7]


def test_a_partly_existing_legacy_schema_gets_no_history(imrt_engine, caplog):
    with imrt_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE project_lock (project_id INT NOT NULL PRIMARY KEY)"))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        created = bootstrap_legacy(imrt_engine)

    assert "project_lock" not in created and "item" in created
    assert FLYWAY_TABLE not in sa.inspect(imrt_engine).get_table_names()
    assert "no Flyway history was written" in caplog.text


# ------------------------------------------------------------------------------------------------- grants


def test_the_v1_and_v4_grants_go_to_the_roles_that_exist(imrt_engine, make_roles):
    make_roles("imrt_ingest", "imrt_search")

    bootstrap_legacy(imrt_engine)

    assert table_grants(imrt_engine) == EXPECTED_TABLE_GRANTS
    assert sequence_grants(imrt_engine) == EXPECTED_SEQUENCE_GRANTS
    with imrt_engine.begin() as conn:  # a search service connecting as imrt_search can read the items
        conn.execute(sa.text("SET LOCAL ROLE imrt_search"))
        assert conn.scalar(sa.text("SELECT count(*) FROM item")) == 0


def test_a_missing_role_is_skipped_with_a_log_line_naming_its_grants(imrt_engine, make_roles, caplog):
    make_roles("imrt_ingest")
    with imrt_engine.connect() as conn:
        if conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = 'imrt_search'")):
            pytest.skip("the test server has the role imrt_search, which this test needs absent")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        created = bootstrap_legacy(imrt_engine)

    assert FLYWAY_TABLE in created  # the bootstrap itself goes on
    assert table_grants(imrt_engine) == {grant for grant in EXPECTED_TABLE_GRANTS if grant[0] == "imrt_ingest"}
    skipped = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [record.getMessage().split(":")[0] for record in skipped] == ["role imrt_search does not exist"]
    assert (
        "GRANT SELECT ON TABLE item, item_git, item_log, stim_link, project_lock, flyway_schema_history TO"
        " imrt_search; GRANT SELECT ON SEQUENCE item_key_seq TO imrt_search" in skipped[0].getMessage()
    )


def test_without_the_roles_both_are_skipped_with_a_log_line(imrt_engine, no_legacy_roles, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        created = bootstrap_legacy(imrt_engine)

    assert created[-1] == FLYWAY_TABLE
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert [message.split(":")[0] for message in messages] == [
        "role imrt_ingest does not exist",
        "role imrt_search does not exist",
    ]
    assert "GRANT SELECT, UPDATE ON SEQUENCE item_key_seq, batch_step_execution_seq" in messages[0]


def test_grants_reach_only_the_objects_the_bootstrap_created(imrt_engine, make_roles):
    with imrt_engine.begin() as conn:  # an item table the bootstrap must leave as it is, ACL included
        conn.execute(sa.text("CREATE TABLE item (key SERIAL PRIMARY KEY, id integer NOT NULL)"))
    make_roles("imrt_ingest", "imrt_search")

    bootstrap_legacy(imrt_engine)

    grants = table_grants(imrt_engine)
    assert ("imrt_ingest", "item_git", "SELECT") in grants
    assert {table for _, table, _ in grants} & {"item", FLYWAY_TABLE} == set()
    assert {sequence for _, sequence, _ in sequence_grants(imrt_engine)} == {
        "batch_step_execution_seq",
        "batch_job_execution_seq",
        "batch_job_seq",
    }


# ------------------------------------------------------------------------------- idempotence, Flyway's own


def test_a_second_bootstrap_writes_nothing_twice(imrt_engine, make_roles):
    make_roles("imrt_ingest", "imrt_search")
    bootstrap_legacy(imrt_engine)
    before, rows = snapshot(imrt_engine), history(imrt_engine)

    assert bootstrap_legacy(imrt_engine) == []

    assert snapshot(imrt_engine) == before
    assert history(imrt_engine) == rows
    assert len(rows) == 20


def test_a_database_flyway_manages_is_not_altered(imrt_engine, make_roles):
    bootstrap_legacy(imrt_engine)  # the schema as Flyway left it at V20, before the roles existed ...
    emulate_flyway_v21(imrt_engine)  # ... then migrated by Flyway to V21
    make_roles("imrt_ingest", "imrt_search")
    with imrt_engine.begin() as conn:  # and a DBA's own grant
        conn.execute(sa.text("GRANT SELECT ON item TO imrt_search"))
    before, rows = snapshot(imrt_engine), history(imrt_engine)

    assert bootstrap_legacy(imrt_engine) == []

    assert snapshot(imrt_engine) == before
    assert history(imrt_engine) == rows
    assert table_grants(imrt_engine) == {("imrt_search", "item", "SELECT")}  # no V1/V4 grant added


def test_a_table_missing_from_a_database_flyway_manages_is_left_to_flyway(imrt_engine, caplog):
    bootstrap_legacy(imrt_engine)
    with imrt_engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE item_form"))
    before = snapshot(imrt_engine)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert bootstrap_legacy(imrt_engine) == []

    assert snapshot(imrt_engine) == before
    assert "the missing legacy tables or sequences item_form were not created" in caplog.text
