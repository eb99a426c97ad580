"""``item.json`` → rows of ``item``, ``item_attachment`` and ``item_form``, as legacy tag 0.1.46 mapped it
(``IIS:model/ItemRevisionImpl.java``; the sources are named below and in docs/legacy-differences.md).

Two steps, both pure (no I/O):

* :func:`parse_item_json` turns the raw bytes of ``item.json`` into a JSON object;
* :func:`map_item` turns that object into a :class:`MappedItem`: the ``item`` columns the mapping owns, the
  attachment rows and the form rows.

Everything wrong with the content raises :class:`~imrt_sync.errors.ItemValidationError` (a permanent per-item
error) whose problem names the JSON path, e.g. ``core.metadata.grade must be a string or null, got list``.
A missing field and an explicit ``null`` are treated alike everywhere. Unknown fields are allowed; the ``item_json``
column gets the document as the legacy model wrote it back (:func:`legacy_item_json`): the model's properties only.

Leniency follows what the legacy service accepted at tag 0.1.46 (ap-common ``Item`` read by Jackson 2.8;
``ItemRevisionImpl`` for the columns). How one JSON value becomes a column (Java ``Integer.valueOf`` ids, Jackson's
text of scalars, Guava ``Ints.tryParse`` quintiles, string booleans, dates) is :mod:`imrt_sync.legacy_values`; this
module knows where the values are and which rows they make. Each rule cites its source as ``IIS:<path>:<line>``
(SmarterApp/AP_IMRT_ItemIngestService@0.1.46) or ``Common:<path>:<line>`` (SmarterApp/AP_IMRT_Common@0.1.39).

Where the legacy behaviour was a hazard the safer choice is kept; ``docs/legacy-differences.md`` lists them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imrt_sync.config import SyncSettings, field_defaults
from imrt_sync.errors import ItemValidationError
from imrt_sync.legacy_values import (
    INT4_MAX,
    INT4_MIN,
    JAVA_SIGNED_DIGITS,
    InvalidValue,
    JsonFloat,
    boolean_as_text,
    boolean_or_none,
    describe_json_value,
    guava_int_or_none,
    integer_or_none,
    jackson_string,
    java_integer_value_of,
    json_kind,
    model_date,
    model_text,
    shorten,
    storable_text,
    text_or_empty,
    text_or_none,
    timestamp_or_none,
)

__all__ = ["MAPPED_PATHS", "MAX_ITEM_JSON_BYTES", "MappedItem", "legacy_item_json", "map_item", "parse_item_json"]

MAX_ITEM_JSON_BYTES = field_defaults(SyncSettings)["max_item_json_bytes"]
"""Largest ``item.json`` accepted by :func:`parse_item_json` (bytes): ``SyncSettings.max_item_json_bytes``'s default."""

STIMULUS_TYPE = "stim"
ATTACHMENT_TYPES = ("asl", "braille", "cc")
"""The ``item_attachment.file_type`` values, each also the top-level section of item.json it comes from."""

ID_NOT_A_NUMBER = "The id is not a number and cannot be ingested into the system"
"""The legacy text for a non-numeric ``id``."""


@dataclass(frozen=True)
class MappedItem:
    """One ``item.json`` mapped to rows.

    ``columns`` holds every ``item`` column the mapping owns: all of them except ``key``, ``item_json`` and the
    audit/history columns (``created_at``, ``updated_at``, ``updated_by``, ``item_created_by``,
    ``item_created_at``, ``workflow_status_set_at``, ``is_being_created``), which depend on the commit and on
    the existing row.
    """

    item_id: int
    item_type: str
    is_stimulus: bool
    columns: dict[str, Any]
    item_json: dict[str, Any]
    """The parsed ``item.json``, as read (unknown fields included)."""
    stored_item_json: dict[str, Any]
    """The ``item_json`` column: the document as the legacy model wrote it back (:func:`legacy_item_json`)."""
    stimulus_id: int | None
    """``core.stimulusId`` as int for non-stimulus items, else None (same as ``columns["associated_stimulus_id"]``)."""
    attachments: tuple[dict[str, Any], ...]
    """``{"file_name", "file_type", "uploaded_at"}``, unique on (file_name, file_type)."""
    forms: tuple[dict[str, Any], ...]
    """``{"assessment_type", "form_id", "form_type", "exposures"}``, one per form of every administration."""


