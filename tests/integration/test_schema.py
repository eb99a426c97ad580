"""The legacy tables of the bootstrap, ``bootstrap_legacy()``, on a real PostgreSQL database (the schema project's
V1..V20: see ``imrt_sync.schema``);
its grants and Flyway history are test_legacy_bootstrap's, this service's own tables the migrations' (test_migrations).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from imrt_sync import schema
from imrt_sync.legacy_bootstrap import FLYWAY_TABLE, bootstrap_legacy
from imrt_sync.mapping import map_item

SEQUENCES = ["batch_step_execution_seq", "batch_job_execution_seq", "batch_job_seq"]
TABLES = [
    "batch_job_instance",
    "batch_job_execution",
    "batch_job_execution_params",
    "batch_step_execution",
    "batch_step_execution_context",
    "batch_job_execution_context",
    "item",
    "item_git",
    "item_log",
    "stim_link",
    "project_lock",
    "item_attachment",
    "item_form",
]

ITEM = {
    "id": "205030",
    "type": "mc",
    "core": {
        "stimulusId": "99",
        "metadata": {"subject": "Math", "grade": "5", "depthOfKnowledge": "2", "primaryClaim": "1"},
        "testAdministration": {
            "fieldTestAdministrationId": "1",
            "administrations": [
                {
                    "administrationId": "1",
                    "fieldTestData": {"itemDifficultyQuintile": "3"},
                    "forms": [{"assessmentType": "Summative", "exposures": "40", "formId": "f1", "formType": "OP"}],
                }
            ],
        },
    },
    "asl": {
        "attachments": [
            {"fileName": "a.mp4", "uploadedDate": "2018-05-25T20:57:45.000Z"},
            {"fileName": "a.mp4", "uploadedDate": "2018-05-26T20:57:45.000Z"},
        ],
        "isAslRequired": "yes",
        "isAslProvided": True,
    },
    "textToSpeech": {"isVisualTTSProvided": True},
    "workflow": {"workflowStatusCode": "Draft"},
}


def _columns(conn: sa.Connection, table: str) -> dict[str, dict]:
    rows = conn.execute(
        sa.text(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public' AND table_name = :t"
        ),
        {"t": table},
    ).mappings()
    return {row["column_name"]: dict(row) for row in rows}


def _constraints(conn: sa.Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        sa.text(
            "SELECT constraint_name, constraint_type FROM information_schema.table_constraints"
            " WHERE table_schema = 'public' AND table_name = :t AND constraint_type <> 'CHECK'"  # PG 18 lists NOT NULL
        ),
        {"t": table},
    )
    return dict(rows.all())


def test_bootstrap_creates_every_legacy_table_and_sequence_and_no_other(imrt_engine):
    created = bootstrap_legacy(imrt_engine)

    assert created[:3] == SEQUENCES
    assert sorted(created[3:-1]) == sorted(TABLES)
    assert created[-1] == FLYWAY_TABLE
    inspector = sa.inspect(imrt_engine)
    assert set(inspector.get_table_names()) == set(TABLES) | {FLYWAY_TABLE}
    assert set(SEQUENCES) <= set(inspector.get_sequence_names())


def test_spring_batch_tables_match_v4(imrt_engine):
    bootstrap_legacy(imrt_engine)
    with imrt_engine.connect() as conn:
        instance = _columns(conn, "batch_job_instance")
        assert instance["job_instance_id"]["data_type"] == "bigint"
        assert instance["job_instance_id"]["column_default"] is None  # ids come from batch_job_seq, not SERIAL
        assert (instance["job_key"]["data_type"], instance["job_key"]["character_maximum_length"]) == (
            "character varying",
            32,
        )
        assert instance["version"]["is_nullable"] == "YES"

        execution = _columns(conn, "batch_job_execution")
        assert execution["create_time"]["data_type"] == "timestamp without time zone"
        assert execution["create_time"]["is_nullable"] == "NO"
        assert execution["end_time"]["is_nullable"] == "YES"
        assert execution["status"]["character_maximum_length"] == 10
        assert execution["exit_message"]["character_maximum_length"] == 2500
        assert "job_configuration_location" in execution

        params = _columns(conn, "batch_job_execution_params")
        assert params["double_val"]["data_type"] == "double precision"
        assert (params["identifying"]["data_type"], params["identifying"]["character_maximum_length"]) == (
            "character",
            1,
        )
        assert _columns(conn, "batch_step_execution_context")["serialized_context"]["data_type"] == "text"

        assert _constraints(conn, "batch_job_instance") == {
            "batch_job_instance_pkey": "PRIMARY KEY",
            "job_inst_un": "UNIQUE",
        }
        assert _constraints(conn, "batch_job_execution")["job_inst_exec_fk"] == "FOREIGN KEY"
        assert _constraints(conn, "batch_job_execution_params") == {"job_exec_params_fk": "FOREIGN KEY"}
        assert _constraints(conn, "batch_step_execution")["job_exec_step_fk"] == "FOREIGN KEY"
        assert _constraints(conn, "batch_step_execution_context")["step_exec_ctx_fk"] == "FOREIGN KEY"
        assert _constraints(conn, "batch_job_execution_context")["job_exec_ctx_fk"] == "FOREIGN KEY"

        sequences = conn.execute(
            sa.text(
                "SELECT sequence_name, data_type, start_value, maximum_value, cycle_option"
                " FROM information_schema.sequences WHERE sequence_schema = 'public' AND sequence_name LIKE 'batch%'"
            )
        ).all()
        assert sorted(sequences) == sorted((name, "bigint", "1", "9223372036854775807", "NO") for name in SEQUENCES)
        assert conn.scalar(sa.text("SELECT nextval('batch_job_seq')")) == 1


def test_imrt_tables_match_v20(imrt_engine):
    bootstrap_legacy(imrt_engine)
    with imrt_engine.connect() as conn:
        item = _columns(conn, "item")
        assert item["key"]["data_type"] == "integer"
        assert item["key"]["column_default"] == "nextval('item_key_seq'::regclass)"  # SERIAL
        assert (item["id"]["data_type"], item["id"]["is_nullable"]) == ("integer", "NO")
        assert item["item_json"]["data_type"] == "json"
        assert (item["grade"]["data_type"], item["grade"]["is_nullable"], item["grade"]["column_default"]) == (
            "character varying",
            "NO",
            None,
        )
        for name in ("primary_claim", "quaternary_target", "content_task_model", "item_author", "asl_provided",
                     "translation_required", "writing_purpose", "performance_task", "visual_tts_required"):  # fmt: skip
            assert (item[name]["data_type"], item[name]["is_nullable"], item[name]["column_default"]) == (
                "character varying",
                "NO",
                "''::character varying",
            ), name
        for name in ("created_at", "updated_at"):
            assert (item[name]["data_type"], item[name]["is_nullable"], item[name]["column_default"]) == (
                "timestamp with time zone",
                "NO",
                "CURRENT_TIMESTAMP",
            )
        assert (item["updated_by"]["is_nullable"], item["updated_by"]["column_default"]) == ("NO", None)
        assert (item["is_being_created"]["data_type"], item["is_being_created"]["column_default"]) == (
            "boolean",
            "false",
        )
        assert item["sight_tts_provided"]["data_type"] == "boolean"
        assert item["sight_tts_provided"]["is_nullable"] == "YES"
        for name in ("associated_stimulus_id", "exposures_count", "form_count", "item_difficulty_quintile"):
            assert (item[name]["data_type"], item[name]["is_nullable"]) == ("integer", "YES"), name
        assert _constraints(conn, "item") == {"item_pkey": "PRIMARY KEY", "unique_id_constraint": "UNIQUE"}

        item_git = _columns(conn, "item_git")
        assert item_git["project_id"]["column_default"] is None  # GitLab's id, not SERIAL
        assert item_git["ingest_source"]["column_default"] == "'master'::character varying"
        assert item_git["current_commit_date"]["data_type"] == "timestamp with time zone"
        assert sorted(_constraints(conn, "item_git").values()) == ["FOREIGN KEY", "PRIMARY KEY", "UNIQUE"]

        assert sa.inspect(conn).get_pk_constraint("item_log")["constrained_columns"] == ["item_key", "commit_hash"]
        assert sa.inspect(conn).get_pk_constraint("stim_link")["constrained_columns"] == ["item_key"]
        assert {"created_at", "updated_at", "updated_by"} <= set(_columns(conn, "stim_link"))  # dropped only in V28
        assert sa.inspect(conn).get_pk_constraint("item_attachment")["constrained_columns"] == [
            "item_key",
            "file_name",
            "file_type",
        ]
        assert _columns(conn, "item_form")["key"]["column_default"] == "nextval('item_form_key_seq'::regclass)"
        assert _columns(conn, "project_lock")["locked_at"]["data_type"] == "timestamp with time zone"


def test_every_mapped_column_exists_in_the_item_table(imrt_engine):
    bootstrap_legacy(imrt_engine)
    table_columns = {column["name"] for column in sa.inspect(imrt_engine).get_columns("item")}
    for document in (ITEM, {"id": "7", "type": "stim"}, {"id": 8, "type": "tut"}):
        assert set(map_item(copy.deepcopy(document), 17).columns) <= table_columns


def test_a_mapped_item_can_be_written(imrt_engine):
    """The mapped values have types the legacy columns accept."""
    bootstrap_legacy(imrt_engine)
    mapped = map_item(copy.deepcopy(ITEM), 17)
    now = datetime(2018, 6, 1, tzinfo=UTC)
    history = {"updated_by": "jdoe", "item_created_by": "jdoe", "item_created_at": now, "workflow_status_set_at": now}
    with imrt_engine.begin() as conn:
        key = conn.scalar(
            schema.item.insert()
            .values(**mapped.columns, item_json=mapped.item_json, **history)
            .returning(schema.item.c.key)
        )
        conn.execute(
            schema.item_attachment.insert(),
            [{**row, "item_key": key, "updated_by": "jdoe"} for row in mapped.attachments],
        )
        conn.execute(
            schema.item_form.insert(), [{**row, "item_key": key, "updated_by": "jdoe"} for row in mapped.forms]
        )

    with imrt_engine.connect() as conn:
        row = conn.execute(sa.select(schema.item).where(schema.item.c.key == key)).mappings().one()
        assert {name: row[name] for name in mapped.columns} == mapped.columns
        assert row["item_json"] == ITEM
        assert row["is_being_created"] is False
        assert row["created_at"] is not None
        assert conn.execute(
            sa.select(schema.item_attachment.c.file_name, schema.item_attachment.c.uploaded_at)
        ).all() == [
            ("a.mp4", datetime(2018, 5, 25, 20, 57, 45, tzinfo=UTC))  # the first of duplicates, as legacy
        ]
        assert conn.scalar(sa.select(schema.item_form.c.exposures)) == 40
        with pytest.raises(sa.exc.IntegrityError, match="unique_id_constraint"):
            conn.execute(schema.item.insert().values(**mapped.columns, item_json={}, **history))


def test_a_second_call_creates_nothing_and_keeps_data(imrt_engine):
    bootstrap_legacy(imrt_engine)
    with imrt_engine.begin() as conn:
        conn.execute(schema.project_lock.insert().values(project_id=42, locked_at=sa.func.now(), updated_by="internal"))
        conn.execute(sa.text("SELECT nextval('batch_job_execution_seq')"))

    assert bootstrap_legacy(imrt_engine) == []

    with imrt_engine.connect() as conn:
        assert conn.execute(sa.select(schema.project_lock.c.project_id)).scalars().all() == [42]
        assert conn.scalar(sa.text("SELECT nextval('batch_job_execution_seq')")) == 2


def test_existing_tables_are_left_untouched(imrt_engine):
    with imrt_engine.begin() as conn:  # a later-schema item table (V21 test_category) with a row, and one sequence
        conn.execute(
            sa.text(
                "CREATE TABLE item (key SERIAL PRIMARY KEY, id integer NOT NULL,"
                " test_category VARCHAR NOT NULL DEFAULT '', item_json JSON NOT NULL)"
            )
        )
        conn.execute(sa.text("""INSERT INTO item (id, test_category, item_json) VALUES (1, 'cat', '{"a": 1}')"""))
        conn.execute(sa.text("CREATE SEQUENCE batch_job_seq START 500"))

    created = bootstrap_legacy(imrt_engine)

    assert "item" not in created and "batch_job_seq" not in created
    assert set(created) == set(SEQUENCES + TABLES) - {"item", "batch_job_seq"}  # no Flyway history: not a new schema
    with imrt_engine.connect() as conn:
        assert set(_columns(conn, "item")) == {"key", "id", "test_category", "item_json"}
        assert _constraints(conn, "item") == {"item_pkey": "PRIMARY KEY"}  # no unique_id_constraint added
        assert conn.execute(sa.text("SELECT id, test_category FROM item")).all() == [(1, "cat")]
        assert conn.scalar(sa.text("SELECT nextval('batch_job_seq')")) == 500
        # the new tables reference the existing item table
        assert {fk["referred_table"] for fk in sa.inspect(conn).get_foreign_keys("item_git")} == {"item"}


def test_concurrent_calls_both_succeed(at_once, imrt_engine):
    results = at_once(4, bootstrap_legacy)
    assert len(results) == 4
    assert sorted(name for result in results for name in result) == sorted(SEQUENCES + TABLES + [FLYWAY_TABLE])
    assert sorted(len(result) for result in results) == [0, 0, 0, len(SEQUENCES + TABLES) + 1]
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM flyway_schema_history")) == 20  # written once
