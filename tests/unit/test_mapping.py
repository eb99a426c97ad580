"""item.json → rows, as legacy IIS 0.1.46 mapped it (the sources: "values settled from the legacy source" below and
docs/legacy-differences.md): parse_item_json, map_item, ItemValidationError."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imrt_sync import schema
from imrt_sync.errors import ItemValidationError
from imrt_sync.mapping import (
    ID_NOT_A_NUMBER,
    MAX_ITEM_JSON_BYTES,
    MappedItem,
    legacy_item_json,
    map_item,
    parse_item_json,
)
from itembank_server.item_documents import ALL_TYPES, make_item_document

PROJECT = 17
UTC = UTC

# A full multiple-choice item in the shape of the legacy fixtures (good-item.json, item_with_admin_data.json,
# item-with-duplicate-asl-filenames.json, math-all-standard-ids.json), plus fields the mapping does not know.
FULL_ITEM: dict[str, Any] = {
    "id": "205030",
    "type": "mc",
    "version": "iat-5",
    "core": {
        "stimulusId": "99",
        "tutorialId": None,
        "enemyItems": [],
        "metadata": {
            "subject": "Math",
            "intendedGrade": "5",
            "depthOfKnowledge": "2",
            "organizationTypeId": "SBAC",
            "organizationName": "Smarter Balanced",
            "contentTaskModel": "TM1",
            "performanceTask": "PT-7",
            "writingPurpose": "Narrative",
            "itemAuthor": "jdoe",
            "primaryClaim": "1",
            "primaryContentDomain": "NF",
            "primaryCommonCoreStandard": "5.NF.A.1",
            "primaryTarget": "E",
            "secondaryClaim": "2",
            "secondaryContentDomain": "OA",
            "secondaryCommonCoreStandard": "5.OA.A.2",
            "secondaryTarget": "A",
            "tertiaryClaim": "3",
            "tertiaryContentDomain": "MD",
            "tertiaryCommonCoreStandard": "5.MD.C.5",
            "tertiaryTarget": "C",
            "quaternaryClaim": "4",
            "quaternaryContentDomain": "G",
            "quaternaryCommonCoreStandard": "5.G.A.1",
            "quaternaryTarget": "B",
            "testCategory": "",
            "scoringEngine": "",
            "someFutureField": {"nested": [1, 2, 3]},
        },
        "en": {"prompt": "<p>…</p>", "options": [{"text": "…", "rationale": "…", "isCorrectAnswer": False}]},
        "testAdministration": {
            "fieldTestAdministrationId": "345.sss",
            "administrations": [
                {
                    "administrationId": "123.sss",
                    "itemVersion": "",
                    "timeframe": "Annual",
                    "fieldTestData": {"itemDifficultyQuintile": "4"},
                    "forms": [
                        {
                            "assessmentType": "Summative",
                            "exposures": 100,
                            "formId": "form.123.OP",
                            "formType": "Operational",
                            "sequence": "1",
                            "status": "Field Test",
                        },
                        {
                            "assessmentType": "Interim",
                            "exposures": "25",
                            "formId": "form.124.IA",
                            "formType": "Interim",
                        },
                    ],
                },
                {
                    "administrationId": "345.sss",
                    "fieldTestData": {"itemDifficultyQuintile": "2"},
                    "forms": [
                        {"assessmentType": "Summative", "exposures": None, "formId": "form.345.FT", "formType": None}
                    ],
                },
            ],
        },
    },
    "asl": {
        "attachments": [
            {"fileName": "Item_205030_ASL_STEM.MP4", "uploadedDate": "2018-05-25T20:57:45.000Z"},
            {"fileName": "Item_205030_ASL_OPTIONS.MP4", "uploadedDate": None},
            {"fileName": "Item_205030_ASL_STEM.MP4", "uploadedDate": "2018-06-01T08:00:00.000Z"},
            {"fileName": "Item_205030_ASL_STEM.MP4", "uploadedDate": "2018-05-30T08:00:00.000Z"},
        ],
        "isAslRequired": "yes",
        "isAslProvided": True,
    },
    "braille": {
        "attachments": [{"fileName": "Item_205030_ASL_STEM.MP4", "uploadedDate": "2018-07-04T12:30:00+02:00"}],
        "isBrailleRequired": "no",
        "isBrailleProvided": False,
    },
    "cc": {
        "attachments": [{"fileName": "item_205030_cc.vtt"}],
        "isCcRequired": "undetermined",
        "isCcProvided": None,
        "itemCcAudioAssociations": [],
    },
    "textToSpeech": {"isVisualTTSRequired": "yes", "isVisualTTSProvided": True, "isSightTTSProvided": False},
    "workflow": {"workflowStatusCode": "Draft"},
    "translations": {"esp": {"prompt": "", "options": [], "isRequired": "yes", "isProvided": True}},
    "unknownTopLevel": {"kept": True},
}

STIMULUS: dict[str, Any] = {
    "id": "205034",
    "type": "stim",
    "version": "iat-5",
    "core": {
        "stimulusId": "not-read-for-stimuli",
        "en": {"content": "<p>…</p>"},
        "metadata": {"subject": "ELA", "intendedGrade": "7", "primaryClaim": "2", "primaryTarget": "1"},
    },
    "workflow": {"workflowStatusCode": "Approved"},
}

TUTORIAL: dict[str, Any] = {"id": "300001", "type": "tut", "core": {"en": {"content": "<p>How to drag</p>"}}}

# Columns the mapping does not own: the key, the document, and columns that depend on the commit or the row.
UNMAPPED_ITEM_COLUMNS = {
    "key",
    "item_json",
    "created_at",
    "updated_at",
    "updated_by",
    "item_created_by",
    "item_created_at",
    "workflow_status_set_at",
    "is_being_created",
}
STANDARD_COLUMNS = [
    f"{ordinal}_{field}"
    for ordinal in ("primary", "secondary", "tertiary", "quaternary")
    for field in ("claim", "content_domain", "common_core_standard", "target")
]


Steps = tuple[str | int, ...]


def mutated(document: dict, path: str | Steps, value: Any = None, *, delete: bool = False) -> dict:
    """A deep copy of ``document`` with ``path`` set to ``value`` or deleted.

    ``path`` is dotted with ``[i]`` for list elements (``asl.attachments[1].fileName``), or a tuple of steps.
    """
    steps = _steps(path) if isinstance(path, str) else path
    doc = copy.deepcopy(document)
    parent: Any = doc
    for step in steps[:-1]:
        parent = parent[step]
    if delete:
        del parent[steps[-1]]
    else:
        parent[steps[-1]] = value
    return doc


def _steps(path: str) -> Steps:
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        steps.extend(int(index) for index in rest.rstrip("]").split("][") if index)
    return tuple(steps)


def problem_of(document: Any) -> str:
    with pytest.raises(ItemValidationError) as info:
        map_item(document, PROJECT)
    assert info.value.project_id == PROJECT
    assert str(info.value).startswith(f"project {PROJECT}")
    assert info.value.problem in str(info.value)
    return info.value.problem


# ---------------------------------------------------------------------------------------------- full item


def test_full_item_columns():
    mapped = map_item(copy.deepcopy(FULL_ITEM), PROJECT)

    assert mapped.columns == {
        "id": 205030,
        "item_type": "mc",
        "classification": "item",
        "workflow_status": "Draft",
        "subject": "Math",
        "grade": "5",
        "dok": "2",
        "organization_type_id": "SBAC",
        "organization_name": "Smarter Balanced",
        "content_task_model": "TM1",
        "performance_task": "PT-7",
        "writing_purpose": "Narrative",
        "item_author": "jdoe",
        "primary_claim": "1",
        "primary_content_domain": "NF",
        "primary_common_core_standard": "5.NF.A.1",
        "primary_target": "E",
        "secondary_claim": "2",
        "secondary_content_domain": "OA",
        "secondary_common_core_standard": "5.OA.A.2",
        "secondary_target": "A",
        "tertiary_claim": "3",
        "tertiary_content_domain": "MD",
        "tertiary_common_core_standard": "5.MD.C.5",
        "tertiary_target": "C",
        "quaternary_claim": "4",
        "quaternary_content_domain": "G",
        "quaternary_common_core_standard": "5.G.A.1",
        "quaternary_target": "B",
        "associated_stimulus_id": 99,
        "asl_required": "yes",
        "asl_provided": "true",
        "braille_required": "no",
        "braille_provided": "false",
        "cc_required": "undetermined",
        "cc_provided": "",
        "translation_required": "yes",
        "translation_provided": "true",
        "visual_tts_required": "yes",
        "visual_tts_provided": True,
        "sight_tts_provided": False,
        "exposures_count": 125,
        "form_count": 3,
        "item_difficulty_quintile": 2,
    }


def test_full_item_identity_and_document():
    document = copy.deepcopy(FULL_ITEM)
    mapped = map_item(document, PROJECT)

    assert isinstance(mapped, MappedItem)
    assert mapped.item_id == 205030
    assert mapped.item_type == "mc"
    assert mapped.is_stimulus is False
    assert mapped.stimulus_id == 99
    assert mapped.item_json == FULL_ITEM  # the document as read, unknown fields included
    assert mapped.item_json["unknownTopLevel"] == {"kept": True}
    assert mapped.item_json["core"]["metadata"]["someFutureField"] == {"nested": [1, 2, 3]}
    # What the item_json column gets is the model written back: no unknown field (tests at the end of the module)
    assert "unknownTopLevel" not in mapped.stored_item_json
    assert "someFutureField" not in mapped.stored_item_json["core"]["metadata"]


def test_full_item_attachments_are_deduplicated_keeping_the_first_occurrence():
    # IIS@0.1.46:src/main/java/org/opentestsystem/ap/imrt/iis/model/ItemRevisionImpl.java:303-307 (Collectors.toSet)
    mapped = map_item(copy.deepcopy(FULL_ITEM), PROJECT)

    assert mapped.attachments == (
        {
            "file_name": "Item_205030_ASL_STEM.MP4",
            "file_type": "asl",
            "uploaded_at": datetime(2018, 5, 25, 20, 57, 45, tzinfo=UTC),
        },
        {"file_name": "Item_205030_ASL_OPTIONS.MP4", "file_type": "asl", "uploaded_at": None},
        # the same file name under another type is another row
        {
            "file_name": "Item_205030_ASL_STEM.MP4",
            "file_type": "braille",
            "uploaded_at": datetime(2018, 7, 4, 10, 30, tzinfo=UTC),
        },
        {"file_name": "item_205030_cc.vtt", "file_type": "cc", "uploaded_at": None},
    )
    for attachment in mapped.attachments:
        assert attachment["uploaded_at"] is None or attachment["uploaded_at"].tzinfo is not None


def test_full_item_forms():
    mapped = map_item(copy.deepcopy(FULL_ITEM), PROJECT)

    assert mapped.forms == (
        {"assessment_type": "Summative", "form_id": "form.123.OP", "form_type": "Operational", "exposures": 100},
        {"assessment_type": "Interim", "form_id": "form.124.IA", "form_type": "Interim", "exposures": 25},
        {"assessment_type": "Summative", "form_id": "form.345.FT", "form_type": None, "exposures": None},
    )


def test_mapped_columns_are_exactly_the_item_columns_the_mapping_owns():
    for document in (FULL_ITEM, STIMULUS, TUTORIAL):
        columns = map_item(copy.deepcopy(document), PROJECT).columns
        assert set(columns) <= set(schema.item.c.keys())
        assert set(columns) == set(schema.item.c.keys()) - UNMAPPED_ITEM_COLUMNS


# ------------------------------------------------------------------------------ stimulus, tutorial, int id


def test_stimulus():
    mapped = map_item(copy.deepcopy(STIMULUS), PROJECT)

    assert mapped.item_id == 205034
    assert mapped.item_type == "stim"
    assert mapped.is_stimulus is True
    assert mapped.stimulus_id is None  # core.stimulusId is not read for stimuli
    assert mapped.columns["classification"] == "stim"
    assert mapped.columns["associated_stimulus_id"] is None
    assert mapped.columns["workflow_status"] == "Approved"
    assert mapped.columns["subject"] == "ELA"
    assert mapped.columns["grade"] == "7"
    assert mapped.columns["primary_claim"] == "2"
    assert mapped.columns["primary_target"] == "1"
    assert mapped.columns["secondary_claim"] == ""
    assert mapped.columns["dok"] == ""
    assert mapped.columns["asl_provided"] == ""
    assert mapped.columns["visual_tts_provided"] is None
    assert (mapped.columns["exposures_count"], mapped.columns["form_count"]) == (None, None)
    assert mapped.attachments == ()
    assert mapped.forms == ()


def test_tutorial_without_metadata():
    mapped = map_item(copy.deepcopy(TUTORIAL), PROJECT)
    columns = mapped.columns

    assert (mapped.item_id, mapped.item_type, mapped.is_stimulus, mapped.stimulus_id) == (300001, "tut", False, None)
    assert columns["classification"] == "item"
    assert columns["workflow_status"] == ""
    for name in (
        "subject", "grade", "dok", "organization_type_id", "organization_name", "content_task_model",
        "performance_task", "writing_purpose", "item_author", *STANDARD_COLUMNS,
        "asl_required", "asl_provided", "braille_required", "braille_provided", "cc_required", "cc_provided",
        "translation_required", "translation_provided", "visual_tts_required",
    ):  # fmt: skip
        assert columns[name] == "", name
    for name in (
        "associated_stimulus_id", "visual_tts_provided", "sight_tts_provided",
        "exposures_count", "form_count", "item_difficulty_quintile",
    ):  # fmt: skip
        assert columns[name] is None, name
    assert mapped.attachments == () and mapped.forms == ()


def test_numeric_id_given_as_an_integer():
    mapped = map_item({"id": 205030, "type": "mc"}, PROJECT)
    assert mapped.item_id == 205030
    assert mapped.columns["id"] == 205030


def test_minimal_document_with_null_sections():
    document = {
        "id": "1",
        "type": "mc",
        "core": None,
        "asl": None,
        "braille": {"attachments": None},
        "cc": {},
        "textToSpeech": None,
        "workflow": {"workflowStatusCode": None},
        "translations": {"esp": None},
    }
    mapped = map_item(document, PROJECT)
    assert mapped.columns["workflow_status"] == ""
    assert mapped.columns["braille_provided"] == ""
    assert mapped.attachments == ()


# -------------------------------------------------------------------------------- field-level leniencies


@pytest.mark.parametrize(
    ("path", "value", "column", "expected"),
    [
        ("core.stimulusId", None, "associated_stimulus_id", None),
        ("core.stimulusId", "", "associated_stimulus_id", None),
        ("core.stimulusId", 205034, "associated_stimulus_id", 205034),
        ("core.metadata.intendedGrade", 5, "grade", "5"),  # Jackson coerces scalars into String fields
        ("core.metadata.intendedGrade", None, "grade", ""),
        ("asl.isAslProvided", "true", "asl_provided", "true"),
        ("asl.isAslProvided", "FALSE", "asl_provided", "false"),
        ("translations.esp.isProvided", None, "translation_provided", ""),
        ("textToSpeech.isSightTTSProvided", "true", "sight_tts_provided", True),
        ("textToSpeech.isVisualTTSRequired", None, "visual_tts_required", ""),
        ("core.testAdministration.administrations[0].forms[0].exposures", 100.0, "exposures_count", 125),
        ("core.testAdministration.administrations[0].forms[0].exposures", " 7 ", "exposures_count", 32),
        ("core.testAdministration.administrations[0].forms[0].exposures", "", "exposures_count", 25),
        (
            "core.testAdministration.administrations[1].fieldTestData.itemDifficultyQuintile",
            5,
            "item_difficulty_quintile",
            5,
        ),
        (
            "core.testAdministration.administrations[1].fieldTestData.itemDifficultyQuintile",
            None,
            "item_difficulty_quintile",
            None,
        ),
        ("core.testAdministration.administrations[1].fieldTestData", None, "item_difficulty_quintile", None),
        (
            "core.testAdministration.fieldTestAdministrationId",
            "no-such-administration",
            "item_difficulty_quintile",
            None,
        ),
        ("core.testAdministration.fieldTestAdministrationId", None, "item_difficulty_quintile", None),
        ("core.testAdministration.administrations", [], "exposures_count", None),
        ("core.testAdministration.administrations", [], "form_count", None),
        ("core.testAdministration.administrations", [], "item_difficulty_quintile", None),
        ("core.testAdministration.administrations", [{"administrationId": "345.sss"}], "form_count", 0),
        ("core.testAdministration.administrations", [{"administrationId": "345.sss"}], "exposures_count", 0),
        ("core.testAdministration", None, "form_count", None),
    ],
)
def test_field_values(path, value, column, expected):
    assert map_item(mutated(FULL_ITEM, path, value), PROJECT).columns[column] == expected


def test_a_quintile_in_an_administration_that_is_not_the_field_test_is_not_read():
    document = mutated(
        FULL_ITEM, "core.testAdministration.administrations[0].fieldTestData.itemDifficultyQuintile", "x"
    )
    assert map_item(document, PROJECT).columns["item_difficulty_quintile"] == 2


@pytest.mark.parametrize(
    ("uploaded", "expected"),
    [
        ("2018-05-25T20:57:45.000Z", datetime(2018, 5, 25, 20, 57, 45, tzinfo=UTC)),
        ("2018-05-25T20:57:45.123Z", datetime(2018, 5, 25, 20, 57, 45, 123000, tzinfo=UTC)),
        ("2018-05-25T22:57:45+02:00", datetime(2018, 5, 25, 20, 57, 45, tzinfo=UTC)),
        ("2018-05-25T20:57:45", datetime(2018, 5, 25, 20, 57, 45, tzinfo=UTC)),  # no offset: UTC
        (1527281865000, datetime(2018, 5, 25, 20, 57, 45, tzinfo=UTC)),  # epoch milliseconds
        ("", None),
        (None, None),
    ],
)
def test_uploaded_date(uploaded, expected):
    document = {"id": "1", "type": "mc", "cc": {"attachments": [{"fileName": "a.vtt", "uploadedDate": uploaded}]}}
    (attachment,) = map_item(document, PROJECT).attachments
    assert attachment["uploaded_at"] == expected
    if expected is not None:
        assert attachment["uploaded_at"].utcoffset() is not None


def test_duplicate_attachment_with_equal_dates_keeps_the_last_and_the_first_position():
    attachments = [
        {"fileName": "b.mp4", "uploadedDate": None},
        {"fileName": "a.mp4", "uploadedDate": None},
        {"fileName": "b.mp4", "uploadedDate": None, "marker": 2},
    ]
    mapped = map_item({"id": "1", "type": "mc", "asl": {"attachments": attachments}}, PROJECT)
    assert [row["file_name"] for row in mapped.attachments] == ["b.mp4", "a.mp4"]


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("id", "abc", "The id is not a number and cannot be ingested into the system: 'abc'"),
        ("id", "205030a", "The id is not a number and cannot be ingested into the system: '205030a'"),
        ("id", " 205030", "The id is not a number and cannot be ingested into the system: ' 205030'"),
        ("id", "5.0", "The id is not a number and cannot be ingested into the system: '5.0'"),
        ("id", 205030.0, "The id is not a number and cannot be ingested into the system: '205030.0'"),
        ("id", "99999999999", "The id is not a number and cannot be ingested into the system: '99999999999'"),
        ("id", 2**31, "The id is not a number and cannot be ingested into the system: '2147483648'"),
        ("id", "\u0665", "The id is not a number and cannot be ingested into the system: '\u0665'"),
        ("id", ["205030"], "id must be a string or an integer, got list"),
        ("id", True, "The id is not a number and cannot be ingested into the system: 'true'"),
        ("id", None, "id is missing"),
        ("id", "", "id is missing"),
    ],
)
def test_bad_id(path, value, problem):
    document = mutated(FULL_ITEM, path, value)
    with pytest.raises(ItemValidationError) as info:
        map_item(document, PROJECT)
    assert info.value.problem == problem
    assert info.value.item_id is None
    assert str(info.value) == f"project {PROJECT}: {problem}"


def test_missing_id():
    assert problem_of(mutated(FULL_ITEM, "id", delete=True)) == "id is missing"


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("type", None, "type is missing"),
        ("type", "", "type is missing"),
        ("type", 3, "type must be a non-empty string, got integer"),
        ("core", [], "core must be an object or null, got list"),
        ("core.metadata", [], "core.metadata must be an object or null, got list"),
        ("core.metadata", "x", "core.metadata must be an object or null, got string"),
        ("core.metadata.intendedGrade", ["5"], "core.metadata.intendedGrade must be a string or null, got list"),
        ("core.metadata.intendedGrade", {"v": "5"}, "core.metadata.intendedGrade must be a string or null, got object"),
        ("core.metadata.subject", "Ma\x00th", "core.metadata.subject must not contain NUL characters"),
        ("core.metadata.subject", "Ma\ud800th", "core.metadata.subject must be valid Unicode text (it has an unpaired surrogate)"),
        ("core.metadata.quaternaryTarget", [], "core.metadata.quaternaryTarget must be a string or null, got list"),
        ("workflow", "Draft", "workflow must be an object or null, got string"),
        ("workflow.workflowStatusCode", {}, "workflow.workflowStatusCode must be a string or null, got object"),
        ("core.stimulusId", "abc", "core.stimulusId must be a numeric id or null, got string 'abc'"),
        ("core.stimulusId", "12.5", "core.stimulusId must be a numeric id or null, got string '12.5'"),
        ("core.stimulusId", 9.5, "core.stimulusId must be a numeric id or null, got number 9.5"),
        ("core.stimulusId", True, "core.stimulusId must be a numeric id or null, got boolean"),
        ("core.stimulusId", [99], "core.stimulusId must be a numeric id or null, got list"),
        ("core.stimulusId", " 99", "core.stimulusId must be a numeric id or null, got string ' 99'"),
        ("core.stimulusId", "12345678901", "core.stimulusId must fit a 32-bit integer, got 12345678901"),
        ("asl", [], "asl must be an object or null, got list"),
        ("asl.isAslProvided", "maybe", "asl.isAslProvided must be a boolean or null, got string 'maybe'"),
        ("asl.isAslProvided", 1, "asl.isAslProvided must be a boolean or null, got integer 1"),
        ("asl.isAslRequired", [], "asl.isAslRequired must be a string or null, got list"),
        ("asl.attachments", {}, "asl.attachments must be an array or null, got object"),
        ("asl.attachments", "a.mp4", "asl.attachments must be an array or null, got string"),
        ("asl.attachments[1]", "a.mp4", "asl.attachments[1] must be an object, got string"),
        ("asl.attachments[1]", None, "asl.attachments[1] must be an object, got null"),
        ("asl.attachments[1].fileName", None, "asl.attachments[1].fileName must be a non-empty string, got null"),
        ("asl.attachments[1].fileName", "", "asl.attachments[1].fileName must be a non-empty string, got string ''"),
        ("asl.attachments[1].fileName", 12, "asl.attachments[1].fileName must be a non-empty string, got integer 12"),
        ("asl.attachments[0].uploadedDate", "yesterday", "asl.attachments[0].uploadedDate must be an ISO-8601 date-time, got string 'yesterday'"),
        ("asl.attachments[0].uploadedDate", "2018-13-45T00:00:00Z", "asl.attachments[0].uploadedDate must be an ISO-8601 date-time, got string '2018-13-45T00:00:00Z'"),
        ("asl.attachments[0].uploadedDate", [], "asl.attachments[0].uploadedDate must be an ISO-8601 date-time string or null, got list"),
        ("asl.attachments[0].uploadedDate", 10**20, "asl.attachments[0].uploadedDate must be an ISO-8601 date-time, got integer 100000000000000000000"),
        ("braille.isBrailleProvided", {}, "braille.isBrailleProvided must be a boolean or null, got object"),
        ("cc.attachments[0]", [], "cc.attachments[0] must be an object, got list"),
        ("translations", [], "translations must be an object or null, got list"),
        ("translations.esp", "yes", "translations.esp must be an object or null, got string"),
        ("translations.esp.isProvided", "si", "translations.esp.isProvided must be a boolean or null, got string 'si'"),
        ("textToSpeech.isVisualTTSProvided", [], "textToSpeech.isVisualTTSProvided must be a boolean or null, got list"),
        ("core.testAdministration", [], "core.testAdministration must be an object or null, got list"),
        ("core.testAdministration.administrations", {}, "core.testAdministration.administrations must be an array or null, got object"),
        ("core.testAdministration.administrations[1]", 7, "core.testAdministration.administrations[1] must be an object, got integer"),
        ("core.testAdministration.administrations[0].forms", "f", "core.testAdministration.administrations[0].forms must be an array or null, got string"),
        ("core.testAdministration.administrations[0].forms[1]", None, "core.testAdministration.administrations[0].forms[1] must be an object, got null"),
        ("core.testAdministration.administrations[0].forms[1].exposures", "many", "core.testAdministration.administrations[0].forms[1].exposures must be an integer, a numeric string or null, got string 'many'"),
        ("core.testAdministration.administrations[0].forms[1].exposures", 2.5, "core.testAdministration.administrations[0].forms[1].exposures must be an integer, a numeric string or null, got number 2.5"),
        ("core.testAdministration.administrations[0].forms[1].exposures", False, "core.testAdministration.administrations[0].forms[1].exposures must be an integer, a numeric string or null, got boolean"),
        ("core.testAdministration.administrations[0].forms[1].exposures", "99999999999", "core.testAdministration.administrations[0].forms[1].exposures must fit a 32-bit integer, got 99999999999"),
        ("core.testAdministration.administrations[0].forms[1].exposures", 2**31, "core.testAdministration.administrations[0].forms[1].exposures must fit a 32-bit integer, got 2147483648"),
        ("core.testAdministration.administrations[0].forms[1].formId", ["x"], "core.testAdministration.administrations[0].forms[1].formId must be a string or null, got list"),
        ("core.testAdministration.administrations[1].administrationId", {}, "core.testAdministration.administrations[1].administrationId must be a string or null, got object"),
        ("core.testAdministration.administrations[1].fieldTestData", [], "core.testAdministration.administrations[1].fieldTestData must be an object or null, got list"),
        ("core.testAdministration.administrations[1].fieldTestData.itemDifficultyQuintile", ["2"], "core.testAdministration.administrations[1].fieldTestData.itemDifficultyQuintile must be a string, a number or null, got list"),
        ("core.testAdministration.fieldTestAdministrationId", [], "core.testAdministration.fieldTestAdministrationId must be a string or null, got list"),
    ],
)  # fmt: skip
def test_wrong_types_name_the_path(path, value, problem):
    with pytest.raises(ItemValidationError) as info:
        map_item(mutated(FULL_ITEM, path, value), PROJECT)
    assert info.value.problem == problem
    assert info.value.item_id == "205030"
    assert str(info.value) == f"project {PROJECT} (item 205030): {problem}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, b"bytes"])
def test_the_document_must_be_storable_as_json(value):
    """Only reachable with a document that did not come from parse_item_json."""
    problem = problem_of(mutated(FULL_ITEM, "unknownTopLevel", value))
    assert problem.startswith("item.json cannot be stored as JSON: ")


def test_total_exposures_must_fit_an_integer():
    document = mutated(FULL_ITEM, "core.testAdministration.administrations[0].forms[0].exposures", 2**31 - 1)
    assert "add up to 2147483672" in problem_of(document)


@pytest.mark.parametrize("document", [[], "item", 3, None, True])
def test_document_must_be_an_object(document):
    assert problem_of(document) == f"item.json must be a JSON object, got {json_kind(document)}"


def json_kind(value: Any) -> str:
    return {list: "list", str: "string", int: "integer", type(None): "null", bool: "boolean"}[type(value)]


# -------------------------------------------------------------------------------------------- parsing


def test_parse_item_json():
    raw = json.dumps(FULL_ITEM).encode()
    assert parse_item_json(raw, PROJECT) == FULL_ITEM
    assert parse_item_json(b"\xef\xbb\xbf" + raw, PROJECT) == FULL_ITEM  # a UTF-8 byte order mark is ignored
    assert parse_item_json(bytearray(raw), PROJECT) == FULL_ITEM
    assert parse_item_json(memoryview(raw), PROJECT) == FULL_ITEM
    assert (
        map_item(parse_item_json(raw, PROJECT), PROJECT).columns == map_item(copy.deepcopy(FULL_ITEM), PROJECT).columns
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "item.json is not valid JSON: Expecting value at line 1 column 1"),
        (b"<html>404</html>", "item.json is not valid JSON: Expecting value at line 1 column 1"),
        (b'{"id": "1",\n "type": }', "item.json is not valid JSON: Expecting value at line 2 column 10"),
        (b'{"id": "1"} trailing', "item.json is not valid JSON: Extra data at line 1 column 13"),
        (b'{"x": NaN}', "item.json is not valid JSON: NaN is not a JSON number"),
        (b'{"x": -Infinity}', "item.json is not valid JSON: -Infinity is not a JSON number"),
        (b'{"x": 1e400}', "item.json is not valid JSON: the number 1e400 is out of range"),
        (b'{"x": "caf\xe9"}', "item.json is not valid UTF-8: invalid continuation byte at byte 10"),
        (b"\xff\xfe{\x00}\x00", "item.json is not valid UTF-8: invalid start byte at byte 0"),
        (b"[]", "item.json must be a JSON object, got list"),
        (b'"205030"', "item.json must be a JSON object, got string"),
        (b"null", "item.json must be a JSON object, got null"),
        (b"[" * 100_000 + b"]" * 100_000, "item.json is not valid JSON: it is nested too deeply"),
    ],
)
def test_parse_errors(raw, problem):
    with pytest.raises(ItemValidationError) as info:
        parse_item_json(raw, PROJECT)
    assert info.value.problem == problem
    assert info.value.item_id is None
    assert str(info.value) == f"project {PROJECT}: {problem}"


@pytest.mark.parametrize(
    ("path", "json_number", "problem"),
    [
        ("core.stimulusId", "9.5", "core.stimulusId must be a numeric id or null, got number 9.5"),
        (
            "core.testAdministration.administrations[0].forms[0].exposures",
            "2.5",
            "core.testAdministration.administrations[0].forms[0].exposures must be an integer, a numeric string or "
            "null, got number 2.5",
        ),
    ],
)
def test_a_parsed_fraction_is_named_a_number_in_problems(path, json_number, problem):
    raw = json.dumps(mutated(FULL_ITEM, path, "NUMBER")).replace('"NUMBER"', json_number).encode()
    with pytest.raises(ItemValidationError) as info:
        map_item(parse_item_json(raw, PROJECT), PROJECT)
    assert info.value.problem == problem


def test_parse_rejects_documents_over_the_size_limit():
    raw = json.dumps({"id": "1", "type": "mc", "pad": "x" * 100}).encode()
    assert parse_item_json(raw, PROJECT, max_bytes=len(raw))["id"] == "1"
    with pytest.raises(ItemValidationError) as info:
        parse_item_json(raw, PROJECT, max_bytes=len(raw) - 1)
    assert info.value.problem == f"item.json is {len(raw)} bytes, larger than the limit of {len(raw) - 1} bytes"
    assert MAX_ITEM_JSON_BYTES == 5 * 1024 * 1024
    with pytest.raises(ItemValidationError, match="larger than the limit of 5242880 bytes"):
        parse_item_json(b" " * (MAX_ITEM_JSON_BYTES + 1), PROJECT)


def test_parse_rejects_text():
    with pytest.raises(TypeError):
        parse_item_json('{"id": "1"}', PROJECT)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ ItemValidationError


def test_item_validation_error():
    error = ItemValidationError(17, "core.metadata.intendedGrade must be a string or null, got list", "205030")
    assert isinstance(error, ValueError)
    assert str(error) == "project 17 (item 205030): core.metadata.intendedGrade must be a string or null, got list"
    assert (error.project_id, error.item_id, error.problem) == (
        17,
        "205030",
        "core.metadata.intendedGrade must be a string or null, got list",
    )

    without_item = ItemValidationError(17, "item.json is not valid JSON: Expecting value at line 1 column 1")
    assert str(without_item) == "project 17: item.json is not valid JSON: Expecting value at line 1 column 1"
    assert without_item.item_id is None

    copied = pickle.loads(pickle.dumps(error))
    assert (copied.project_id, copied.item_id, copied.problem, str(copied)) == (17, "205030", error.problem, str(error))


# ------------------------------------------------------------------------------------------- properties

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**40), max_value=2**40).map(str)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "true", "False", "2018-05-25T20:57:45.000Z", "2018-02-30", "345.sss", "stim", "\x00"])
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
_KNOWN_KEYS = [
    "id", "type", "core", "metadata", "stimulusId", "testAdministration", "administrations", "forms",
    "administrationId", "fieldTestAdministrationId", "fieldTestData", "itemDifficultyQuintile", "exposures",
    "asl", "braille", "cc", "attachments", "fileName", "uploadedDate", "workflow", "workflowStatusCode",
    "translations", "esp", "isProvided", "textToSpeech", "isSightTTSProvided", "intendedGrade", "subject",
]  # fmt: skip
structured_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KNOWN_KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=40,
)


def _paths(value: Any, prefix: Steps = ()) -> list[Steps]:
    """The steps to every value inside a document."""
    found: list[Steps] = []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for step, child in children:
        found += [(*prefix, step), *_paths(child, (*prefix, step))]
    return found


@st.composite
def mutated_documents(draw) -> dict:
    document = copy.deepcopy(draw(st.sampled_from([FULL_ITEM, STIMULUS, TUTORIAL])))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [path for path in _paths(document) if path not in (("id",), ("type",))]  # covered elsewhere
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()):
            document = mutated(document, path, draw(structured_values))
        else:
            document = mutated(document, path, delete=True)
    return document


def _assert_sane(mapped: MappedItem) -> None:
    columns = mapped.columns
    assert set(columns) == set(schema.item.c.keys()) - UNMAPPED_ITEM_COLUMNS
    # A Java int, as Integer.valueOf gives it (0 and negative ids included: test_ids_are_java_integer_value_of_the_text)
    assert -(2**31) <= mapped.item_id <= 2**31 - 1 and columns["id"] == mapped.item_id
    assert columns["classification"] == ("stim" if mapped.is_stimulus else "item")
    for name, value in columns.items():
        column_type = schema.item.c[name].type
        if name in ("visual_tts_provided", "sight_tts_provided"):
            assert value is None or isinstance(value, bool), name
        elif column_type.python_type is int:
            assert value is None or (type(value) is int and -(2**31) <= value < 2**31), name
        else:
            assert type(value) is str and "\x00" not in value, name
            value.encode("utf-8")
    keys = [(row["file_name"], row["file_type"]) for row in mapped.attachments]
    assert len(keys) == len(set(keys))
    for row in mapped.attachments:
        assert row["file_type"] in ("asl", "braille", "cc")
        assert row["uploaded_at"] is None or row["uploaded_at"].utcoffset() is not None
    for form in mapped.forms:
        assert form["exposures"] is None or type(form["exposures"]) is int
    json.dumps(mapped.item_json, allow_nan=False)
    json.dumps(mapped.stored_item_json, allow_nan=False)


def _map_or_reject(document: Any) -> None:
    try:
        mapped = map_item(document, PROJECT)
    except ItemValidationError as error:
        assert error.project_id == PROJECT and error.problem
        str(error)
    else:
        _assert_sane(mapped)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_maps_or_raises_item_validation_error(document):
    _map_or_reject(document)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_KNOWN_KEYS), structured_values, max_size=8))
def test_any_object_maps_or_raises_item_validation_error(document):
    _map_or_reject(document)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_map_or_raise_item_validation_error(document):
    _map_or_reject(document)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_parse_or_raise_item_validation_error(raw):
    try:
        document = parse_item_json(raw, PROJECT)
    except ItemValidationError:
        return
    assert isinstance(document, dict)
    _map_or_reject(document)


def test_epoch_milliseconds_far_in_the_past_are_rejected_not_crashing():
    document = {"id": "1", "type": "mc", "cc": {"attachments": [{"fileName": "a", "uploadedDate": -(10**15)}]}}
    assert "uploadedDate must be an ISO-8601 date-time" in problem_of(document)


# ---------------------------------------------------------------------- values settled from the legacy source
# IIS = SmarterApp/AP_IMRT_ItemIngestService@0.1.46, src/main/java/org/opentestsystem/ap/imrt/iis/ (unless a path
# says otherwise); Common = SmarterApp/AP_IMRT_Common@0.1.39, src/main/java/org/opentestsystem/ap/imrt/common/ (the
# version IIS 0.1.46's build.gradle depends on). Jackson 2.8 as managed by Spring Boot 1.5.9.

LEGACY_ITEM: dict[str, Any] = {"id": "205030", "type": "mc"}


def columns_of(document: dict) -> dict[str, Any]:
    return map_item(document, PROJECT).columns


@pytest.mark.parametrize("section", ["asl", "braille", "cc", "translations"])
def test_provided_columns_of_a_missing_section_are_empty_text(section):
    # Common@0.1.39:model/BaseItem.java:103-110 default "" and IIS@0.1.46:model/ItemRevisionImpl.java:140-167 only
    # sets *_provided when the section is present
    column = "translation_provided" if section == "translations" else f"{section}_provided"
    assert columns_of(dict(LEGACY_ITEM))[column] == ""
    assert columns_of({**LEGACY_ITEM, section: None})[column] == ""


@pytest.mark.parametrize(
    ("provided", "expected"), [(True, "true"), (False, "false"), ("true", "true"), ("false", "false")]
)
def test_provided_columns_hold_the_boolean_as_text(provided, expected):
    # IIS@0.1.46:model/ItemRevisionImpl.java:142 String.valueOf(item.getAsl().isAslProvided())
    assert columns_of({**LEGACY_ITEM, "asl": {"isAslProvided": provided}})["asl_provided"] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("205030", 205030), ("+5", 5), ("0", 0), ("-5", -5), ("007", 7), (205030, 205030), ("2147483647", 2**31 - 1)],
)
def test_ids_are_java_integer_value_of_the_text(value, expected):
    # IIS@0.1.46:model/ItemRevisionImpl.java:282-287 Integer.valueOf(id); a JSON integer reaches it as its text
    assert map_item({**LEGACY_ITEM, "id": value}, PROJECT).item_id == expected


@pytest.mark.parametrize("value", [" 5", "5 ", "5.0", 5.0, "1e3", "0x10", "2147483648", "", "\u0665"])
def test_ids_java_integer_value_of_rejects(value):
    # IIS@0.1.46:model/ItemRevisionImpl.java:284-286 NumberFormatException → "The id is not a number ..."
    # ("" is reported as a missing id; Java's non-ASCII digits are refused on purpose: docs/legacy-differences.md)
    problem = problem_of({**LEGACY_ITEM, "id": value})
    assert problem.startswith(ID_NOT_A_NUMBER) or problem == "id is missing"


@pytest.mark.parametrize(("value", "expected"), [("+99", 99), ("0", 0), ("-3", -3), (99, 99), ("", None), (None, None)])
def test_stimulus_id_like_the_item_id_and_empty_means_none(value, expected):
    # IIS@0.1.46:model/ItemRevisionImpl.java:74-77 isEmpty(stimulusId) → none, else convertItemId (line 282)
    document = {**LEGACY_ITEM, "core": {"stimulusId": value}}
    assert columns_of(document)["associated_stimulus_id"] == expected


@pytest.mark.parametrize("value", [" 99", "99.0", 99.5, "abc"])
def test_stimulus_id_that_is_not_a_number_fails_the_item(value):
    # IIS@0.1.46:model/ItemRevisionImpl.java:76 convertItemId throws → the item is not ingested
    assert problem_of({**LEGACY_ITEM, "core": {"stimulusId": value}}).startswith("core.stimulusId must be")


def administered(quintile: Any, *, field_test_id: Any = "1.sss", administration_ids: tuple = ("1.sss",)) -> dict:
    administrations = [
        {"administrationId": a, "fieldTestData": {"itemDifficultyQuintile": quintile}, "forms": []}
        for a in administration_ids
    ]
    testing = {"fieldTestAdministrationId": field_test_id, "administrations": administrations}
    return {**LEGACY_ITEM, "core": {"testAdministration": testing}}


@pytest.mark.parametrize(
    ("quintile", "expected"),
    [
        ("2", 2),
        (2, 2),
        ("-1", -1),
        ("007", 7),
        ("+2", None),
        (" 2", None),
        ("2.0", None),
        (2.0, None),
        ("two", None),
        ("", None),
        ("  ", None),
        (True, None),
        ("99999999999", None),
    ],
)
def test_difficulty_quintile_is_guava_ints_try_parse_and_never_fails_the_item(quintile, expected):
    # IIS@0.1.46:model/ItemRevisionImpl.java:258-259 isNotBlank(q) then Ints.tryParse(q): null when not a number
    assert columns_of(administered(quintile))["item_difficulty_quintile"] == expected


def test_difficulty_quintile_of_the_last_matching_administration():
    # IIS@0.1.46:model/ItemRevisionImpl.java:233-236: the loop keeps the last administration that matches
    document = administered("3", administration_ids=("1.sss", "1.sss"))
    document["core"]["testAdministration"]["administrations"][1]["fieldTestData"]["itemDifficultyQuintile"] = "4"
    assert columns_of(document)["item_difficulty_quintile"] == 4


def test_difficulty_quintile_null_field_test_id_matches_a_null_administration_id():
    # IIS@0.1.46:model/ItemRevisionImpl.java:234 StringUtils.equals(null, null) is true
    assert (
        columns_of(administered("5", field_test_id=None, administration_ids=(None,)))["item_difficulty_quintile"] == 5
    )
    assert columns_of(administered("5", field_test_id=None))["item_difficulty_quintile"] is None


def test_difficulty_quintile_of_a_match_without_field_test_data_is_null_where_legacy_threw():
    # IIS@0.1.46:model/ItemRevisionImpl.java:235 Optional.of(null) threw: a hazard (docs/legacy-differences.md)
    document = administered("5")
    document["core"]["testAdministration"]["administrations"][0]["fieldTestData"] = None
    assert columns_of(document)["item_difficulty_quintile"] is None


@pytest.mark.parametrize(("exposures", "expected"), [(7, 7), ("7", 7), ("+7", 7), (" 7 ", 7), ("", None), (7.0, 7)])
def test_exposures_are_a_jackson_integer(exposures, expected):
    # ap-common Form.exposures is an Integer (IIS@0.1.46:model/ItemRevisionImpl.java:239-247); Jackson 2.8 trims
    # numeric strings, takes "" as null and integral floats (ACCEPT_FLOAT_AS_INT)
    document = administered("1")
    document["core"]["testAdministration"]["administrations"][0]["forms"] = [{"exposures": exposures}]
    assert map_item(document, PROJECT).forms[0]["exposures"] == expected


def test_exposures_with_a_fraction_fail_where_jackson_truncated():
    # Jackson ACCEPT_FLOAT_AS_INT truncated 7.5 to 7 (into IIS@0.1.46:model/ItemRevisionImpl.java:239-247): a hazard
    document = administered("1")
    document["core"]["testAdministration"]["administrations"][0]["forms"] = [{"exposures": 7.5}]
    assert "exposures must be an integer" in problem_of(document)


@pytest.mark.parametrize(("value", "expected"), [(5, "5"), (True, "true"), ("5", "5")])
def test_scalars_in_text_fields_become_their_json_text(value, expected):
    # Jackson StringDeserializer: a scalar token becomes its text (into IIS@0.1.46:model/ItemRevisionImpl.java:104)
    assert columns_of({**LEGACY_ITEM, "core": {"metadata": {"intendedGrade": value}}})["grade"] == expected


@pytest.mark.parametrize(("text", "expected"), [("5.0", "5.0"), ("1e2", "1e2"), ("0.10", "0.10")])
def test_fractional_numbers_in_text_fields_keep_their_json_spelling(text, expected):
    # Jackson's parser gives a String field the number's text as written (into ItemRevisionImpl.java:104)
    raw = json.dumps({**LEGACY_ITEM, "core": {"metadata": {"intendedGrade": "X"}}}).replace('"X"', text).encode()
    assert columns_of(parse_item_json(raw, PROJECT))["grade"] == expected


def test_grade_and_targets_are_read_from_the_0_1_46_model_names():
    # IIS@0.1.46:model/ItemRevisionImpl.java:104, :191 read getIntendedGrade()/getPrimaryTarget(); commit 90379de
    # renamed them, and IIS@0.1.46:src/test/resources/json/item-with-duplicate-asl-filenames.json:45 (and the
    # *Target keys there) is what that model wrote. The old names are unknown properties, ignored.
    metadata = {"intendedGrade": "8", "primaryTarget": "E", "grade": "3", "primaryAssessmentTarget": "Z"}
    columns = columns_of({**LEGACY_ITEM, "core": {"metadata": metadata}})
    assert (columns["grade"], columns["primary_target"]) == ("8", "E")
    old_only = columns_of({**LEGACY_ITEM, "core": {"metadata": {"grade": "3", "primaryAssessmentTarget": "Z"}}})
    assert (old_only["grade"], old_only["primary_target"]) == ("", "")


def test_organisation_and_author_json_names():
    # IIS@0.1.46:src/test/resources/json/good-item-with-org-fields.json:55,57 asserted by
    # src/test/java/org/opentestsystem/ap/imrt/iis/service/ItemRevisionImplTest.java:301-307; itemAuthor:
    # src/test/resources/json/math-all-standard-ids.json:113 compared by ItemRevisionImplTest.java:481
    metadata = {"organizationTypeId": "smarterBalanced", "organizationName": "SB", "itemAuthor": "An User"}
    columns = columns_of({**LEGACY_ITEM, "core": {"metadata": metadata}})
    assert (columns["organization_type_id"], columns["organization_name"], columns["item_author"]) == (
        "smarterBalanced",
        "SB",
        "An User",
    )


def test_duplicate_attachments_keep_the_first_occurrence_and_its_date():
    # IIS@0.1.46:model/ItemRevisionImpl.java:303-307 Collectors.toSet(); Common@0.1.39:model/Attachment.java:62-79
    # equal on the key (item, fileName, fileType): HashSet.add keeps the element already there
    files = [
        {"fileName": "a.mp4", "uploadedDate": "2018-05-18T20:42:26.907Z"},
        {"fileName": "a.mp4", "uploadedDate": "2018-05-18T20:42:26.929Z"},
    ]
    (row,) = map_item({**LEGACY_ITEM, "asl": {"attachments": files}}, PROJECT).attachments
    assert row["uploaded_at"] == datetime(2018, 5, 18, 20, 42, 26, 907000, tzinfo=UTC)


def test_attachment_without_uploaded_date_is_stored_with_a_null_date_where_legacy_threw():
    # IIS@0.1.46:model/ItemRevisionImpl.java:305 attachment.getUploadedDate().toInstant() threw: a hazard
    (row,) = map_item({**LEGACY_ITEM, "cc": {"attachments": [{"fileName": "a.vtt"}]}}, PROJECT).attachments
    assert row["uploaded_at"] is None


# ------------------------------------------------------------------------------ item_json: the model written back
# The search service reads item_json into the ap-common model with a default ObjectMapper (unknown properties fail):
# the column holds the document as the legacy model wrote it back (docs/legacy-differences.md, "item_json"). The
# model's properties come from item.json files the model wrote (IIS@0.1.46 src/test/resources/json/):
# item-with-duplicate-asl-filenames.json (ms, iat-10: order and classes of an item), item-with-content-reqd-and-
# attachments.json (stim, iat-11.2: images, audio, cc associations) and stim.json/tutorial.json (core of a stimulus).

MODEL_METADATA = [
    "accessibilityLanguageComplexity",
    "algebraDescriptor1",
    "algebraDescriptor2",
    "allowCalculator",
    "claim2Category",
    "claim2SubCategory",
    "contentTaskModel",
    "copyrightHolder",
    "copyrightHolderOther",
    "depthOfKnowledge",
    "easyListeningFormula",
    "estimatedQuintile",
    "evidenceStatement",
    "intendedGrade",
    "itemAuthor",
    "languageFeatures",
    "maxGrade",
    "maximumPoints",
    "meaningPurpose",
    "minGrade",
    "organizationTypeId",
    "organizationName",
    "performanceTask",
    "performanceTaskPosition",
    "presentationFormat",
    "primaryClaim",
    "primaryCommonCoreStandard",
    "primaryContentDomain",
    "primaryEmphasis",
    "primaryMathematicalPractice",
    "primaryTarget",
    "primaryTargetSet",
    "quaternaryClaim",
    "quaternaryCommonCoreStandard",
    "quaternaryContentDomain",
    "quaternaryMathematicalPractice",
    "quaternaryTarget",
    "readabilityFleschKincaid",
    "readabilityLexile",
    "scoringEngine",
    "scorePoints",
    "secondaryMathematicalPractice",
    "secondaryClaim",
    "secondaryCommonCoreStandard",
    "secondaryContentDomain",
    "secondaryTarget",
    "specificationVersion",
    "stimulusFormat",
    "stimulusGenre",
    "stimulusLength",
    "stimulusName",
    "stimulusLiteraryCategory",
    "stimulusLiteraryKnowledgeDemands",
    "structure",
    "subject",
    "tertiaryMathematicalPractice",
    "tertiaryClaim",
    "tertiaryCommonCoreStandard",
    "tertiaryContentDomain",
    "tertiaryTarget",
    "testCategory",
    "version",
    "wordCount",
    "writingPurpose",
]
"""core.metadata as item-with-duplicate-asl-filenames.json has it, in its order."""


def model_file(name: str | None, uploaded: str | None) -> dict:
    return {"fileName": name, "uploadedDate": uploaded}


def model_content(**content: Any) -> dict:
    return {
        **content,
        "updatedDate": "2018-05-18T20:42:19.246Z",
        "isRequired": "true",
        "isManagedByIat": True,
        "isProvided": True,
    }


MODEL_WRITTEN_ITEM: dict[str, Any] = {
    "id": "46879",
    "type": "ms",
    "version": "iat-10",
    "core": {
        "stimulusId": None,
        "tutorialId": "67775",
        "enemyItems": [],
        "testAdministration": None,  # not in the iat-10 file; read by IIS 0.1.46 (model/ItemRevisionImpl.java:216)
        "metadata": dict.fromkeys(MODEL_METADATA, "") | {"presentationFormat": [], "primaryEmphasis": None},
        "scoring": {"rubric": "", "defaultScore": 0, "variables": [], "rules": []},
        "en": model_content(
            prompt="<p>Thomas bakes specialty cakes.</p>",
            options=[{"rationale": "<p>&#xA0;</p>", "text": "<p>a cylinder</p>", "isCorrectAnswer": True}],
        ),
        "attachments": [],
    },
    "asl": {
        "attachments": [model_file("item_46879_ASL_STEM.mp4", "2018-05-18T20:42:26.907Z")],
        "isAslRequired": "undetermined",
        "isAslProvided": False,
    },
    "braille": {
        "attachments": [model_file("item_46879_enu_nemeth.brf", "2018-05-18T20:42:26.906Z")],
        "isBrailleRequired": "undetermined",
        "isBrailleProvided": False,
    },
    "cc": {
        "attachments": [model_file("passage_205679_v2_2014_Audio1.vtt", "2018-05-25T20:55:27.000Z")],
        "isCcRequired": "true",
        "isCcProvided": False,
        "itemCcAudioAssociations": [{"audioResourceId": "1", "ccFileName": "passage_205679_v2_2014_Audio1.vtt"}],
    },
    "images": {
        "imageResources": [
            {
                "concept": "",
                "conceptFile": model_file(None, None),
                "id": "1",
                "isProductionFileProvided": True,
                "productionFile": model_file("item_205679_masks.jpg", "2018-05-25T20:52:08.000Z"),
            }
        ]
    },
    "audio": {
        "audioResources": [
            {
                "id": "1",
                "isProductionFilesProvided": True,
                "productionFiles": [model_file("passage_205679_v6_stim_audio1.ogg", "2018-05-25T20:54:53.000Z")],
                "transcriptFile": model_file(None, None),
            }
        ]
    },
    "textToSpeech": {"isVisualTTSRequired": "undetermined", "isVisualTTSProvided": False, "isSightTTSProvided": False},
    "workflow": {"workflowStatusCode": "ParkingLot"},
    "translations": {
        "esp": model_content(
            prompt="<p>Thomas hace pasteles.</p>",
            options=[{"rationale": "<p>&#xA0;</p>", "text": "<p>un cilindro</p>", "isCorrectAnswer": True}],
        )
    },
}
"""An item in the shape the model wrote it (item-with-duplicate-asl-filenames.json, abridged)."""

MODEL_WRITTEN_STIMULUS_CORE = {
    "en": model_content(content="<p>Passage</p>"),
    "metadata": MODEL_WRITTEN_ITEM["core"]["metadata"],
    "attachments": [],
}
"""A stimulus core: en, metadata, attachments (stim.json's order; item-with-content-reqd-and-attachments.json)."""

CONTENT_KNOWN = {"mc": "choice", "ms": "choice", "stim": "passage", "tut": "passage"}
"""Item types whose content class item.json files of the model show; other types keep their content as written."""


def stored(document: dict) -> dict:
    return map_item(copy.deepcopy(document), PROJECT).stored_item_json


def dumped(value: Any) -> str:
    """JSON text, keys in the order written: equal texts mean equal documents with equal property order."""
    return json.dumps(value, ensure_ascii=False)


def test_the_models_own_output_is_written_back_as_it_was():
    assert dumped(stored(MODEL_WRITTEN_ITEM)) == dumped(MODEL_WRITTEN_ITEM)


def test_a_stimulus_core_has_the_stimulus_properties_in_the_models_order():
    document = {**MODEL_WRITTEN_ITEM, "type": "stim", "core": MODEL_WRITTEN_STIMULUS_CORE}
    document["translations"] = {"esp": model_content(content="<p>Pasaje</p>")}

    assert dumped(stored(document)) == dumped(document)


def model_shape(item_type: str) -> dict[str, list[str]]:
    """The properties of every object of the model an item of ``item_type`` has, by path (``[]``: every element)."""
    core = MODEL_WRITTEN_STIMULUS_CORE if item_type in ("stim", "tut") else MODEL_WRITTEN_ITEM["core"]
    shape = object_shapes({**MODEL_WRITTEN_ITEM, "core": core})
    shape["core.testAdministration"] = ["fieldTestAdministrationId", "administrations"]
    shape["core.testAdministration.administrations[]"] = [
        "administrationId", "itemVersion", "timeframe", "fieldTestData", "forms"
    ]  # fmt: skip
    shape["core.testAdministration.administrations[].fieldTestData"] = ["itemDifficultyQuintile"]
    shape["core.testAdministration.administrations[].forms[]"] = [
        "assessmentType", "exposures", "formId", "formType", "sequence", "status"
    ]  # fmt: skip
    if CONTENT_KNOWN.get(item_type) == "passage":
        for content in ("core.en", "translations.esp"):
            shape[content] = ["content", "updatedDate", "isRequired", "isManagedByIat", "isProvided"]
            shape.pop(f"{content}.options[]", None)
    elif item_type not in CONTENT_KNOWN:
        for path in [path for path in shape if path.startswith(("core.en", "translations.esp"))]:
            del shape[path]
    return shape


def object_shapes(value: Any, path: str = "") -> dict[str, list[str]]:
    """The property names of every object in ``value``, by path; a list's elements are all ``path[]``."""
    shapes: dict[str, list[str]] = {}
    if isinstance(value, dict):
        shapes[path] = list(value)
        for name, child in value.items():
            shapes.update(object_shapes(child, f"{path}.{name}" if path else name))
    elif isinstance(value, list):
        for element in value:
            shapes.update(object_shapes(element, f"{path}[]"))
    return shapes


GENERATED = [(item_type, seed) for item_type in ALL_TYPES for seed in range(12)]


@pytest.mark.parametrize(("item_type", "seed"), GENERATED)
def test_generated_items_are_stored_with_exactly_the_models_properties(item_type, seed):
    """Every object of the model in the stored JSON has the model's properties in its order, and no other."""
    document = make_item_document(str(205000 + seed), item_type, test_administration=seed % 2 == 0, cc=seed % 3 == 0)
    shape = model_shape(item_type)

    for path, properties in object_shapes(stored(document)).items():
        if path in shape:
            assert properties == shape[path], path
        else:  # inside a value the model keeps as written: the content of a type the evidence does not show
            assert path.startswith(("core.en", "translations.esp", "core.scoring.", "core.attachments")), path
            assert item_type not in CONTENT_KNOWN or path.startswith(("core.scoring.", "core.attachments")), path


def test_properties_the_model_does_not_have_are_dropped():
    document = make_item_document("205001", "mc", cc=True)
    metadata = document["core"]["metadata"]
    assert {"grade", "primaryAssessmentTarget", "intendedGrade", "primaryTarget"} <= set(metadata)  # both spellings
    document["unknownTopLevel"] = {"kept": False}

    written = stored(document)

    assert "unknownTopLevel" not in written
    assert written["core"]["metadata"]["intendedGrade"] == metadata["intendedGrade"]
    assert written["core"]["metadata"]["primaryTarget"] == metadata["primaryTarget"]
    assert not {"grade", "primaryAssessmentTarget", "secondaryAssessmentTarget"} & set(written["core"]["metadata"])
    # the generator's association names the audio file; the model's names the audio resource
    assert written["cc"]["itemCcAudioAssociations"] == [
        {"audioResourceId": None, "ccFileName": document["cc"]["itemCcAudioAssociations"][0]["ccFileName"]}
    ]


def test_properties_the_document_lacks_are_written_as_null():
    written = stored({"id": "7", "type": "mc", "core": {"metadata": {"subject": "Math"}}})

    assert written["version"] is None and written["asl"] is None and written["workflow"] is None
    assert written["core"]["stimulusId"] is None and written["core"]["en"] is None
    assert written["core"]["metadata"]["subject"] == "Math"
    assert written["core"]["metadata"]["intendedGrade"] is None


def test_values_are_written_as_the_model_holds_them():
    document = mutated(MODEL_WRITTEN_ITEM, "id", 46879)
    document = mutated(document, "asl.isAslProvided", "true")
    document = mutated(document, "core.metadata.maxGrade", 8)
    document = mutated(document, "core.scoring.defaultScore", "2")
    document = mutated(document, "core.en.options[0].isCorrectAnswer", "false")

    written = stored(document)

    assert written["id"] == "46879"  # a String of the model
    assert written["asl"]["isAslProvided"] is True  # Jackson reads "true" into a boolean
    assert written["core"]["metadata"]["maxGrade"] == "8"
    assert written["core"]["scoring"]["defaultScore"] == 2
    assert written["core"]["en"]["options"][0]["isCorrectAnswer"] is False


@pytest.mark.parametrize(
    ("uploaded", "written"),
    [
        ("2018-05-25T20:57:45.000Z", "2018-05-25T20:57:45.000Z"),
        ("2018-05-25T20:57:45Z", "2018-05-25T20:57:45.000Z"),
        ("2018-05-25T22:57:45.123+02:00", "2018-05-25T20:57:45.123Z"),
        ("2018-05-25T20:57:45", "2018-05-25T20:57:45.000Z"),
        (1527281865000, "2018-05-25T20:57:45.000Z"),
        (None, None),
        ("", None),
    ],
)
def test_dates_are_written_as_the_model_wrote_them(uploaded, written):
    """UTC with milliseconds and ``Z``, as in every item.json the model wrote."""
    document = mutated(MODEL_WRITTEN_ITEM, "asl.attachments[0].uploadedDate", uploaded)
    document = mutated(document, "core.en.updatedDate", uploaded)

    result = stored(document)

    assert result["asl"]["attachments"][0]["uploadedDate"] == written
    assert result["core"]["en"]["updatedDate"] == written


def test_content_of_a_type_the_evidence_does_not_show_is_kept_as_written():
    document = make_item_document("205002", "ebsr")

    assert stored(document)["core"]["en"] == document["core"]["en"]


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("version", {"v": 1}, "version must be a string or null, got object"),
        ("core.enemyItems", "205031", "core.enemyItems must be an array or null, got string"),
        ("core.enemyItems[0]", ["x"], "core.enemyItems[0] must be a string or null, got list"),
        ("core.en", [], "core.en must be an object or null, got list"),
        ("core.en.options[0].isCorrectAnswer", "yes", "core.en.options[0].isCorrectAnswer must be a boolean or null, got string 'yes'"),
        ("core.scoring.defaultScore", 1.5, "core.scoring.defaultScore must be an integer, a numeric string or null, got number 1.5"),
        ("images.imageResources[0].productionFile.uploadedDate", "soon", "images.imageResources[0].productionFile.uploadedDate must be an ISO-8601 date-time, got string 'soon'"),
        ("translations.esp.options", {}, "translations.esp.options must be an array or null, got object"),
    ],
)  # fmt: skip
def test_a_value_the_model_cannot_read_fails_the_item_as_the_legacy_parse_did(path, value, problem):
    document = mutated(MODEL_WRITTEN_ITEM, "core.enemyItems", ["205031"])

    assert problem_of(mutated(document, path, value)) == problem


def test_legacy_item_json_is_the_stored_value():
    assert legacy_item_json(copy.deepcopy(MODEL_WRITTEN_ITEM), "ms") == stored(MODEL_WRITTEN_ITEM)
