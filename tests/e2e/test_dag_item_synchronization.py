"""The real DAG under ``dag.test()`` against the item bank server and PostgreSQL."""

from __future__ import annotations

import json
import math

import pytest
import sqlalchemy as sa
from e2e_helpers import dag_test_environment, last_item_json_commit, run_dag, xcom

from imrt_sync.mapping import legacy_item_json
from imrt_sync.schema_migrations import prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank

pytestmark = pytest.mark.e2e

GROUP = "iat-test"
TOKEN = "glpat-e2e-secret-token"
BANK_SIZE = 24


@pytest.fixture
def bank(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    projects = generate_bank(bank, GROUP, count=BANK_SIZE, seed=7)
    return bank, projects


@pytest.fixture
def server(bank):
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def configured(monkeypatch, server, imrt_db_url, imrt_engine, tmp_path):
    prepare_database(imrt_engine)
    env = dag_test_environment(
        gitlab_url=server.url, token=TOKEN, group=GROUP, imrt_url=imrt_db_url, git_cache_dir=tmp_path / "git-cache"
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run(dag, **conf):
    """``run_dag``, its task instances as (state, label) by (task_id, map_index)."""
    dag_run, instances = run_dag(dag, **conf)
    return dag_run, {key: (ti["state"], ti["label"]) for key, ti in instances.items()}


def mapped(states, task_id="sync"):
    return {k[1]: v for k, v in states.items() if k[0] == task_id and k[1] >= 0}


def table_snapshot(engine) -> dict[str, list]:
    tables = ["item", "item_git", "item_log", "item_attachment", "item_form", "stim_link", "project_lock"]
    with engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}")).all()), key=repr) for t in tables}


def test_first_sync_then_incremental_then_nothing_to_do(dag, configured, bank, server, imrt_engine):
    item_bank, projects = bank
    dag_run, states = run(dag)
    assert dag_run.state == "success", states
    sync_instances = mapped(states)
    assert len(sync_instances) == BANK_SIZE
    assert {label for _, label in sync_instances.values()} == {str(p["path"]) for p in projects}
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item")) == BANK_SIZE
        recorded = dict(conn.execute(sa.text("SELECT project_id, current_commit_hash FROM item_git")).all())
        observed = dict(conn.execute(sa.text("SELECT project_id, head_sha FROM imrt_project_head")).all())
    assert recorded == {p["id"]: last_item_json_commit(item_bank, p["id"]) for p in projects}
    assert observed == {p["id"]: item_bank.head(p["id"]) for p in projects}
    hook = (configured["AIRFLOW_VAR_IMRT_WEBHOOK_URL"], configured["AIRFLOW_VAR_IMRT_WEBHOOK_SECRET"])
    assert all((h["url"], h["token"]) == hook for p in projects for h in item_bank.hooks(p["id"]))
    assert all(len(item_bank.hooks(p["id"])) == 1 for p in projects)

    changed = projects[:3]
    for p in changed:
        document = json.loads(_item_json(item_bank, p["id"]))
        document["workflow"] = {"workflowStatusCode": "Approved"}
        item_bank.push_commit(
            p["id"],
            files={"item.json": document},
            message="approve",
            author_name="Reviewer R",
            author_email="r@example.org",
        )
    gone = projects[-1]
    item_bank.delete_project(gone["id"])
    server.reset_counters()

    dag_run, states = run(dag)
    assert dag_run.state == "success", states
    assert sorted(label for _, label in mapped(states).values()) == sorted(str(p["path"]) for p in changed + [gone])
    with imrt_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT g.project_id, i.workflow_status, i.updated_by FROM item i JOIN item_git g ON g.item_key = i.key"
            )
        ).all()
        assert conn.scalar(sa.text("SELECT count(*) FROM item_git WHERE project_id = :p"), {"p": gone["id"]}) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM item WHERE id = :i"), {"i": int(gone["path"])}) == 0
        duplicates = conn.scalar(
            sa.text(
                "SELECT count(*) FROM (SELECT item_key, commit_hash FROM item_log GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
        )
    assert duplicates == 0
    by_project = {r.project_id: r for r in rows}
    assert len(by_project) == BANK_SIZE - 1
    for p in changed:
        assert by_project[p["id"]].workflow_status == "Approved"
        assert by_project[p["id"]].updated_by == "Reviewer R"

    before = table_snapshot(imrt_engine)
    server.reset_counters()
    dag_run, states = run(dag)
    assert dag_run.state == "success"
    assert mapped(states) == {}
    assert table_snapshot(imrt_engine) == before
    counters = server.counters()
    assert not any("upload-pack" in endpoint for endpoint in counters), counters


def _item_json(item_bank: ItemBank, project_id: int) -> str:
    return item_bank.read_file(project_id, "item.json").decode()


def document_of(item_bank: ItemBank, project_id: int) -> dict:
    return json.loads(_item_json(item_bank, project_id))


def row(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).mappings().one()


def test_rows_match_item_json_field_by_field_for_each_kind_of_item(dag, configured, bank, imrt_engine):
    item_bank, projects = bank
    dag_run, _ = run(dag)
    assert dag_run.state == "success"
    by_type: dict[str, dict] = {}
    for p in projects:
        by_type.setdefault(document_of(item_bank, p["id"])["type"], p)
    assert {"stim", "tut", "mc"} <= by_type.keys()

    for item_type, p in by_type.items():
        doc = document_of(item_bank, p["id"])
        metadata = doc["core"].get("metadata") or {}
        item_log = item_bank.log(p["id"], path="item.json")
        stored = row(
            imrt_engine,
            "SELECT i.*, g.* FROM item i JOIN item_git g ON g.item_key = i.key WHERE g.project_id = :p",
            p=p["id"],
        )
        assert stored["id"] == int(doc["id"]) == int(p["path"])
        assert stored["item_type"] == item_type
        assert stored["classification"] == ("stim" if item_type == "stim" else "item")
        assert stored["workflow_status"] == doc["workflow"]["workflowStatusCode"]
        assert stored["subject"] == metadata.get("subject", "")
        assert stored["grade"] == metadata.get("intendedGrade", "")  # the 0.1.46 name (mapping.py)
        assert stored["dok"] == metadata.get("depthOfKnowledge", "")
        assert stored["primary_claim"] == metadata.get("primaryClaim", "")
        assert stored["primary_target"] == metadata.get("primaryTarget", "")
        assert stored["primary_common_core_standard"] == metadata.get("primaryCommonCoreStandard", "")
        assert stored["item_author"] == metadata.get("itemAuthor", "")
        assert stored["asl_required"] == doc.get("asl", {}).get("isAslRequired", "")
        assert stored["item_json"] == legacy_item_json(doc, item_type)  # the model written back
        oldest, newest = (
            (item_log[-1], item_log[0])
            if item_log[0]["committed_at"] >= item_log[-1]["committed_at"]
            else (item_log[0], item_log[-1])
        )
        assert stored["item_created_by"] == oldest["author_name"]
        assert stored["current_commit_hash"] == last_item_json_commit(item_bank, p["id"])
        assert stored["project_path"] == GROUP
        assert stored["ingest_source"] == "main"
        with imrt_engine.connect() as conn:
            logged = set(
                conn.scalars(sa.text("SELECT commit_hash FROM item_log WHERE item_key = :k"), {"k": stored["key"]})
            )
            attachments = set(
                conn.execute(
                    sa.text("SELECT file_type, file_name FROM item_attachment WHERE item_key = :k"),
                    {"k": stored["key"]},
                ).all()
            )
            forms = conn.scalar(sa.text("SELECT count(*) FROM item_form WHERE item_key = :k"), {"k": stored["key"]})
        assert logged == {c["sha"] for c in item_log}
        assert attachments == {
            (kind, a["fileName"]) for kind in ("asl", "braille", "cc") for a in doc.get(kind, {}).get("attachments", [])
        }
        administrations = (doc["core"].get("testAdministration") or {}).get("administrations") or []
        expected_forms = [f for a in administrations for f in a["forms"]]
        assert forms == len(expected_forms)
        assert stored["form_count"] == (len(expected_forms) if administrations else None)
        if administrations:
            assert stored["exposures_count"] == sum(f["exposures"] for f in expected_forms)

    with imrt_engine.connect() as conn:
        links = set(
            conn.execute(
                sa.text(
                    "SELECT i.id, s.id FROM stim_link l JOIN item i ON i.key = l.item_key JOIN item s ON s.key = l.item_key_stim"
                )
            ).all()
        )
    expected_links = {
        (int(d["id"]), int(d["core"]["stimulusId"]))
        for d in (document_of(item_bank, p["id"]) for p in projects)
        if d["type"] != "stim" and d["core"].get("stimulusId")
    }
    assert expected_links and links == expected_links


def test_malformed_item_json_fails_that_item_only(dag, configured, bank, imrt_engine):
    item_bank, projects = bank
    assert run(dag)[0].state == "success"
    bad, other = projects[4], projects[5]
    before_bad = row(
        imrt_engine,
        "SELECT i.item_json, g.current_commit_hash FROM item i JOIN item_git g ON g.item_key = i.key "
        "WHERE g.project_id = :p",
        p=bad["id"],
    )
    item_bank.push_commit(
        bad["id"],
        files={"item.json": '{"id": "200004", "type": '},
        message="broken",
        author_name="Careless C",
        author_email="c@example.org",
    )
    changed = document_of(item_bank, other["id"])
    changed["workflow"] = {"workflowStatusCode": "Review"}
    item_bank.push_commit(
        other["id"],
        files={"item.json": changed},
        message="review",
        author_name="Reviewer R",
        author_email="r@example.org",
    )

    dag_run, states = run(dag)
    assert dag_run.state == "failed"
    labels = {label: state for state, label in mapped(states).values()}
    assert labels == {str(bad["path"]): "failed", str(other["path"]): "success"}
    assert states[("summary", -1)][0] == "failed"
    after_bad = row(
        imrt_engine,
        "SELECT i.item_json, g.current_commit_hash FROM item i JOIN item_git g ON g.item_key = i.key "
        "WHERE g.project_id = :p",
        p=bad["id"],
    )
    assert after_bad == before_bad
    assert (
        row(imrt_engine, "SELECT workflow_status FROM item WHERE id = :i", i=int(other["path"]))["workflow_status"]
        == "Review"
    )
    message = _summary_message(dag, dag_run)
    assert f"Failed item bank ids: {bad['id']}" in message
    assert f"project {bad['id']}: item.json is not valid JSON" in message
    assert len(message) <= 2500


def _summary_message(dag, dag_run) -> str:
    """The exit message the summary task published (also when it failed the run)."""
    verdict = xcom(dag_run, "summary", "outcome")
    assert verdict["status"] == ("COMPLETED" if dag_run.state == "success" else "FAILED")
    return verdict["message"]


def test_deletion_guard_deletes_nothing_and_says_why(dag, configured, bank, imrt_engine):
    item_bank, projects = bank
    assert run(dag)[0].state == "success"
    for p in projects[:6]:
        item_bank.delete_project(p["id"])
    dag_run, states = run(dag)
    assert dag_run.state == "failed"
    assert mapped(states) == {}
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item_git")) == BANK_SIZE
    message = _summary_message(dag, dag_run)
    assert "deletion guard: 6 of 24 items would be deleted" in message


def test_dry_run_writes_nothing_and_creates_no_hook(dag, configured, bank, server, imrt_engine):
    item_bank, projects = bank
    dag_run, states = run(dag, dry_run=True)
    assert dag_run.state == "success"
    with imrt_engine.connect() as conn:
        for table in ("item", "item_git", "item_log", "item_attachment", "item_form", "stim_link"):
            assert conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) == 0
        # The run is recorded; its end (status, end_time) is the plugin listener's, checked under the real scheduler.
        assert conn.scalar(sa.text("SELECT exit_message FROM batch_job_execution")).startswith(
            "Total item bank ids: 24,"
        )
    assert all(item_bank.hooks(p["id"]) == [] for p in projects)
    assert "POST /api/v4/projects/:id/hooks" not in server.counters()
    assert not any("upload-pack" in endpoint for endpoint in server.counters())


