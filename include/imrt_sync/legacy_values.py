"""How the legacy service (tag 0.1.46) read one JSON value of ``item.json`` into an ``item`` column.

The legacy service read ``item.json`` into the ap-common ``Item`` with Jackson 2.8 (the version Spring Boot 1.5.9
manages) and turned it into columns in ``ItemRevisionImpl``. Each rule cites its source as ``IIS:<path>:<line>``
(SmarterApp/AP_IMRT_ItemIngestService@0.1.46) or ``Common:<path>:<line>`` (SmarterApp/AP_IMRT_Common@0.1.39, the
version that IIS 0.1.46 depends on):

* ids are Java ``Integer.valueOf`` of the text: an optional sign and digits, so ``"+5"``, ``"0"`` and ``"-5"`` are
  ids, ``" 5"`` and ``"5.0"`` are not (IIS ``model/ItemRevisionImpl.java:284``): :func:`java_integer_value_of`;
* scalars where text is expected become their JSON text (Jackson's ``StringDeserializer``): ``5`` → ``"5"``,
  ``5.0`` → ``"5.0"``, ``true`` → ``"true"``: :func:`jackson_string`, :func:`text_or_none`;
* ``itemDifficultyQuintile`` is Guava ``Ints.tryParse`` of that text: not a number → NULL, never an error
  (IIS ``model/ItemRevisionImpl.java:258-259``): :func:`guava_int_or_none`;
* ``exposures`` is a Jackson ``Integer``: numeric strings (trimmed, signed) and ``""`` (null) are accepted:
  :func:`integer_or_none`;
* the strings ``"true"``/``"false"`` are accepted where a boolean is expected: :func:`boolean_or_none`;
* dates are ISO-8601 text or epoch milliseconds: :func:`timestamp_or_none`;
* a ``String`` of the model holds the JSON text of any scalar, and a ``Date`` is written back as the model wrote it,
  ``2018-05-25T20:57:45.000Z``: :func:`model_text`, :func:`model_date` (for ``item_json``, ``imrt_sync.mapping``).

Every converter takes the JSON value found at ``path`` (None when missing or null) and the path for messages, and
raises :class:`InvalidValue` for a value the column cannot take. Where the legacy behaviour was a hazard the safer
choice is kept; ``docs/legacy-differences.md`` lists them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import PermanentError

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
"""The range of a PostgreSQL INTEGER (and of a Java ``int``)."""

JAVA_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")
"""``Integer.valueOf``/``Integer.parseInt`` (Java 8) and Jackson's ``Integer``: an optional sign and digits.

Java also takes non-ASCII digits (``"٥"``); we take ASCII digits only (docs/legacy-differences.md)."""
_GUAVA_INTEGER = re.compile(r"-?[0-9]+")
"""Guava ``Ints.tryParse``: an optional minus sign and ASCII digits (no ``+``, no blanks)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidValue(PermanentError):
    """A value the mapping cannot take; ``problem`` names its JSON path. The mapping adds the project and item id."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class JsonFloat(float):
    """A JSON number with a fraction or exponent that remembers its text, as Jackson's parser does (``5.0``
    read into a Java ``String`` is ``"5.0"``, ``1e2`` is ``"1e2"``). Serializes like any float."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonFloat:
        number = super().__new__(cls, text)
        number.text = text
        return number


# --------------------------------------------------------------------------------------- Java and Jackson text


def java_integer_value_of(text: str) -> int | None:
    """``Integer.valueOf(text)`` (Java 8), or None where it throws ``NumberFormatException``."""
    if not JAVA_SIGNED_DIGITS.fullmatch(text):
        return None
    number = _signed_digits_to_int(text)
    return number if number is not None and INT4_MIN <= number <= INT4_MAX else None


def jackson_string(value: Any) -> str:
    """The text Jackson gives a ``String`` field for a JSON scalar: its JSON spelling (``5``, ``5.0``, ``true``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 200 else _value_text(value)
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else repr(value)


# ------------------------------------------------------------------------------------------- column converters


def text_or_empty(value: Any, path: str) -> str:
    """A ``VARCHAR NOT NULL`` column: null → ""; integers and booleans as Jackson coerces them."""
    text = text_or_none(value, path)
    return "" if text is None else text


def text_or_none(value: Any, path: str) -> str | None:
    """A Java ``String`` property: a JSON scalar becomes its JSON text; an object or array fails the item."""
    if value is None:
        return None
    if isinstance(value, str):
        return storable_text(value, path)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        raise InvalidValue(f"{path} must be a string or null, got {describe_json_value(value)}")
    if isinstance(value, (bool, int, float)):
        return jackson_string(value)
    raise InvalidValue(f"{path} must be a string or null, got {json_kind(value)}")


def boolean_or_none(value: Any, path: str) -> bool | None:
    """A JSON boolean (or ``"true"``/``"false"``, any case); null and ``""`` → None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "":
            return None
    raise InvalidValue(f"{path} must be a boolean or null, got {describe_json_value(value)}")


