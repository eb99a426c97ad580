"""Rules shared by the bank's modules: its errors, GitLab's path rule and timestamp format."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

# Gitlab::PathRegex.project_path_format_message, the validation error of an invalid project path.
PATH_FORMAT_MESSAGE = (
    "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'"
)


class NotFoundError(KeyError):
    """No such group, project or hook."""


class ProjectExistsError(ValueError):
    """A project with that path already exists in the group."""


def timestamp(when: datetime | None = None) -> str:
    """GitLab's timestamp format: UTC with milliseconds, e.g. ``2024-01-05T10:20:30.123Z``."""
    when = when or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def valid_segment(segment: str) -> bool:
    """Whether ``segment`` is a valid group or project path (one level of a full path)."""
    return bool(_PATH_SEGMENT.match(segment)) and not segment.endswith((".git", ".atom"))


def validate_segment(segment: str, what: str) -> None:
    if not valid_segment(segment):
        raise ValueError(f"invalid {what} path: {segment!r}")