# --------------------------------------------------------------------------------------------------- parsing


def parse_item_json(raw: bytes, project_id: int, *, max_bytes: int = MAX_ITEM_JSON_BYTES) -> dict:
    """Parse the raw bytes of ``item.json`` (UTF-8 JSON, an object at the top level).

    Raises :class:`ItemValidationError` when the file is larger than ``max_bytes``, not UTF-8, not JSON (including
    ``NaN``/``Infinity`` and numbers out of the float range, which PostgreSQL's ``json`` rejects) or not an object.
    A leading UTF-8 byte order mark is ignored.
    """
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError(f"item.json must be given as bytes, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise ItemValidationError(
            project_id, f"item.json is {len(raw)} bytes, larger than the limit of {max_bytes} bytes"
        )
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ItemValidationError(
            project_id, f"item.json is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    document = _loads(text.removeprefix("\ufeff"), project_id)
    if not isinstance(document, dict):
        raise ItemValidationError(project_id, f"item.json must be a JSON object, got {json_kind(document)}")
    return document


def _loads(text: str, project_id: int) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        problem = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except InvalidValue as exc:
        problem = exc.problem
    except RecursionError:
        problem = "it is nested too deeply"
    except ValueError as exc:  # e.g. an integer with more digits than int() accepts
        problem = str(exc)
    raise ItemValidationError(project_id, f"item.json is not valid JSON: {problem}")


def _reject_constant(name: str) -> Any:
    raise InvalidValue(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = JsonFloat(text)
    if not math.isfinite(value):
        raise InvalidValue(f"the number {shorten(text)} is out of range")
    return value


# --------------------------------------------------------------------------------------------------- mapping


def map_item(document: dict, project_id: int) -> MappedItem:
    """Map a parsed ``item.json`` to rows. Raises :class:`ItemValidationError` and nothing else for bad content."""
    if not isinstance(document, dict):
        raise ItemValidationError(project_id, f"item.json must be a JSON object, got {json_kind(document)}")
    try:
        item_id = _item_id(document.get("id"))
    except InvalidValue as exc:
        raise ItemValidationError(project_id, exc.problem) from None
    try:
        return _map_document(document, item_id)
    except InvalidValue as exc:
        raise ItemValidationError(project_id, exc.problem, str(item_id)) from None


def _map_document(document: dict, item_id: int) -> MappedItem:
    item_type = _item_type(document.get("type"))
    is_stimulus = item_type == STIMULUS_TYPE
    stimulus_id = None if is_stimulus else _stimulus_id(document)
    administrations = _administrations(document)
    forms = tuple(form for administration in administrations for form in administration.forms)

    columns: dict[str, Any] = {
        "id": item_id,
        "item_type": item_type,
        "classification": "stim" if is_stimulus else "item",
        "associated_stimulus_id": stimulus_id,
    }
    columns.update(_field_columns(document))
    columns.update(_test_administration_columns(document, administrations, forms))
    _check_storable(document)
    attachments = _attachments(document)
    return MappedItem(
        item_id=item_id,
        item_type=item_type,
        is_stimulus=is_stimulus,
        columns=columns,
        item_json=document,
        stored_item_json=legacy_item_json(document, item_type),
        stimulus_id=stimulus_id,
        attachments=attachments,
        forms=forms,
    )


def _item_id(value: Any) -> int:
    """``Integer.valueOf(item.getId())`` (IIS model/ItemRevisionImpl.java:90, :282-287) of the JSON text."""
    if value is None or value == "":
        raise InvalidValue("id is missing")
    if isinstance(value, (dict, list)):
        raise InvalidValue(f"id must be a string or an integer, got {json_kind(value)}")
    number = java_integer_value_of(jackson_string(value))
    if number is None:
        raise InvalidValue(f"{ID_NOT_A_NUMBER}: {shorten(jackson_string(value))!r}")
    return number


def _item_type(value: Any) -> str:
    if value is None or value == "":
        raise InvalidValue("type is missing")
    if not isinstance(value, str):
        raise InvalidValue(f"type must be a non-empty string, got {json_kind(value)}")
    return storable_text(value, "type")


def _stimulus_id(document: dict) -> int | None:
    """Null or ``""`` → no stimulus (Spring ``StringUtils.isEmpty``, IIS model/ItemRevisionImpl.java:74-77); else an id
    read like ``id``: one that is not a number fails the item, as it did in the legacy service."""
    path = "core.stimulusId"
    value = _lookup(document, ("core", "stimulusId"))
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        raise InvalidValue(f"{path} must be a numeric id or null, got {json_kind(value)}")
    text = jackson_string(value)
    number = java_integer_value_of(text)
    if number is None:
        if JAVA_SIGNED_DIGITS.fullmatch(text):
            raise InvalidValue(f"{path} must fit a 32-bit integer, got {shorten(text)}")
        raise InvalidValue(f"{path} must be a numeric id or null, got {describe_json_value(value)}")
    return number


# ------------------------------------------------------------------------------------------ field table

_Converter = Callable[[Any, str], Any]

_METADATA_PATH = ("core", "metadata")
_ORDINALS = ("primary", "secondary", "tertiary", "quaternary")
_STANDARD_FIELDS = (
    ("claim", "Claim"),
    ("content_domain", "ContentDomain"),
    ("common_core_standard", "CommonCoreStandard"),
    ("target", "Target"),
)
"""``{ordinal}_{column}`` ← ``core.metadata.{ordinal}{field}``. The model property is ``primaryTarget`` (renamed
from ``primaryAssessmentTarget`` in IIS 90379de, 2018-04-24, "Use the latest IAT common so we can continue to
ingest items"); the item.json the 0.1.46-era model wrote says ``"primaryTarget"``
(IIS src/test/resources/json/item-with-duplicate-asl-filenames.json at 0.1.46). The old name is ignored."""

FIELD_COLUMNS: tuple[tuple[str, tuple[str, ...], _Converter], ...] = (
    ("workflow_status", ("workflow", "workflowStatusCode"), text_or_empty),
    ("subject", (*_METADATA_PATH, "subject"), text_or_empty),
    # ItemRevisionImpl.java:104 reads getIntendedGrade(); JSON "intendedGrade" since IIS 90379de (see _STANDARD_FIELDS)
    ("grade", (*_METADATA_PATH, "intendedGrade"), text_or_empty),
    ("dok", (*_METADATA_PATH, "depthOfKnowledge"), text_or_empty),
    # JSON names: IIS src/test/resources/json/good-item-with-org-fields.json:55,57, asserted by
    # src/test/java/.../service/ItemRevisionImplTest.java:301-307 (IIS@0.1.46)
    ("organization_type_id", (*_METADATA_PATH, "organizationTypeId"), text_or_empty),
    ("organization_name", (*_METADATA_PATH, "organizationName"), text_or_empty),
    ("content_task_model", (*_METADATA_PATH, "contentTaskModel"), text_or_empty),
    ("performance_task", (*_METADATA_PATH, "performanceTask"), text_or_empty),
    ("writing_purpose", (*_METADATA_PATH, "writingPurpose"), text_or_empty),
    # JSON name: IIS src/test/resources/json/math-all-standard-ids.json:113, compared by ItemRevisionImplTest.java:481
    ("item_author", (*_METADATA_PATH, "itemAuthor"), text_or_empty),
    *(
        (f"{ordinal}_{column}", (*_METADATA_PATH, f"{ordinal}{field}"), text_or_empty)
        for ordinal in _ORDINALS
        for column, field in _STANDARD_FIELDS
    ),
    ("asl_required", ("asl", "isAslRequired"), text_or_empty),
    ("asl_provided", ("asl", "isAslProvided"), boolean_as_text),
    ("braille_required", ("braille", "isBrailleRequired"), text_or_empty),
    ("braille_provided", ("braille", "isBrailleProvided"), boolean_as_text),
    ("cc_required", ("cc", "isCcRequired"), text_or_empty),
    ("cc_provided", ("cc", "isCcProvided"), boolean_as_text),
    ("translation_required", ("translations", "esp", "isRequired"), text_or_empty),
    ("translation_provided", ("translations", "esp", "isProvided"), boolean_as_text),
    ("visual_tts_required", ("textToSpeech", "isVisualTTSRequired"), text_or_empty),
    ("visual_tts_provided", ("textToSpeech", "isVisualTTSProvided"), boolean_or_none),
    ("sight_tts_provided", ("textToSpeech", "isSightTTSProvided"), boolean_or_none),
)
"""``item`` column ← JSON path ← converter, for every column read from one field."""


_FORM_TEXT_FIELDS = (("assessment_type", "assessmentType"), ("form_id", "formId"), ("form_type", "formType"))
"""``item_form`` column ← field of ``forms[]`` (besides ``exposures``)."""

_ADMINISTRATIONS = "core.testAdministration.administrations[]"

MAPPED_PATHS: frozenset[str] = frozenset(
    {
        "id",
        "type",
        "core.stimulusId",
        *(".".join(path) for _, path, _ in FIELD_COLUMNS),
        *(f"{kind}.attachments[].{field}" for kind in ATTACHMENT_TYPES for field in ("fileName", "uploadedDate")),
        "core.testAdministration.fieldTestAdministrationId",
        f"{_ADMINISTRATIONS}.administrationId",
        f"{_ADMINISTRATIONS}.fieldTestData.itemDifficultyQuintile",
        *(f"{_ADMINISTRATIONS}.forms[].{field}" for field in (*(f for _, f in _FORM_TEXT_FIELDS), "exposures")),
    }
)
"""Every JSON path the mapping reads a value from (``[]`` stands for every element of an array)."""


def _field_columns(document: dict) -> dict[str, Any]:
    return {column: convert(_lookup(document, path), ".".join(path)) for column, path, convert in FIELD_COLUMNS}


# -------------------------------------------------------------------------------------------- attachments


def _attachments(document: dict) -> tuple[dict[str, Any], ...]:
    """``{asl,braille,cc}.attachments[]`` de-duplicated on (file_name, file_type): the first occurrence wins.

    Legacy: ``Collectors.toSet()`` (IIS model/ItemRevisionImpl.java:303-307) of attachments equal on their key
    (Common model/Attachment.java:62-79, AttachmentKey.java:70-81); ``HashSet.add`` keeps the element already there.
    """
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for file_type in ATTACHMENT_TYPES:
        path = f"{file_type}.attachments"
        for index, element in enumerate(_array(_lookup(document, (file_type, "attachments")), path)):
            row = _attachment(element, f"{path}[{index}]", file_type)
            chosen.setdefault((row["file_name"], file_type), row)
    return tuple(chosen.values())


def _attachment(element: Any, path: str, file_type: str) -> dict[str, Any]:
    element = _element(element, path)
    file_name = element.get("fileName")
    if not isinstance(file_name, str) or file_name == "":
        raise InvalidValue(f"{path}.fileName must be a non-empty string, got {describe_json_value(file_name)}")
    return {
        "file_name": storable_text(file_name, f"{path}.fileName"),
        "file_type": file_type,
        # No uploadedDate: NULL. Legacy threw a NullPointerException (ItemRevisionImpl.java:305): a hazard.
        "uploaded_at": timestamp_or_none(element.get("uploadedDate"), f"{path}.uploadedDate"),
    }


# -------------------------------------------------------------------------------------- test administration


@dataclass(frozen=True)
class _Administration:
    administration_id: str | None
    has_field_test_data: bool
    quintile: int | None
    forms: tuple[dict[str, Any], ...]


def _administrations(document: dict) -> list[_Administration]:
    path = "core.testAdministration.administrations"
    elements = _array(_lookup(document, ("core", "testAdministration", "administrations")), path)
    administrations = []
    for index, element in enumerate(elements):
        element_path = f"{path}[{index}]"
        raw = _element(element, element_path)
        data_path = f"{element_path}.fieldTestData"
        field_test_data = _object(raw.get("fieldTestData"), data_path)
        administrations.append(
            _Administration(
                administration_id=text_or_none(raw.get("administrationId"), f"{element_path}.administrationId"),
                has_field_test_data=field_test_data is not None,
                quintile=None
                if field_test_data is None
                else guava_int_or_none(
                    field_test_data.get("itemDifficultyQuintile"), f"{data_path}.itemDifficultyQuintile"
                ),
                forms=_forms(raw, element_path),
            )
        )
    return administrations


def _forms(administration: Mapping[str, Any], administration_path: str) -> tuple[dict[str, Any], ...]:
    path = f"{administration_path}.forms"
    forms = []
    for index, element in enumerate(_array(administration.get("forms"), path)):
        form_path = f"{path}[{index}]"
        form = _element(element, form_path)
        row: dict[str, str | int | None] = {
            column: text_or_none(form.get(field), f"{form_path}.{field}") for column, field in _FORM_TEXT_FIELDS
        }
        row["exposures"] = integer_or_none(form.get("exposures"), f"{form_path}.exposures")
        forms.append(row)
    return tuple(forms)


def _test_administration_columns(
    document: dict, administrations: list[_Administration], forms: tuple[dict[str, Any], ...]
) -> dict[str, int | None]:
    if not administrations:
        return {"exposures_count": None, "form_count": None, "item_difficulty_quintile": None}
    exposures_count = sum(form["exposures"] or 0 for form in forms)
    if not INT4_MIN <= exposures_count <= INT4_MAX:
        raise InvalidValue(
            f"core.testAdministration: the exposures of all forms add up to {exposures_count}, too large for an integer"
        )
    return {
        "exposures_count": exposures_count,
        "form_count": len(forms),
        "item_difficulty_quintile": _item_difficulty_quintile(document, administrations),
    }


def _item_difficulty_quintile(document: dict, administrations: list[_Administration]) -> int | None:
    """The quintile of the last administration whose id equals ``fieldTestAdministrationId``, null equal to null.

    Legacy: ``StringUtils.equals`` in a loop that keeps the last match (IIS model/ItemRevisionImpl.java:233-236).
    A match without ``fieldTestData`` gives NULL; legacy threw (``Optional.of(null)``, line 235): a hazard.
    """
    path = "core.testAdministration.fieldTestAdministrationId"
    field_test_id = text_or_none(_lookup(document, ("core", "testAdministration", "fieldTestAdministrationId")), path)
    matching = [a for a in administrations if a.administration_id == field_test_id]
    return matching[-1].quintile if matching else None


# ----------------------------------------------------------------------- item_json: the legacy model written back
#
# The legacy service stored the ap-common ``Item`` it had read, not the file (IIS util/ItemParser.java:31,
# model/ItemRevisionImpl.java:91; Common model/BaseItem.java:74-77), and the search service reads it back into that
# model with a default Jackson ObjectMapper (unknown properties fail) on every item it loads: see
# docs/legacy-differences.md, "item_json". ap-common's source is in no repository we have, so the model below is the
# one the evidence shows (IIS@0.1.46 src/test/resources/json/, item.json files the model wrote; the getters
# ItemRevisionImpl calls): a property the evidence does not show is dropped, a value of a class the evidence does not
# show is kept as the document has it.


@dataclass(frozen=True)
class _Model:
    """A class of the model: its JSON properties in the order Jackson writes them, each with the kind of its value."""

    properties: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _ListOf:
    element: Any


def _as_written(value: Any, path: str) -> Any:
    """A value of a class the evidence does not show: kept as the document has it."""
    return value


def _object_as_written(value: Any, path: str) -> Any:
    return _object(value, path)


_TEXT, _FLAG, _INTEGER, _DATE = model_text, boolean_or_none, integer_or_none, model_date

_FILE = _Model((("fileName", _TEXT), ("uploadedDate", _DATE)))
"""ap-common ``Attachment`` (IIS model/ItemRevisionImpl.java:301-305: ``getFileName()``, a ``Date`` uploadedDate)."""

_METADATA_PROPERTIES = (
    "accessibilityLanguageComplexity", "algebraDescriptor1", "algebraDescriptor2", "allowCalculator",
    "claim2Category", "claim2SubCategory", "contentTaskModel", "copyrightHolder", "copyrightHolderOther",
    "depthOfKnowledge", "easyListeningFormula", "estimatedQuintile", "evidenceStatement", "intendedGrade",
    "itemAuthor", "languageFeatures", "maxGrade", "maximumPoints", "meaningPurpose", "minGrade",
    "organizationTypeId", "organizationName", "performanceTask", "performanceTaskPosition", "presentationFormat",
    "primaryClaim", "primaryCommonCoreStandard", "primaryContentDomain", "primaryEmphasis",
    "primaryMathematicalPractice", "primaryTarget", "primaryTargetSet", "quaternaryClaim",
    "quaternaryCommonCoreStandard", "quaternaryContentDomain", "quaternaryMathematicalPractice", "quaternaryTarget",
    "readabilityFleschKincaid", "readabilityLexile", "scoringEngine", "scorePoints",
    "secondaryMathematicalPractice", "secondaryClaim", "secondaryCommonCoreStandard", "secondaryContentDomain",
    "secondaryTarget", "specificationVersion", "stimulusFormat", "stimulusGenre", "stimulusLength", "stimulusName",
    "stimulusLiteraryCategory", "stimulusLiteraryKnowledgeDemands", "structure", "subject",
    "tertiaryMathematicalPractice", "tertiaryClaim", "tertiaryCommonCoreStandard", "tertiaryContentDomain",
    "tertiaryTarget", "testCategory", "version", "wordCount", "writingPurpose",
)  # fmt: skip
"""``ItemMetadata`` in the order the model wrote it (item-with-duplicate-asl-filenames.json, iat-10; the same set in
item-with-content-reqd-and-attachments.json, iat-11.2). Not in it: the iat-5 names ``grade``, ``{x}AssessmentTarget``,
``contentDomain``, ``calculator``, ``itemPoint``, ``knowledgeDemands``, ``passageName``, ``scoringPoints``."""

_METADATA = _Model(
    tuple(
        (name, _as_written if name in ("presentationFormat", "primaryEmphasis") else _TEXT)
        for name in _METADATA_PROPERTIES
    )
)

_TEST_ADMINISTRATION = _Model(
    (
        ("fieldTestAdministrationId", _TEXT),
        (
            "administrations",
            _ListOf(
                _Model(
                    (
                        ("administrationId", _TEXT),
                        ("itemVersion", _TEXT),
                        ("timeframe", _TEXT),
                        ("fieldTestData", _Model((("itemDifficultyQuintile", _TEXT),))),
                        (
                            "forms",
                            _ListOf(
                                _Model(
                                    (
                                        ("assessmentType", _TEXT),
                                        ("exposures", _INTEGER),
                                        ("formId", _TEXT),
                                        ("formType", _TEXT),
                                        ("sequence", _TEXT),
                                        ("status", _TEXT),
                                    )
                                )
                            ),
                        ),
                    )
                )
            ),
        ),
    )
)
"""``TestAdministration`` (IIS model/ItemRevisionImpl.java:208-262; item_with_admin_data.json)."""

_SCORING = _Model(
    (
        ("rubric", _TEXT),
        ("defaultScore", _INTEGER),
        ("variables", _ListOf(_as_written)),
        ("rules", _ListOf(_as_written)),
    )
)

_CONTENT_STATE = (("updatedDate", _DATE), ("isRequired", _TEXT), ("isManagedByIat", _FLAG), ("isProvided", _FLAG))
_CHOICE_CONTENT = _Model(
    (
        ("prompt", _TEXT),
        ("options", _ListOf(_Model((("rationale", _TEXT), ("text", _TEXT), ("isCorrectAnswer", _FLAG))))),
        *_CONTENT_STATE,
    )
)
"""``core.en`` and ``translations.esp`` of ``mc``/``ms`` items (item-with-duplicate-asl-filenames.json)."""
_PASSAGE_CONTENT = _Model((("content", _TEXT), *_CONTENT_STATE))
"""Of stimuli and tutorials (item-with-content-reqd-and-attachments.json, tutorial.json, stim.json)."""
_CONTENT_OF_TYPE = {
    "mc": _CHOICE_CONTENT,
    "ms": _CHOICE_CONTENT,
    STIMULUS_TYPE: _PASSAGE_CONTENT,
    "tut": _PASSAGE_CONTENT,
}
"""Content classes the evidence shows; the content of other types is kept as the document has it."""


def _core(passage_core: bool, content: Any) -> _Model:
    attachments = ("attachments", _ListOf(_as_written))
    if passage_core:
        # Stimuli and tutorials have a core with metadata but no stimulus (IIS model/ItemRevisionImpl.java:70-81).
        return _Model((("en", content), ("metadata", _METADATA), attachments))
    return _Model(
        (
            ("stimulusId", _TEXT),
            ("tutorialId", _TEXT),
            ("enemyItems", _ListOf(_TEXT)),
            ("testAdministration", _TEST_ADMINISTRATION),
            ("metadata", _METADATA),
            ("scoring", _SCORING),
            ("en", content),
            attachments,
        )
    )


def _accessibility(kind: str, *more: tuple[str, Any]) -> _Model:
    return _Model((("attachments", _ListOf(_FILE)), (f"is{kind}Required", _TEXT), (f"is{kind}Provided", _FLAG), *more))


_CC_AUDIO = _Model((("audioResourceId", _TEXT), ("ccFileName", _TEXT)))
_IMAGE = _Model(
    (
        ("concept", _TEXT),
        ("conceptFile", _FILE),
        ("id", _TEXT),
        ("isProductionFileProvided", _FLAG),
        ("productionFile", _FILE),
    )
)
_AUDIO = _Model(
    (
        ("id", _TEXT),
        ("isProductionFilesProvided", _FLAG),
        ("productionFiles", _ListOf(_FILE)),
        ("transcriptFile", _FILE),
    )
)


def _item_model(item_type: str) -> _Model:
    content = _CONTENT_OF_TYPE.get(item_type, _object_as_written)
    return _item_model_of(item_type in (STIMULUS_TYPE, "tut"), content)


@functools.cache
def _item_model_of(passage_core: bool, content: Any) -> _Model:
    """``Item`` with its core and content, properties in the order the model wrote them
    (item-with-duplicate-asl-filenames.json)."""
    return _Model(
        (
            ("id", _TEXT),
            ("type", _TEXT),
            ("version", _TEXT),
            ("core", _core(passage_core, content)),
            ("asl", _accessibility("Asl")),
            ("braille", _accessibility("Braille")),
            ("cc", _accessibility("Cc", ("itemCcAudioAssociations", _ListOf(_CC_AUDIO)))),
            ("images", _Model((("imageResources", _ListOf(_IMAGE)),))),
            ("audio", _Model((("audioResources", _ListOf(_AUDIO)),))),
            (
                "textToSpeech",
                _Model((("isVisualTTSRequired", _TEXT), ("isVisualTTSProvided", _FLAG), ("isSightTTSProvided", _FLAG))),
            ),
            ("workflow", _Model((("workflowStatusCode", _TEXT),))),
            ("translations", _Model((("esp", content),))),
        )
    )


def legacy_item_json(document: dict, item_type: str) -> dict[str, Any]:
    """``item.json`` as the legacy service stored it: read into the model and written back by Jackson.

    Every property of the model, in its order, ``null`` where the document has none (Jackson writes nulls: the
    item.json files the model wrote carry ``"stimulusId": null``); no other property; each value as the model holds
    it (a scalar in a ``String`` becomes its text, ``"true"`` in a ``boolean`` becomes ``true``, a date becomes
    ``2018-05-25T20:57:45.000Z``). A value the model cannot read raises :class:`InvalidValue`, as the legacy
    service's parse failed (IIS util/ItemParser.java:31-33).
    """
    return _written_back(document, _item_model(item_type), "")


def _written_back(value: Any, kind: Any, path: str) -> Any:
    if isinstance(kind, _Model):
        return _model_written_back(value, kind, path)
    if isinstance(kind, _ListOf):
        return _list_written_back(value, kind, path)
    return kind(value, path)


def _model_written_back(value: Any, model: _Model, path: str) -> dict[str, Any] | None:
    source = _object(value, path or "item.json")
    if source is None:
        return None
    prefix = f"{path}." if path else ""
    return {name: _written_back(source.get(name), kind, prefix + name) for name, kind in model.properties}


def _list_written_back(value: Any, kind: _ListOf, path: str) -> list[Any] | None:
    if value is None:
        return None
    return [
        _written_back(element, kind.element, f"{path}[{index}]") for index, element in enumerate(_array(value, path))
    ]


# ------------------------------------------------------------------------------------------------ helpers


def _lookup(document: dict, path: tuple[str, ...]) -> Any:
    """The value at ``path``; None if it or any parent is missing or null. Every parent must be an object."""
    value: Any = document
    for depth, key in enumerate(path):
        parent = _object(value, ".".join(path[:depth])) if depth else value
        if parent is None:
            return None
        value = parent.get(key)
    return value


def _object(value: Any, path: str) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise InvalidValue(f"{path} must be an object or null, got {json_kind(value)}")


def _element(value: Any, path: str) -> Mapping[str, Any]:
    """An element of an array of objects: it must be an object (not null)."""
    if isinstance(value, dict):
        return value
    raise InvalidValue(f"{path} must be an object, got {json_kind(value)}")


def _array(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise InvalidValue(f"{path} must be an array or null, got {json_kind(value)}")


def _check_storable(document: dict) -> None:
    """The document must serialize to JSON that PostgreSQL's ``json`` type accepts (no NaN/Infinity)."""
    try:
        json.dumps(document, allow_nan=False)
    except RecursionError:
        raise InvalidValue("item.json is nested too deeply to be stored") from None
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"item.json cannot be stored as JSON: {exc}") from None
