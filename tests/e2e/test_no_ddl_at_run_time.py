"""A run of the real DAG under ``dag.test()`` (tasks, and the plugin's run listener on the API-server side engine)
against a migrated database issues no DDL: a PostgreSQL event trigger records every DDL command in the database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from e2e_helpers import dag_test_environment, load_dag, reset_mirror_listener, run_dag

from imrt_sync.schema_migrations import prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank

pytestmark = pytest.mark.e2e

GROUP = "iat-no-ddl"
TOKEN = "glpat-no-ddl-token"

# Event triggers need a superuser: the tests' PostgreSQL admin is one.
DDL_RECORDER = (
    "CREATE TABLE ddl_seen (tag TEXT NOT NULL, by_user TEXT NOT NULL DEFAULT current_user)",
    "CREATE FUNCTION record_ddl() RETURNS event_trigger LANGUAGE plpgsql AS"
    " $$ BEGIN INSERT INTO ddl_seen (tag) VALUES (tg_tag); END $$",
    "CREATE EVENT TRIGGER record_ddl ON ddl_command_start EXECUTE FUNCTION record_ddl()",
)


def ddl_seen(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT tag FROM ddl_seen")).scalars().all()


@pytest.fixture
def recording_ddl(imrt_engine):
    """A migrated database whose DDL is recorded from now on (checked to record, then emptied)."""
    prepare_database(imrt_engine)
    with imrt_engine.begin() as conn:
        for statement in DDL_RECORDER:
            conn.execute(sa.text(statement))
    with imrt_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (x INTEGER)"))
        conn.execute(sa.text("DROP TABLE probe"))
    assert ddl_seen(imrt_engine) == ["CREATE TABLE", "DROP TABLE"]
    with imrt_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ddl_seen"))
    return imrt_engine


@pytest.fixture
def configured(monkeypatch, recording_ddl, imrt_db_url, tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    generate_bank(bank, GROUP, count=4, seed=5)
    with ItemBankServer(bank, tokens={TOKEN}) as server:
        env = dag_test_environment(
            gitlab_url=server.url, token=TOKEN, group=GROUP, imrt_url=imrt_db_url, git_cache_dir=tmp_path / "git-cache"
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_mirror_listener()
        yield
        reset_mirror_listener()
    bank.close()


def test_a_sync_run_and_the_api_servers_engine_issue_no_ddl(configured, recording_ddl):
    from imrt_compat.engine import server_engine

    dag_run, _ = run_dag(load_dag())
    server_engine()  # what the API server's routes and the hook receiver's sweeper use

    assert dag_run.state == "success"
    with recording_ddl.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item")) == 4
        assert conn.scalar(sa.text("SELECT count(*) FROM batch_job_execution")) == 1  # the listener wrote its row
    assert ddl_seen(recording_ddl) == []