def test_missing_webhooks_are_created_and_counted(dag, configured, bank, imrt_engine):
    item_bank, projects = bank
    assert run(dag)[0].state == "success"
    for p in projects[:2]:
        item_bank.remove_hooks(p["id"])
        # A change no hook delivered: the evidence on which the sweep checks the project's hooks.
        document = json.loads(_item_json(item_bank, p["id"]))
        item_bank.push_commit(p["id"], files={"item.json": {**document, "note": "pushed without a hook"}})
    dag_run, _ = run(dag)
    assert dag_run.state == "success"
    assert "number of items requiring project webhook: 2," in _summary_message(dag, dag_run)
    for p in projects:
        hooks = item_bank.hooks(p["id"])
        assert len(hooks) == 1
        assert hooks[0]["url"] == configured["AIRFLOW_VAR_IMRT_WEBHOOK_URL"]
        assert hooks[0]["push_events"] and hooks[0]["enable_ssl_verification"]


def test_above_the_bound_ids_are_batched_into_labelled_ranges(dag, configured, bank, monkeypatch, imrt_engine):
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_MAP_BOUND", "5")
    monkeypatch.setenv("AIRFLOW_VAR_IMRT_BATCH_SIZE", "8")  # above ceil(24 / 5) = 5
    dag_run, states = run(dag, mode="full")
    assert dag_run.state == "success"
    instances = mapped(states)
    assert len(instances) == math.ceil(BANK_SIZE / 8)
    assert all(".." in label and label.endswith(" items)") for _, label in instances.values())
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM item")) == BANK_SIZE


def test_targeted_run_syncs_only_the_given_item(dag, configured, bank, imrt_engine):
    item_bank, projects = bank
    target = projects[3]
    dag_run, states = run(dag, item_ids=[target["id"]])
    assert dag_run.state == "success"
    assert [label for _, label in mapped(states).values()] == [str(target["path"])]
    with imrt_engine.connect() as conn:
        assert list(conn.scalars(sa.text("SELECT project_id FROM item_git"))) == [target["id"]]
