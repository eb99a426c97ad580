"""``item.json`` → rows of ``item``, ``item_attachment`` and ``item_form`` (reference §2.3, legacy tag 0.1.46).

Two steps, both pure (no I/O):

* :func:`parse_item_json` turns the raw bytes of ``item.json`` into a JSON object;
* :func:`map_item` turns that object into a :class:`MappedItem`: the ``item`` columns the mapping owns, the
  attachment rows and the form rows.

Everything wrong with the content raises :class:`~imrt_sync.errors.ItemValidationError` (a permanent per-item
error) whose problem names the JSON path, e.g. ``core.metadata.grade must be a string or null, got list``.
A missing field and an explicit ``null`` are treated alike everywhere. Unknown fields are allowed and kept
in ``item_json``.

Leniency follows what the legacy service accepted at tag 0.1.46 (ap-common ``Item`` read by Jackson 2.8, the
version Spring Boot 1.5.9 manages; ``ItemRevisionImpl`` for the columns). Each rule cites its source as
``IIS:<path>:<line>`` (SmarterApp/AP_IMRT_ItemIngestService@0.1.46) or ``Common:<path>:<line>``
(SmarterApp/AP_IMRT_Common@0.1.39, the version that IIS 0.1.46 depends on):

* ids (``id``, ``core.stimulusId``) are Java ``Integer.valueOf`` of the text: an optional sign and digits, so
  ``"+5"``, ``"0"`` and ``"-5"`` are ids, ``" 5"`` and ``"5.0"`` are not (IIS ``model/ItemRevisionImpl.java:284``);
* scalars where text is expected become their JSON text (Jackson's ``StringDeserializer``): ``5`` → ``"5"``,
  ``5.0`` → ``"5.0"``, ``true`` → ``"true"``;
* ``itemDifficultyQuintile`` is Guava ``Ints.tryParse`` of that text: not a number → NULL, never an error
  (IIS ``model/ItemRevisionImpl.java:258-259``);
* ``exposures`` is a Jackson ``Integer``: numeric strings (trimmed, signed) and ``""`` (null) are accepted;
* the strings ``"true"``/``"false"`` are accepted where a boolean is expected.

Where the legacy behaviour was a hazard the safer choice is kept; ``docs/legacy-differences.md`` lists them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from imrt_sync.errors import ItemValidationError

__all__ = ["MAPPED_PATHS", "MAX_ITEM_JSON_BYTES", "MappedItem", "map_item", "parse_item_json"]

MAX_ITEM_JSON_BYTES = 5 * 1024 * 1024
"""Largest ``item.json`` accepted by :func:`parse_item_json` (bytes)."""

STIMULUS_TYPE = "stim"
ATTACHMENT_TYPES = ("asl", "braille", "cc")
"""The ``item_attachment.file_type`` values, each also the top-level section of item.json it comes from."""

ID_NOT_A_NUMBER = "The id is not a number and cannot be ingested into the system"
"""The legacy text for a non-numeric ``id``."""

_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1  # PostgreSQL INTEGER
_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")
"""``Integer.valueOf``/``Integer.parseInt`` (Java 8) and Jackson's ``Integer``: an optional sign and digits.

Java also takes non-ASCII digits (``"٥"``); we take ASCII digits only (docs/legacy-differences.md)."""
_GUAVA_INTEGER = re.compile(r"-?[0-9]+")
"""Guava ``Ints.tryParse``: an optional minus sign and ASCII digits (no ``+``, no blanks)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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
    stimulus_id: int | None
    """``core.stimulusId`` as int for non-stimulus items, else None (same as ``columns["associated_stimulus_id"]``)."""
    attachments: tuple[dict[str, Any], ...]
    """``{"file_name", "file_type", "uploaded_at"}``, unique on (file_name, file_type)."""
    forms: tuple[dict[str, Any], ...]
    """``{"assessment_type", "form_id", "form_type", "exposures"}``, one per form of every administration."""


