"""Waiting on observable state: poll a condition until it holds or a deadline passes (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlinePassed(TimeoutError):
    """A condition did not hold before its deadline."""


def poll_until(condition: Callable[[], T], timeout: float, what: str, period: float = 0.5) -> T:
    """The condition's first truthy value; ``DeadlinePassed`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DeadlinePassed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(period)
