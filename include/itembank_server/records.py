"""Values shared by the bank's record stores: GitLab's timestamp format and the not-found error."""

from __future__ import annotations

from datetime import UTC, datetime


class NotFoundError(KeyError):
    """No such group, project, hook or user."""


def timestamp(when: datetime | None = None) -> str:
    """GitLab's timestamp format: UTC with milliseconds, e.g. ``2024-01-05T10:20:30.123Z``."""
    when = when or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