class _Invalid(Exception):
    """A problem found while mapping; :func:`map_item` adds the project and item id."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


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
        raise ItemValidationError(project_id, f"item.json is {len(raw)} bytes, larger than the limit of {max_bytes} bytes")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ItemValidationError(project_id, f"item.json is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    document = _loads(text.removeprefix("\ufeff"), project_id)
    if not isinstance(document, dict):
        raise ItemValidationError(project_id, f"item.json must be a JSON object, got {_kind(document)}")
    return document


def _loads(text: str, project_id: int) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        problem = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except _Invalid as exc:
        problem = exc.problem
    except RecursionError:
        problem = "it is nested too deeply"
    except ValueError as exc:  # e.g. an integer with more digits than int() accepts
        problem = str(exc)
    raise ItemValidationError(project_id, f"item.json is not valid JSON: {problem}")


def _reject_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not a JSON number")


class _JsonFloat(float):
    """A JSON number with a fraction or exponent that remembers its text, as Jackson's parser does (``5.0``
    read into a Java ``String`` is ``"5.0"``, ``1e2`` is ``"1e2"``). Serializes like any float."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> _JsonFloat:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _finite_float(text: str) -> float:
    value = _JsonFloat(text)
    if not math.isfinite(value):
        raise _Invalid(f"the number {_shorten(text)} is out of range")
    return value


# --------------------------------------------------------------------------------------------------- mapping


def map_item(document: dict, project_id: int) -> MappedItem:
    """Map a parsed ``item.json`` to rows. Raises :class:`ItemValidationError` and nothing else for bad content."""
    if not isinstance(document, dict):
        raise ItemValidationError(project_id, f"item.json must be a JSON object, got {_kind(document)}")
    try:
        item_id = _item_id(document.get("id"))
    except _Invalid as exc:
        raise ItemValidationError(project_id, exc.problem) from None
    try:
        return _map_document(document, item_id)
    except _Invalid as exc:
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
    return MappedItem(
        item_id=item_id,
        item_type=item_type,
        is_stimulus=is_stimulus,
        columns=columns,
        item_json=document,
        stimulus_id=stimulus_id,
        attachments=_attachments(document),
        forms=forms,
    )


def _item_id(value: Any) -> int:
    """``Integer.valueOf(item.getId())`` (IIS model/ItemRevisionImpl.java:90, :282-287) of the JSON text."""
    if value is None or value == "":
        raise _Invalid("id is missing")
    if isinstance(value, (dict, list)):
        raise _Invalid(f"id must be a string or an integer, got {_kind(value)}")
    number = _java_integer(_scalar_text(value))
    if number is None:
        raise _Invalid(f"{ID_NOT_A_NUMBER}: {_shorten(_scalar_text(value))!r}")
    return number


def _item_type(value: Any) -> str:
    if value is None or value == "":
        raise _Invalid("type is missing")
    if not isinstance(value, str):
        raise _Invalid(f"type must be a non-empty string, got {_kind(value)}")
    return _storable_text(value, "type")


def _stimulus_id(document: dict) -> int | None:
    """Null or ``""`` → no stimulus (Spring ``StringUtils.isEmpty``, IIS model/ItemRevisionImpl.java:74-77); else an id
    read like ``id``: one that is not a number fails the item, as it did in the legacy service."""
    path = "core.stimulusId"
    value = _lookup(document, ("core", "stimulusId"))
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        raise _Invalid(f"{path} must be a numeric id or null, got {_kind(value)}")
    text = _scalar_text(value)
    number = _java_integer(text)
    if number is None:
        if _SIGNED_DIGITS.fullmatch(text):
            raise _Invalid(f"{path} must fit a 32-bit integer, got {_shorten(text)}")
        raise _Invalid(f"{path} must be a numeric id or null, got {_describe(value)}")
    return number


def _java_integer(text: str) -> int | None:
    """``Integer.valueOf(text)`` (Java 8), or None where it throws ``NumberFormatException``."""
    if not _SIGNED_DIGITS.fullmatch(text):
        return None
    number = _signed_digits_to_int(text)
    return number if number is not None and _INT4_MIN <= number <= _INT4_MAX else None


def _scalar_text(value: Any) -> str:
    """The text Jackson gives a ``String`` field for a JSON scalar: its JSON spelling (``5``, ``5.0``, ``true``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 200 else _value_text(value)
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else repr(value)


# ----------------------------------------------------------------------------------- value converters
# Each takes the JSON value found at ``path`` (None when missing or null) and returns the column value.


def _text(value: Any, path: str) -> str:
    """A ``VARCHAR NOT NULL`` column: null → ""; integers and booleans as Jackson coerces them."""
    text = _optional_text(value, path)
    return "" if text is None else text


def _optional_text(value: Any, path: str) -> str | None:
    """A Java ``String`` property: a JSON scalar becomes its JSON text; an object or array fails the item."""
    if value is None:
        return None
    if isinstance(value, str):
        return _storable_text(value, path)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        raise _Invalid(f"{path} must be a string or null, got {_describe(value)}")
    if isinstance(value, (bool, int, float)):
        return _scalar_text(value)
    raise _Invalid(f"{path} must be a string or null, got {_kind(value)}")


def _flag(value: Any, path: str) -> bool | None:
    """A JSON boolean (or ``"true"``/``"false"``, any case); null and ``""`` → None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "":
            return None
    raise _Invalid(f"{path} must be a boolean or null, got {_describe(value)}")


