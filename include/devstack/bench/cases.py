"""The benchmark's cases and the fixed names of its item bank (group, token, webhook): shared by every part."""

from __future__ import annotations

GROUP = "iat-bench"
SEED = 5
TOKEN = "glpat-bench-token"
WEBHOOK_URL = "https://imrt.example.org/webHook"
WEBHOOK_SECRET = "bench-webhook-secret"

CASES = {
    "a": "first full sync",
    "b": "nightly incremental (1% changed, half of them with their hook removed, 0.25% deleted)",
    "c": "nothing changed",
    "d": "mode=full over the synced bank",
}
# The run cases in the order they build on each other; the planning-only case and the push-latency case are apart.
RUN_CASES = "abcd"
PLANNING = "p"
PLANNING_TITLE = "nothing-changed planning only (open_run: list_ids and the plan), generated bank"
PUSH_LATENCY_TITLE = "push-to-row latency of pushes made while a full sync runs (DAG mode)"
CASE_MODE = {"a": "incremental", "b": "incremental", "c": "incremental", "d": "full", PLANNING: "incremental"}
MODES = ("dag", "direct")


def nightly_counts(size: int) -> dict[str, int]:
    """How many items case (b) changes, unhooks and deletes: 1%, 0.5%, 0.25% (at least one each)."""
    return {
        "changed": max(1, round(size * 0.01)),
        "unhooked": max(1, round(size * 0.005)),
        "deleted": max(1, round(size * 0.0025)),
    }
