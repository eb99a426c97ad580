"""Rules shared by the bank's modules: its errors and GitLab's path rule (timestamps: :mod:`.records`)."""

from __future__ import annotations

import re

from .records import NotFoundError, timestamp

__all__ = [
    "PATH_FORMAT_MESSAGE",
    "NotFoundError",
    "ProjectExistsError",
    "timestamp",
    "valid_segment",
    "validate_segment",
]

_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

# Gitlab::PathRegex.project_path_format_message, the validation error of an invalid project path.
PATH_FORMAT_MESSAGE = (
    "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'"
)


class ProjectExistsError(ValueError):
    """A project with that path already exists in the group."""


def valid_segment(segment: str) -> bool:
    """Whether ``segment`` is a valid group or project path (one level of a full path)."""
    return bool(_PATH_SEGMENT.match(segment)) and not segment.endswith((".git", ".atom"))


def validate_segment(segment: str, what: str) -> None:
    if not valid_segment(segment):
        raise ValueError(f"invalid {what} path: {segment!r}")
