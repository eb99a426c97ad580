"""Shared by the end-to-end tests that run the real Airflow stack."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float, what: str):
    """Poll an observable condition until it holds (returns its truthy value) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