def boolean_as_text(value: Any, path: str) -> str:
    """A boolean stored as ``"true"``/``"false"``; null → ""."""
    flag = boolean_or_none(value, path)
    return "" if flag is None else ("true" if flag else "false")


def integer_or_none(value: Any, path: str) -> int | None:
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
        if JAVA_SIGNED_DIGITS.fullmatch(stripped):
            number = _signed_digits_to_int(stripped)
            if number is None:
                raise InvalidValue(f"{path} must fit a 32-bit integer, got {shorten(stripped)}")
    if number is None:
        raise InvalidValue(f"{path} must be an integer, a numeric string or null, got {describe_json_value(value)}")
    if not INT4_MIN <= number <= INT4_MAX:
        raise InvalidValue(f"{path} must fit a 32-bit integer, got {_value_text(value)}")
    return number


def guava_int_or_none(value: Any, path: str) -> int | None:
    """Guava ``Ints.tryParse`` of the text when it is not blank (IIS model/ItemRevisionImpl.java:258-259): a text
    that is not a number gives NULL, never an error. Objects and arrays did not parse into the String field."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise InvalidValue(f"{path} must be a string, a number or null, got {json_kind(value)}")
    text = jackson_string(value)
    if not _GUAVA_INTEGER.fullmatch(text):
        return None
    number = _signed_digits_to_int(text)
    return number if number is not None and INT4_MIN <= number <= INT4_MAX else None


def timestamp_or_none(value: Any, path: str) -> datetime | None:
    """ISO-8601 text (``2018-05-25T20:57:45.000Z``; no offset means UTC) or epoch milliseconds; null and "" → None."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        if isinstance(value, int) and not isinstance(value, bool):
            return _EPOCH + timedelta(milliseconds=value)
    except (ValueError, OverflowError):
        raise InvalidValue(f"{path} must be an ISO-8601 date-time, got {describe_json_value(value)}") from None
    raise InvalidValue(f"{path} must be an ISO-8601 date-time string or null, got {json_kind(value)}")


def model_text(value: Any, path: str) -> str | None:
    """A ``String`` property of the ap-common model as Jackson reads it (``StringDeserializer``): a JSON scalar becomes
    its JSON text; an object or an array cannot be read. Unlike :func:`text_or_none` no column limits apply."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)) or (
        isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200
    ):
        raise InvalidValue(f"{path} must be a string or null, got {describe_json_value(value)}")
    return jackson_string(value)


def model_date(value: Any, path: str) -> str | None:
    """A ``java.util.Date`` of the model, written back as every item.json the model wrote has it: UTC with
    milliseconds, ``2018-05-25T20:57:45.000Z`` (IIS src/test/resources/json/item-with-duplicate-asl-filenames.json
    at 0.1.46). Input as :func:`timestamp_or_none` reads it."""
    moment = timestamp_or_none(value, path)
    if moment is None:
        return None
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise InvalidValue(f"{path} must be an ISO-8601 date-time, got {describe_json_value(value)}") from None
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def storable_text(value: str, path: str) -> str:
    """Text PostgreSQL can store in a VARCHAR: no NUL character, no unpaired surrogate."""
    if "\x00" in value:
        raise InvalidValue(f"{path} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{path} must be valid Unicode text (it has an unpaired surrogate)") from None
    return value


def _digits_to_int(digits: str) -> int | None:
    """``int(digits)`` for ASCII digits, or None when it has more than 10 significant digits (beyond INTEGER)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 10 else None


def _signed_digits_to_int(text: str) -> int | None:
    sign = -1 if text[0] == "-" else 1
    number = _digits_to_int(text.lstrip("+-"))
    return None if number is None else sign * number


# ---------------------------------------------------------------------------------------------------- messages

_KINDS = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}


def json_kind(value: Any) -> str:
    """The JSON kind of ``value`` for messages ("got list")."""
    if value is None:
        return "null"
    if isinstance(value, JsonFloat):
        return "number"
    return _KINDS.get(type(value), type(value).__name__)


def describe_json_value(value: Any) -> str:
    """:func:`json_kind` plus the value itself for scalars: ``string 'abc'``, ``number 2.5``."""
    if isinstance(value, str):
        return f"string {shorten(value)!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{json_kind(value)} {_value_text(value)}"
    return json_kind(value)


def _value_text(value: Any) -> str:
    """A short text of a scalar for messages; safe for integers too large for ``str()``."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<{value.bit_length()}-bit integer>"
    return shorten(value if isinstance(value, str) else repr(value))


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (ending in ``...`` when cut), for messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