def _flag_text(value: Any, path: str) -> str:
    """A boolean stored as ``"true"``/``"false"``; null → ""."""
    flag = _flag(value, path)
    return "" if flag is None else ("true" if flag else "false")


def _integer(value: Any, path: str) -> int | None:
    """An INTEGER column: a JSON integer, an integral float or a numeric string; null and ``""`` → None."""
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        stripped = value.strip()
        if stripped == "":
            return None
        if _SIGNED_DIGITS.fullmatch(stripped):
            number = _signed_digits_to_int(stripped)
            if number is None:
                raise _Invalid(f"{path} must fit a 32-bit integer, got {_shorten(stripped)}")
    if number is None:
        raise _Invalid(f"{path} must be an integer, a numeric string or null, got {_describe(value)}")
    if not _INT4_MIN <= number <= _INT4_MAX:
        raise _Invalid(f"{path} must fit a 32-bit integer, got {_value_text(value)}")
    return number


def _quintile(value: Any, path: str) -> int | None:
    """Guava ``Ints.tryParse`` of the text when it is not blank (IIS model/ItemRevisionImpl.java:258-259): a text
    that is not a number gives NULL, never an error. Objects and arrays did not parse into the String field."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise _Invalid(f"{path} must be a string, a number or null, got {_kind(value)}")
    text = _scalar_text(value)
    if not _GUAVA_INTEGER.fullmatch(text):
        return None
    number = _signed_digits_to_int(text)
    return number if number is not None and _INT4_MIN <= number <= _INT4_MAX else None


def _timestamp(value: Any, path: str) -> datetime | None:
    """ISO-8601 text (``2018-05-25T20:57:45.000Z``; no offset means UTC) or epoch milliseconds; null and "" → None."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
        if isinstance(value, int) and not isinstance(value, bool):
            return _EPOCH + timedelta(milliseconds=value)
    except (ValueError, OverflowError):
        raise _Invalid(f"{path} must be an ISO-8601 date-time, got {_describe(value)}") from None
    raise _Invalid(f"{path} must be an ISO-8601 date-time string or null, got {_kind(value)}")


# ------------------------------------------------------------------------------------------ field table

_Converter = Callable[[Any, str], Any]

_METADATA = ("core", "metadata")
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
    ("workflow_status", ("workflow", "workflowStatusCode"), _text),
    ("subject", (*_METADATA, "subject"), _text),
    # ItemRevisionImpl.java:104 reads getIntendedGrade(); JSON "intendedGrade" since IIS 90379de (see _STANDARD_FIELDS)
    ("grade", (*_METADATA, "intendedGrade"), _text),
    ("dok", (*_METADATA, "depthOfKnowledge"), _text),
    # JSON names: IIS src/test/resources/json/good-item-with-org-fields.json:55,57, asserted by
    # src/test/java/.../service/ItemRevisionImplTest.java:301-307 (IIS@0.1.46)
    ("organization_type_id", (*_METADATA, "organizationTypeId"), _text),
    ("organization_name", (*_METADATA, "organizationName"), _text),
    ("content_task_model", (*_METADATA, "contentTaskModel"), _text),
    ("performance_task", (*_METADATA, "performanceTask"), _text),
    ("writing_purpose", (*_METADATA, "writingPurpose"), _text),
    # JSON name: IIS src/test/resources/json/math-all-standard-ids.json:113, compared by ItemRevisionImplTest.java:481
    ("item_author", (*_METADATA, "itemAuthor"), _text),
    *(
        (f"{ordinal}_{column}", (*_METADATA, f"{ordinal}{field}"), _text)
        for ordinal in _ORDINALS
        for column, field in _STANDARD_FIELDS
    ),
    ("asl_required", ("asl", "isAslRequired"), _text),
    ("asl_provided", ("asl", "isAslProvided"), _flag_text),
    ("braille_required", ("braille", "isBrailleRequired"), _text),
    ("braille_provided", ("braille", "isBrailleProvided"), _flag_text),
    ("cc_required", ("cc", "isCcRequired"), _text),
    ("cc_provided", ("cc", "isCcProvided"), _flag_text),
    ("translation_required", ("translations", "esp", "isRequired"), _text),
    ("translation_provided", ("translations", "esp", "isProvided"), _flag_text),
    ("visual_tts_required", ("textToSpeech", "isVisualTTSRequired"), _text),
    ("visual_tts_provided", ("textToSpeech", "isVisualTTSProvided"), _flag),
    ("sight_tts_provided", ("textToSpeech", "isSightTTSProvided"), _flag),
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
        raise _Invalid(f"{path}.fileName must be a non-empty string, got {_describe(file_name)}")
    return {
        "file_name": _storable_text(file_name, f"{path}.fileName"),
        "file_type": file_type,
        # No uploadedDate: NULL. Legacy threw a NullPointerException (ItemRevisionImpl.java:305): a hazard.
        "uploaded_at": _timestamp(element.get("uploadedDate"), f"{path}.uploadedDate"),
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
                administration_id=_optional_text(raw.get("administrationId"), f"{element_path}.administrationId"),
                has_field_test_data=field_test_data is not None,
                quintile=None
                if field_test_data is None
                else _quintile(field_test_data.get("itemDifficultyQuintile"), f"{data_path}.itemDifficultyQuintile"),
                forms=_forms(raw, element_path),
            )
        )
    return administrations


