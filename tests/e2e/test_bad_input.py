"""Bad ``item.json`` files next to good items, in one run of the real DAG under ``dag.test()``.

Each bad item fails on its own with a message naming its project and the problem, writes nothing, and is not retried
(a bad file is a permanent error); every good item lands; the run, its summary and its Spring Batch row say so.
What the product accepts on purpose (as legacy 0.1.46 did; ``imrt_sync.mapping``) is checked as accepted: unknown
fields are allowed (``item_json`` holds the document as the legacy model wrote it back, without them), and a stimulus
link to an item that is not in IMRT is a warning, not an error.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from e2e_helpers import dag_test_environment, last_item_json_commit, reset_mirror_listener, run_dag, xcom

from imrt_compat.task_contract import SYNC, UNIT_OUTCOME
from imrt_sync.config import SyncSettings
from imrt_sync.mapping import legacy_item_json
from imrt_sync.schema_migrations import prepare_database
from itembank_server import ItemBank, ItemBankServer, generate_bank, make_item_document

pytestmark = pytest.mark.e2e

GROUP = "iat-bad-input"
TOKEN = "glpat-bad-input-token"
GOOD_COUNT = 6
MAX_BYTES = SyncSettings.__dataclass_fields__["max_item_json_bytes"].default  # not an Airflow variable: the default


def document(item_id: str, **changes) -> dict:
    doc = make_item_document(item_id, "mc", subject="Math", grade="5", test_administration=True)
    doc.update(changes)
    return doc


def with_metadata(doc: dict, **fields) -> dict:
    doc["core"]["metadata"].update(fields)
    return doc


def with_core(doc: dict, **fields) -> dict:
    doc["core"].update(fields)
    return doc


def huge_document() -> bytes:
    """A valid item.json just over the size limit."""
    doc = document("300007")
    doc["core"]["en"]["padding"] = "x" * MAX_BYTES
    return json.dumps(doc).encode()


HUGE = huge_document()

# path -> (item.json content, the problem the run must report for that project)
BAD = {
    "300001": ('{"id": "300001", "type": "mc", "core": ', "item.json is not valid JSON: "),
    "300002": (json.dumps(["300002", "mc"]), "item.json must be a JSON object, got list"),
    "300003": (
        with_metadata(document("300003"), intendedGrade=["5", "6"]),
        "(item 300003): core.metadata.intendedGrade must be a string or null, got list",
    ),
    "300004": (document("300004", type=7), "(item 300004): type must be a non-empty string, got integer"),
    "300005": (document("ITEM-300005"), "The id is not a number and cannot be ingested into the system: 'ITEM-300005'"),
    "300006": (
        with_core(document("300006"), stimulusId="stim-12"),
        "(item 300006): core.stimulusId must be a numeric id or null, got string 'stim-12'",
    ),
    "300007": (HUGE, f"item.json is {len(HUGE)} bytes, more than the limit of {MAX_BYTES}"),
}
ACCEPTED = {
    # A stimulus that is not in IMRT: legacy 0.1.46 logged a warning and saved the item without a stim_link row
    # (SmarterApp/AP_IMRT_ItemIngestService@0.1.46, service/ItemRevisionWriterImpl.java:87-96).
    "300008": with_core(document("300008"), stimulusId="299999"),
    # Unknown fields: allowed, and left out of item_json as the legacy model did (imrt_sync.mapping.legacy_item_json).
    "300009": with_core(document("300009", reviewNotes={"by": "Reviewer R", "tags": ["x", 1]}), futureField=[1, 2]),
}


@pytest.fixture
def bank(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    bank.create_group(GROUP)
    good = generate_bank(bank, GROUP, count=GOOD_COUNT, seed=21)
    bad = {}
    for path, (content, _) in BAD.items():
        files = {"item.json": content}
        bad[path] = bank.create_project(GROUP, path, files, author_name="Careless C")
    accepted = {
        path: bank.create_project(GROUP, path, {"item.json": doc}, author_name="Careful C")
        for path, doc in ACCEPTED.items()
    }
    yield bank, good, bad, accepted
    bank.close()


@pytest.fixture
def configured(monkeypatch, bank, imrt_db_url, imrt_engine, tmp_path):
    prepare_database(imrt_engine)
    with ItemBankServer(bank[0], tokens={TOKEN}) as server:
        env = dag_test_environment(
            gitlab_url=server.url, token=TOKEN, group=GROUP, imrt_url=imrt_db_url, git_cache_dir=tmp_path / "git-cache"
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_mirror_listener()
        yield server
        reset_mirror_listener()


def test_bad_items_fail_alone_with_their_problem_and_write_nothing(dag, configured, bank, imrt_engine, caplog):
    item_bank, good, bad, accepted = bank
    assert len(item_bank.read_file(bad["300007"]["id"], "item.json")) > MAX_BYTES

    with caplog.at_level("WARNING", logger="imrt_sync"):
        dag_run, tis = run_dag(dag)
    reset_mirror_listener()  # waits for the listener's writes of the run's end

    assert dag_run.state == "failed"
    sync = {ti["label"]: (index, ti) for (task, index), ti in tis.items() if task == "sync"}
    expected_labels = {p["path"] for p in good} | set(BAD) | set(ACCEPTED)
    assert set(sync) == expected_labels
    for path in BAD:
        index, ti = sync[path]
        assert (ti["state"], ti["try_number"]) == ("failed", 1), (path, ti)  # permanent: not retried
        project_id = bad[path]["id"]
        outcome = xcom(dag_run, SYNC, UNIT_OUTCOME.key, index)
        assert outcome["events"] == {} and list(outcome["failed"]) == [str(project_id)]
        message = outcome["failed"][str(project_id)]
        assert message.startswith(f"project {project_id}"), message
        assert BAD[path][1] in message, message
    for path in {p["path"] for p in good} | set(ACCEPTED):
        index, ti = sync[path]
        assert ti["state"] == "success", (path, ti)
        assert xcom(dag_run, SYNC, UNIT_OUTCOME.key, index)["failed"] == {}
    assert tis[("dispatch_webhooks", -1)]["state"] == "success"
    assert tis[("summary", -1)]["state"] == "failed"

    # The run's verdict: every bad project named with its problem, the counts true.
    verdict = xcom(dag_run, "summary", "outcome")
    total = GOOD_COUNT + len(BAD) + len(ACCEPTED)
    bad_ids = sorted(p["id"] for p in bad.values())
    assert verdict["status"] == "FAILED"
    message = verdict["message"]
    assert message.startswith(
        f"Total item bank ids: {total}, number of items requiring project webhook: {total}, "
        f"number of items deleted from IMRT: 0. Failed item bank ids: {', '.join(map(str, bad_ids))}. Errors: "
    ), message
    for path, (_, problem) in BAD.items():
        assert f"project {bad[path]['id']}" in message and problem in message, (path, message)
    assert len(message) <= 2500
    assert (verdict["read_count"], verdict["write_count"], verdict["skip_count"]) == (
        total,
        GOOD_COUNT + len(ACCEPTED),
        len(BAD),
    )

    with imrt_engine.connect() as conn:
        execution = conn.execute(sa.text("SELECT * FROM batch_job_execution")).mappings().one()
        step = conn.execute(sa.text("SELECT * FROM batch_step_execution")).mappings().one()
    assert execution["exit_message"] == message
    assert execution["status"] == execution["exit_code"] == "FAILED"
    assert execution["end_time"] is not None
    assert (step["read_count"], step["write_count"], step["process_skip_count"]) == (
        total,
        GOOD_COUNT + len(ACCEPTED),
        len(BAD),
    )

    # Nothing of a bad item; every good and accepted item exactly as in the bank.
    landed = {p["id"]: p for p in good} | {p["id"]: p for p in accepted.values()}
    with imrt_engine.connect() as conn:
        git_rows = {r.project_id: r for r in conn.execute(sa.text("SELECT * FROM item_git"))}
        item_ids = set(conn.scalars(sa.text("SELECT id FROM item")))
        keys = {r.key: r.id for r in conn.execute(sa.text("SELECT key, id FROM item"))}
        logged = conn.execute(sa.text("SELECT item_key, commit_hash FROM item_log")).all()
        children = {
            table: set(conn.scalars(sa.text(f"SELECT DISTINCT item_key FROM {table}")))
            for table in ("item_form", "item_attachment", "stim_link")
        }
        locks = conn.scalar(sa.text("SELECT count(*) FROM project_lock"))
    assert set(git_rows) == set(landed)
    assert item_ids == {int(p["path"]) for p in landed.values()}
    assert not item_ids & {int(path) for path in BAD}
    for project_id, project in landed.items():
        assert git_rows[project_id].current_commit_hash == last_item_json_commit(item_bank, project_id)
        key = git_rows[project_id].item_key
        assert keys[key] == int(project["path"])
        assert {c for k, c in logged if k == key} == {c["sha"] for c in item_bank.log(project_id, path="item.json")}
    assert {k for k, _ in logged} <= set(keys)
    assert all(item_keys <= set(keys) for item_keys in children.values()), children
    assert locks == 0

    # Accepted on purpose: a link to a stimulus IMRT does not have, and unknown fields.
    with imrt_engine.connect() as conn:
        unlinked = conn.execute(
            sa.text(
                "SELECT i.associated_stimulus_id, l.item_key_stim FROM item i LEFT JOIN stim_link l ON l.item_key = i.key "
                "WHERE i.id = 300008"
            )
        ).one()
        extra = conn.scalar(sa.text("SELECT item_json FROM item WHERE id = 300009"))
    assert unlinked == (299999, None)
    assert "item 300008 names stimulus 299999, which is not in IMRT yet: linked when the stimulus is synced" in (
        caplog.text
    )
    assert "reviewNotes" not in extra and "futureField" not in extra["core"]
    assert extra == legacy_item_json(ACCEPTED["300009"], "mc")
