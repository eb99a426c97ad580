"""``item.json`` → rows of ``item``, ``item_attachment`` and ``item_form`` (reference §2.3, legacy tag 0.1.46).

Two steps, both pure (no I/O):

* :func:`parse_item_json` turns the raw bytes of ``item.json`` into a JSON object;
* :func:`map_item` turns that object into a :class:`MappedItem`: the ``item`` columns the mapping owns, the
  attachment rows and the form rows.

Everything wrong with the content raises :class:`~imrt_sync.errors.ItemValidationError` (a permanent per-item
error) whose problem names the JSON path, e.g. ``core.metadata.grade must be a string or null, got list``.
A missing field and an explicit ``null`` are treated alike everywhere. Unknown fields are allowed and kept
in ``item_json``.

Leniency follows what the legacy Jackson model accepted: numbers given as numeric strings (exposures,
quintile, ids), integers and booleans where a string is expected (Jackson's scalar coercion), and the
strings ``"true"``/``"false"`` where a boolean is expected.
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

__all__ = ["MAX_ITEM_JSON_BYTES", "MappedItem", "map_item", "parse_item_json"]

MAX_ITEM_JSON_BYTES = 5 * 1024 * 1024
"""Largest ``item.json`` accepted by :func:`parse_item_json` (bytes)."""

STIMULUS_TYPE = "stim"
ATTACHMENT_TYPES = ("asl", "braille", "cc")
"""The ``item_attachment.file_type`` values, each also the top-level section of item.json it comes from."""

ID_NOT_A_NUMBER = "The id is not a number and cannot be ingested into the system"
"""The legacy text for a non-numeric ``id``."""

_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1  # PostgreSQL INTEGER
_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")
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


def _finite_float(text: str) -> float:
    value = float(text)
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
    if value is None or value == "":
        raise _Invalid("id is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid(f"id must be a string or an integer, got {_kind(value)}")
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise _Invalid(f"{ID_NOT_A_NUMBER}: {_shorten(value)!r}")
        number = _digits_to_int(value)
    elif isinstance(value, float):  # Jackson turned 205030.0 into the string "205030.0", which is not a number
        raise _Invalid(f"{ID_NOT_A_NUMBER}: {value!r}")
    else:
        number = value
    if number is None or not 1 <= number <= _INT4_MAX:
        raise _Invalid(f"id must be between 1 and {_INT4_MAX}, got {_value_text(value)}")
    return number


def _item_type(value: Any) -> str:
    if value is None or value == "":
        raise _Invalid("type is missing")
    if not isinstance(value, str):
        raise _Invalid(f"type must be a non-empty string, got {_kind(value)}")
    return _storable_text(value, "type")


def _stimulus_id(document: dict) -> int | None:
    path = "core.stimulusId"
    value = _lookup(document, ("core", "stimulusId"))
    if value is None or value == "":
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = _digits_to_int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _Invalid(f"{path} must be a numeric id or null, got {_describe(value)}")
    if number is None or not 1 <= number <= _INT4_MAX:
        raise _Invalid(f"{path} must be between 1 and {_INT4_MAX}, got {_value_text(value)}")
    return number


# ----------------------------------------------------------------------------------- value converters
# Each takes the JSON value found at ``path`` (None when missing or null) and returns the column value.


def _text(value: Any, path: str) -> str:
    """A ``VARCHAR NOT NULL`` column: null → ""; integers and booleans as Jackson coerces them."""
    text = _optional_text(value, path)
    return "" if text is None else text


def _optional_text(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than int → str allows
            raise _Invalid(f"{path} must be a string or null, got {_describe(value)}") from None
    if isinstance(value, str):
        return _storable_text(value, path)
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
    ("target", "AssessmentTarget"),
)

FIELD_COLUMNS: tuple[tuple[str, tuple[str, ...], _Converter], ...] = (
    ("workflow_status", ("workflow", "workflowStatusCode"), _text),
    ("subject", (*_METADATA, "subject"), _text),
    ("grade", (*_METADATA, "grade"), _text),
    ("dok", (*_METADATA, "depthOfKnowledge"), _text),
    ("organization_type_id", (*_METADATA, "organizationTypeId"), _text),
    ("organization_name", (*_METADATA, "organizationName"), _text),
    ("content_task_model", (*_METADATA, "contentTaskModel"), _text),
    ("performance_task", (*_METADATA, "performanceTask"), _text),
    ("writing_purpose", (*_METADATA, "writingPurpose"), _text),
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


def _field_columns(document: dict) -> dict[str, Any]:
    return {column: convert(_lookup(document, path), ".".join(path)) for column, path, convert in FIELD_COLUMNS}


# -------------------------------------------------------------------------------------------- attachments


def _attachments(document: dict) -> tuple[dict[str, Any], ...]:
    """``{asl,braille,cc}.attachments[]`` de-duplicated on (file_name, file_type).

    Of duplicates, the one with the latest ``uploadedDate`` wins (the last one on a tie); the row keeps the
    position of the first occurrence.
    """
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for file_type in ATTACHMENT_TYPES:
        path = f"{file_type}.attachments"
        for index, element in enumerate(_array(_lookup(document, (file_type, "attachments")), path)):
            row = _attachment(element, f"{path}[{index}]", file_type)
            key = (row["file_name"], file_type)
            if key not in chosen or _upload_order(row) >= _upload_order(chosen[key]):
                chosen[key] = row
    return tuple(chosen.values())


def _attachment(element: Any, path: str, file_type: str) -> dict[str, Any]:
    element = _element(element, path)
    file_name = element.get("fileName")
    if not isinstance(file_name, str) or file_name == "":
        raise _Invalid(f"{path}.fileName must be a non-empty string, got {_describe(file_name)}")
    return {
        "file_name": _storable_text(file_name, f"{path}.fileName"),
        "file_type": file_type,
        "uploaded_at": _timestamp(element.get("uploadedDate"), f"{path}.uploadedDate"),
    }


def _upload_order(row: dict[str, Any]) -> tuple[int, datetime]:
    uploaded_at = row["uploaded_at"]
    return (0, _EPOCH) if uploaded_at is None else (1, uploaded_at)


# -------------------------------------------------------------------------------------- test administration


@dataclass(frozen=True)
class _Administration:
    path: str
    raw: dict
    administration_id: str | None
    forms: tuple[dict[str, Any], ...]


def _administrations(document: dict) -> list[_Administration]:
    path = "core.testAdministration.administrations"
    elements = _array(_lookup(document, ("core", "testAdministration", "administrations")), path)
    administrations = []
    for index, element in enumerate(elements):
        element_path = f"{path}[{index}]"
        raw = _element(element, element_path)
        administrations.append(
            _Administration(
                path=element_path,
                raw=raw,
                administration_id=_optional_text(raw.get("administrationId"), f"{element_path}.administrationId"),
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
        forms.append(
            {
                "assessment_type": _optional_text(form.get("assessmentType"), f"{form_path}.assessmentType"),
                "form_id": _optional_text(form.get("formId"), f"{form_path}.formId"),
                "form_type": _optional_text(form.get("formType"), f"{form_path}.formType"),
                "exposures": _integer(form.get("exposures"), f"{form_path}.exposures"),
            }
        )
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
    path = "core.testAdministration.fieldTestAdministrationId"
    field_test_id = _optional_text(_lookup(document, ("core", "testAdministration", "fieldTestAdministrationId")), path)
    if field_test_id is None:
        return None
    for administration in administrations:
        if administration.administration_id == field_test_id:
            data_path = f"{administration.path}.fieldTestData"
            field_test_data = _object(administration.raw.get("fieldTestData"), data_path)
            if field_test_data is None:
                return None
            return _integer(field_test_data.get("itemDifficultyQuintile"), f"{data_path}.itemDifficultyQuintile")
    return None


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
