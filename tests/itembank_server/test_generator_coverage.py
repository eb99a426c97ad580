"""A generated bank exercises every JSON path the mapping reads, and the legacy shapes it must accept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from imrt_sync.mapping import MAPPED_PATHS, map_item, parse_item_json
from itembank_server import generate_items


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    return [item.document for item in generate_items(300, seed=0)]


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every field in a JSON value, array elements written as ``[]``."""
    if isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            yield child_path, child
            yield from leaves(child, child_path)
    elif isinstance(value, list):
        for child in value:
            yield from leaves(child, f"{path}[]")


def values_at(documents: list[dict], wanted: str) -> list[Any]:
    return [value for document in documents for path, value in leaves(document) if path == wanted]


def test_generated_documents_exercise_every_mapped_path(documents):
    exercised = {path for document in documents for path, _ in leaves(document)} & MAPPED_PATHS
    assert sorted(MAPPED_PATHS - exercised) == []
    assert exercised == MAPPED_PATHS


def test_generated_documents_hold_nulls_in_mapped_fields(documents):
    nulls = {path for document in documents for path, value in leaves(document) if value is None} & MAPPED_PATHS
    assert {"core.stimulusId", "textToSpeech.isVisualTTSProvided"} <= nulls
    assert any(path.startswith("core.metadata.") for path in nulls)
    assert any(path.endswith("itemDifficultyQuintile") for path in nulls)


def test_generated_documents_hold_booleans_as_strings(documents):
    flags = [path for path in MAPPED_PATHS if path.rsplit(".", 1)[-1].endswith("Provided")]
    as_strings = {path for path in flags for value in values_at(documents, path) if value in ("true", "false")}
    assert as_strings, "no boolean written as a string"
    assert {"true", "false"} <= {v for path in flags for v in values_at(documents, path) if isinstance(v, str)}


def test_generated_upload_dates_are_not_all_iat_style(documents):
    dates = [v for kind in ("asl", "braille", "cc") for v in values_at(documents, f"{kind}.attachments[].uploadedDate")]
    assert any(d.endswith(".000Z") for d in dates)
    assert any(d.endswith("Z") and "." not in d for d in dates), "no date without milliseconds"
    assert any(d.endswith("Z") and "." in d and not d.endswith(".000Z") for d in dates), "no real milliseconds"
    assert any(d.endswith("+02:00") for d in dates), "no date with an offset"


def test_generated_attachments_without_uploaded_date(documents):
    attachments = [
        a for d in documents for kind in ("asl", "braille", "cc") for a in d.get(kind, {}).get("attachments", [])
    ]
    assert any("uploadedDate" not in a for a in attachments)
    assert any("uploadedDate" in a for a in attachments)


def test_every_generated_document_maps(documents):
    for project_id, document in enumerate(documents, start=1):
        mapped = map_item(parse_item_json(json.dumps(document).encode(), project_id), project_id)
        assert mapped.item_id == int(document["id"])
    undated = [a for d in documents for a in map_item(d, 1).attachments if a["uploaded_at"] is None]
    assert undated, "an attachment without uploadedDate maps to a NULL date"


def test_generation_stays_deterministic_for_a_seed():
    assert [i.document for i in generate_items(50, seed=5)] == [i.document for i in generate_items(50, seed=5)]
