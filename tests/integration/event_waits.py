"""The wait of a webhook event that backs off, as the tests read it: ``next_attempt_at - now()`` at the moment of
reading, a little less than the back-off that ``EventLog.close`` set (the time between that statement and the read,
more on a loaded machine)."""

from __future__ import annotations

from dataclasses import dataclass

# Less than the smallest difference between two back-off steps the tests use, so a wrong step still fails.
READ_SLACK_SECONDS = 5.0
WAIT_SQL = "extract(epoch FROM next_attempt_at - now())"


@dataclass(frozen=True)
class BackOff:
    """Equal to a wait read at most READ_SLACK_SECONDS after a back-off of ``seconds`` was set."""

    seconds: float

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BackOff):
            return self.seconds == other.seconds
        if other is None or isinstance(other, bool | str):
            return False
        try:
            seconds = float(other)  # PostgreSQL's extract() gives a Decimal
        except (TypeError, ValueError):
            return False
        return self.seconds - READ_SLACK_SECONDS < seconds <= self.seconds

    def __repr__(self) -> str:
        return f"BackOff({self.seconds:g} s, read up to {READ_SLACK_SECONDS:g} s later)"


def back_offs(*seconds: float | None) -> list[BackOff | None]:
    return [None if value is None else BackOff(value) for value in seconds]