def _forms(administration: dict, administration_path: str) -> tuple[dict[str, Any], ...]:
    path = f"{administration_path}.forms"
    forms = []
    for index, element in enumerate(_array(administration.get("forms"), path)):
        form_path = f"{path}[{index}]"
        form = _element(element, form_path)
        row = {column: _optional_text(form.get(field), f"{form_path}.{field}") for column, field in _FORM_TEXT_FIELDS}
        row["exposures"] = _integer(form.get("exposures"), f"{form_path}.exposures")
        forms.append(row)
    return tuple(forms)



def _test_administration_columns(
    document: dict, administrations: list[_Administration], forms: tuple[dict[str, Any], ...]
) -> dict[str, int | None]:
    if not administrations:
        return {"exposures_count": None, "form_count": None, "item_difficulty_quintile": None}
    exposures_count = sum(form["exposures"] or 0 for form in forms)
    if not _INT4_MIN <= exposures_count <= _INT4_MAX:
        raise _Invalid(f"core.testAdministration: the exposures of all forms add up to {exposures_count}, too large for an integer")
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
    field_test_id = _optional_text(_lookup(document, ("core", "testAdministration", "fieldTestAdministrationId")), path)
    matching = [a for a in administrations if a.administration_id == field_test_id]
    return matching[-1].quintile if matching else None


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
    raise _Invalid(f"{path} must be an object or null, got {_kind(value)}")


def _element(value: Any, path: str) -> Mapping[str, Any]:
    """An element of an array of objects: it must be an object (not null)."""
    if isinstance(value, dict):
        return value
    raise _Invalid(f"{path} must be an object, got {_kind(value)}")


def _array(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise _Invalid(f"{path} must be an array or null, got {_kind(value)}")


def _storable_text(value: str, path: str) -> str:
    """Text PostgreSQL can store in a VARCHAR: no NUL character, no unpaired surrogate."""
    if "\x00" in value:
        raise _Invalid(f"{path} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"{path} must be valid Unicode text (it has an unpaired surrogate)") from None
    return value


def _check_storable(document: dict) -> None:
    """The document must serialize to JSON that PostgreSQL's ``json`` type accepts (no NaN/Infinity)."""
    try:
        json.dumps(document, allow_nan=False)
    except RecursionError:
        raise _Invalid("item.json is nested too deeply to be stored") from None
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"item.json cannot be stored as JSON: {exc}") from None


def _digits_to_int(digits: str) -> int | None:
    """``int(digits)`` for ASCII digits, or None when it has more than 10 significant digits (beyond INTEGER)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 10 else None


def _signed_digits_to_int(text: str) -> int | None:
    sign = -1 if text[0] == "-" else 1
    number = _digits_to_int(text.lstrip("+-"))
    return None if number is None else sign * number


_KINDS = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}


def _kind(value: Any) -> str:
    """The JSON kind of ``value`` for messages ("got list")."""
    if value is None:
        return "null"
    if isinstance(value, _JsonFloat):
        return "number"
    return _KINDS.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    """``_kind`` plus the value itself for scalars: ``string 'abc'``, ``number 2.5``."""
    if isinstance(value, str):
        return f"string {_shorten(value)!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{_kind(value)} {_value_text(value)}"
    return _kind(value)


def _value_text(value: Any) -> str:
    """A short text of a scalar for messages; safe for integers too large for ``str()``."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<{value.bit_length()}-bit integer>"
    return _shorten(value if isinstance(value, str) else repr(value))


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
