"""Request parameters coerced like Grape does: booleans, integers and the JSON or form-encoded body."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from .responses import ApiError, invalid_param

if TYPE_CHECKING:
    from .api import ApiRequest

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def parse_bool(name: str, value: object) -> bool | None:
    """Grape's Boolean coercion; '' means absent."""
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid_param(name)


def parse_int(name: str, value: object, default: int) -> int:
    """Grape's Integer coercion; absent or '' is ``default``, anything else not an integer is 400."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise invalid_param(name)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 10)
    except ValueError:
        raise invalid_param(name) from None


def parse_optional_int(name: str, value: object) -> int | None:
    """An optional Integer parameter: None when absent."""
    if value is None or value == "":
        return None
    return parse_int(name, value, 0)


def body_params(request: ApiRequest) -> dict:
    """The parameters of a JSON or form-encoded request body."""
    if not request.body:
        return {}
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        payload = json.loads(request.body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ApiError(400, {"error": "message body does not match declared format"})
    return payload
