"""The synthetic item bank generator: determinism, realistic shapes, links and commit histories."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import pytest

from itembank_server import ItemBank, generate_bank, generate_items, make_item_document
from itembank_server.item_documents import ALL_TYPES, GRADES, ITEM_TYPES

GROUP = "iat-dev"


@pytest.fixture(scope="module")
def items():
    return generate_items(200, seed=0)


@pytest.fixture(scope="module")
def by_id(items):
    return {item.item_id: item for item in items}


def test_same_seed_same_bank_other_seed_other_bank():
    first, again, other = generate_items(60, seed=3), generate_items(60, seed=3), generate_items(60, seed=4)
    assert first == again
    assert [i.document for i in first] != [i.document for i in other]


def test_ids_are_numeric_strings_from_200000(items):
    assert [i.item_id for i in items] == [str(200000 + n) for n in range(200)]
    assert all(i.document["id"] == i.item_id and i.document["type"] == i.type for i in items)


def test_every_type_is_present_in_a_200_item_bank(items):
    counts = Counter(i.type for i in items)
    assert set(counts) == set(ALL_TYPES)
    assert counts["stim"] >= 5 and counts["tut"] >= 2


def test_documents_have_the_legacy_shape(items):
    for item in items:
        doc = item.document
        assert doc["version"] == "iat-5"
        assert doc["workflow"]["workflowStatusCode"]
        if item.type == "tut":
            assert "metadata" not in doc["core"] and doc["core"]["en"]["content"]
            continue
        assert {"asl", "braille", "cc", "textToSpeech", "translations"} <= set(doc)
        metadata = doc["core"]["metadata"]
        assert metadata["subject"] in ("Math", "ELA") and metadata["grade"] in GRADES
        if item.type == "stim":
            assert doc["core"]["en"]["content"].startswith("<h2>")
            continue
        assert {"stimulusId", "tutorialId", "enemyItems", "metadata", "en"} <= set(doc["core"])
        for level in ("primary", "secondary", "tertiary", "quaternary"):
            assert {
                f"{level}Claim",
                f"{level}AssessmentTarget",
                f"{level}ContentDomain",
                f"{level}CommonCoreStandard",
            } <= set(metadata)
        assert metadata["primaryClaim"] and metadata["organizationTypeId"] == "SBAC"


def test_links_point_at_existing_stimuli_and_tutorials(items, by_id):
    linked_stimuli = [
        i.document["core"]["stimulusId"] for i in items if i.type in ITEM_TYPES and i.document["core"]["stimulusId"]
    ]
    linked_tutorials = [
        i.document["core"]["tutorialId"] for i in items if i.type in ITEM_TYPES and i.document["core"]["tutorialId"]
    ]
    assert len(linked_stimuli) >= 10 and len(linked_tutorials) >= 5
    assert all(by_id[s].type == "stim" for s in linked_stimuli)
    assert all(by_id[t].type == "tut" for t in linked_tutorials)
    enemies = [e for i in items if i.type in ITEM_TYPES for e in i.document["core"]["enemyItems"]]
    assert enemies and all(by_id[e].type in ITEM_TYPES for e in enemies)


def test_bank_has_the_variety_a_sync_must_handle(items):
    docs = [i.document for i in items if i.type != "tut"]
    questions = [d for d in docs if d["type"] in ITEM_TYPES]
    assert sum("testAdministration" in d["core"] for d in questions) >= 20
    for section in ("asl", "braille", "cc"):
        assert sum(bool(d[section]["attachments"]) for d in docs) >= 5, section
    assert (
        sum(d["translations"]["esp"]["isProvided"] in (True, "true") for d in docs) >= 10
    )  # "true": as legacy read it
    assert len({d["workflow"]["workflowStatusCode"] for d in docs}) >= 6
    assert {d["core"]["metadata"]["subject"] for d in docs} == {"Math", "ELA"}
    assert {d["core"]["metadata"]["grade"] for d in docs} == set(GRADES)


def test_histories_mix_item_json_commits_with_other_files(items):
    revisions = Counter(len(i.item_json_commits) for i in items)
    assert set(revisions) == {1, 2, 3}
    with_side_commit = [i for i in items if len(i.commits) > len(i.item_json_commits)]
    assert len(with_side_commit) >= 30
    assert any(i.commits[-1] not in i.item_json_commits for i in with_side_commit), "some heads do not touch item.json"
    for item in items:
        dates = [c.committed_at for c in item.commits]
        assert dates == sorted(dates)
        authors = [c.author_email for c in item.item_json_commits]
        assert all(a != b for a, b in itertools.pairwise(authors)), "consecutive revisions have different authors"
        assert item.item_json_commits[-1].files["item.json"] == item.document
    assert len({c.author_name for i in items for c in i.commits}) >= 8


def test_make_item_document_for_a_single_multiple_choice_item():
    doc = make_item_document(
        "205030", "mc", random.Random(1), subject="Math", grade="5", stimulus_id="205034", asl=True, spanish=True
    )
    options = doc["core"]["en"]["options"]
    assert len(options) == 4 and sum(o["isCorrectAnswer"] for o in options) == 1
    assert doc["core"]["stimulusId"] == "205034"
    assert doc["core"]["metadata"]["grade"] == "5"
    assert (
        doc["asl"]["attachments"][0]["fileName"] == "Item_205030_ASL_STEM.MP4" and doc["asl"]["isAslProvided"] is True
    )
    assert doc["translations"]["esp"]["isProvided"] is True
    assert make_item_document("205030", "mc") == make_item_document("205030", "mc"), "seeded by the id without rng"
    with pytest.raises(ValueError):
        make_item_document("1", "essay")


def test_generate_bank_writes_the_generated_history_into_git(tmp_path):
    bank = ItemBank(tmp_path / "bank")
    projects = generate_bank(bank, GROUP, count=40, seed=7)
    items = generate_items(40, seed=7)
    assert [p["path"] for p in projects] == [i.item_id for i in items]
    assert bank.count_projects(bank.group(GROUP)["id"]) == 40
    for project, item in zip(projects, items, strict=True):
        assert json.loads(bank.read_file(project["id"], "item.json")) == item.document
        item_log = bank.log(project["id"], path="item.json")
        expected = [(c.author_name, c.author_email, c.committed_at) for c in reversed(item.item_json_commits)]
        assert [(c["author_name"], c["author_email"], c["authored_at"]) for c in item_log] == expected
        assert len(bank.log(project["id"])) == len(item.commits)
        assert project["created_at"] <= project["last_activity_at"]
    bank.close()


def test_a_generated_bank_holds_a_share_of_items_still_being_created_on_their_create_branch(tmp_path):
    from itembank_server.items_being_created import choose_items_being_created

    items = generate_items(100, seed=5)
    chosen = choose_items_being_created(items, 0.02, seed=5)
    assert chosen == choose_items_being_created(generate_items(100, seed=5), 0.02, seed=5)
    assert len(chosen) == 2 and all(c.item.type in ITEM_TYPES for c in chosen.values())
    assert choose_items_being_created(items, 0.02, seed=5).keys() != choose_items_being_created(items, 0.02, 6).keys()
    assert choose_items_being_created(generate_items(49, seed=5), 0.02, seed=5) == {}
    bank = ItemBank(tmp_path / "bank")
    projects = {p["path"]: p for p in generate_bank(bank, GROUP, count=100, seed=5)}
    for item_id, created in chosen.items():
        project = projects[item_id]
        assert created.branch.startswith("create_")
        assert bank.read_file(project["id"], "item.json") is None
        assert bank.read_file(project["id"], "README.md") == f"# Item {item_id}\n".encode()
        on_branch = bank.read_file(project["id"], "item.json", ref=f"refs/heads/{created.branch}")
        assert json.loads(on_branch) == created.item.document
        assert len(bank.log(project["id"], ref=f"refs/heads/{created.branch}")) == len(created.item.commits) + 1
    published = [p for path, p in projects.items() if path not in chosen]
    assert all(bank.read_file(p["id"], "item.json") is not None for p in published)
    bank.close()
