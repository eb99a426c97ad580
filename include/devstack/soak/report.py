"""The soak's result and its printed report: actions by kind, runs, hook events, latency, the final run, the counts
that must all be 0, and each difference with the action history of its project."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from ..project import REPO_ROOT
from .compare import Comparison
from .journal import DONE, ERROR, Entry, Journal
from .latency import Latency
from .quiesce import Quiet
from .row_history import WentBack, WrongDeletion
from .unseen import UNEXPLAINED, WATCHER_MISSED, Unseen, breakdown, count

PRODUCT_PATHS = ("dags", "plugins", "include/imrt_sync", "include/imrt_compat", "include/itembank_server")
HISTORY_LINES = 25
CONTEXT_SECONDS = 30.0
CONTEXT_KINDS = frozenset(
    {
        "access_flap",
        "access_narrow",
        "restore_access",
        "visibility",
        "fault",
        "close_faults",
        "restart_scheduler",
        "start_scheduler",
        "kill_task",
    }
)


@dataclass
class SoakResult:
    seed: int
    minutes: float
    tree: str
    first_sync: str
    journal: Journal
    latency: Latency
    quiet: Quiet
    comparison: Comparison
    malformed_heads: dict[int, str] = field(default_factory=dict)
    wrong_deletions: list[WrongDeletion] = field(default_factory=list)
    went_back: list[WentBack] = field(default_factory=list)
    unseen: list[Unseen] = field(default_factory=list)  # the pushes no row ever showed, each with its reason
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    def errors(self) -> list[Entry]:
        return [e for e in self.journal.entries if e.outcome == ERROR]

    def final_run_unexpected_failures(self) -> list[str]:
        """Items the final incremental run failed other than the malformed heads (whose failure is expected); a
        failed run that names no failed item (it could not plan) counts as one."""
        if self.quiet.final_state == "success":
            return []
        named = re.search(r"Failed item bank ids: ([0-9, ]+)", self.quiet.final_message)
        if named is None:
            return [f"run {self.quiet.final_state}: {self.quiet.final_message[:200]}"]
        failed = {int(n) for n in named.group(1).replace(" ", "").split(",") if n}
        return [f"project {project_id}" for project_id in sorted(failed - set(self.malformed_heads))]

    def counts(self) -> dict[str, int]:
        """Every count that must be 0."""
        return {
            **self.comparison.counts(),
            "duplicate_item_ids": len(self.comparison.duplicate_ids),
            "deleted_while_in_scope": len(self.wrong_deletions),
            "rows_went_back": len(self.went_back),
            "unseen_pushes_unexplained": count(self.unseen, UNEXPLAINED),
            "unseen_pushes_missed_by_watcher": count(self.unseen, WATCHER_MISSED),
            "hook_events_left_due": self.quiet.events_left_due,
            "runs_left_running": len(self.quiet.active_runs),
            "final_run_unexpected_failures": len(self.final_run_unexpected_failures()),
            "soak_errors": len(self.errors()),
        }

    def done_kinds(self) -> set[str]:
        return self.journal.done_kinds()

    @property
    def passed(self) -> bool:
        return not any(self.counts().values())


def tree_state() -> str:
    """The commit the stack ran, and how many product files differed from it (other engineers' work in progress)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True).stdout.strip()

    changed = [line for line in git("status", "--porcelain", "--", *PRODUCT_PATHS).splitlines() if line]
    head = git("rev-parse", "--short", "HEAD") or "(not a git checkout)"
    return head + (f" + {len(changed)} uncommitted product files" if changed else "")


def settled(quiet: Quiet) -> str:
    return f"{quiet.settle_seconds:.0f} s" if quiet.settle_seconds is not None else "deadline passed"


def action_lines(journal: Journal) -> list[str]:
    lines = []
    for kind, outcomes in sorted(journal.counts().items()):
        parts = ", ".join(f"{outcomes[o]} {o}" for o in (DONE, "refused", "skipped", ERROR) if outcomes[o])
        lines.append(f"  {kind:<20} {parts}")
    return lines


def run_lines(quiet: Quiet) -> list[str]:
    runs, lines = quiet.runs, []
    for kind in sorted({kind for kind, _ in runs}):
        states = ", ".join(f"{runs[(kind, s)]} {s}" for k, s in sorted(runs) if k == kind)
        queued, ran = quiet.slowest.get(kind, (0.0, 0.0))
        lines.append(f"  {kind:<10} {states}; longest queued {queued:.0f} s, longest run {ran:.0f} s")
    return lines


def difference_lines(result: SoakResult) -> list[str]:
    lines = []
    for difference in result.comparison.differences:
        lines.append(f"  {difference.describe()}")
        project_id = difference.project_id
        if project_id is None:
            continue
        history = result.journal.history(project_id)
        lines.append(f"    history of project {project_id} ({len(history)} actions):")
        lines += [f"      {entry.line()}" for entry in history[-HISTORY_LINES:]]
    return lines


def wrong_deletion_lines(result: SoakResult) -> list[str]:
    """Each wrong deletion, its project's history and what happened to access, visibility, GitLab and the
    scheduler in the CONTEXT_SECONDS before it."""
    lines = []
    for wrong in result.wrong_deletions:
        history = result.journal.history(wrong.vanished.project_id)
        context = [
            e
            for e in result.journal.entries
            if e.kind in CONTEXT_KINDS and wrong.at - CONTEXT_SECONDS <= e.at <= wrong.at
        ]
        lines += [
            f"  {wrong.describe()}",
            f"    history of project {wrong.vanished.project_id}:",
            *(f"      {entry.line()}" for entry in history[-HISTORY_LINES:]),
            f"    access, visibility, faults and processes in the {CONTEXT_SECONDS:.0f} s before:",
            *(f"      {entry.line()}" for entry in context),
        ]
    return lines


def unseen_lines(result: SoakResult) -> list[str]:
    """Each push never seen in a row that is unexplained (IMRT lost it) or that the watcher missed, with its
    project's history."""
    lines = []
    for unseen in result.unseen:
        if unseen.reason not in (UNEXPLAINED, WATCHER_MISSED):
            continue
        history = result.journal.history(unseen.counted.push.project_id)
        lines += [
            f"  {unseen.describe()}",
            f"    history of project {unseen.counted.push.project_id}:",
            *(f"      {entry.line()}" for entry in history[-HISTORY_LINES:]),
        ]
    return lines


def render(result: SoakResult) -> str:
    quiet, comparison = result.quiet, result.comparison
    counts = result.counts()
    malformed = sum(
        1 for difference in comparison.differences if difference.expected and difference.expected.head_malformed
    )
    lines = [
        f"== chaos soak: seed {result.seed}, {result.minutes:g} min of actions, tree {result.tree}",
        "phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.timings.items()),
        f"first sync: {result.first_sync}",
        f"actions by kind ({len(result.journal.entries)} in all):",
        *action_lines(result.journal),
        "runs by kind and state:",
        *run_lines(quiet),
        "hook events: " + ", ".join(f"{n} {status}" for status, n in quiet.events.items()),
        f"push-to-row latency: {result.latency.describe()}",
        f"  {breakdown(result.unseen)}",
        f"quiescence: {settled(quiet)}; final incremental run {quiet.final_run}: {quiet.final_state}",
        f"  its exit message: {quiet.final_message[:600]}",
        f"malformed heads at the end (expected to keep their rows): {len(result.malformed_heads)}"
        + (f" ({malformed} of them differ)" if malformed else ""),
        f"comparison with the bank read by git: {comparison.expected} items expected, {comparison.rows} item rows",
        "counts (all must be 0): " + ", ".join(f"{name} {n}" for name, n in counts.items()),
    ]
    if comparison.differences:
        lines += ["differences:", *difference_lines(result)]
    if result.wrong_deletions:
        lines += ["rows deleted while their project was in the group or a subgroup:", *wrong_deletion_lines(result)]
    if result.went_back:
        lines += ["rows that went back to an older commit:"]
        for back in result.went_back:
            history = result.journal.history(back.moved.project_id)
            lines += [
                f"  {back.describe()}",
                f"    history of project {back.moved.project_id}:",
                *(f"      {entry.line()}" for entry in history[-HISTORY_LINES:]),
            ]
    if unseen_lines(result):
        lines += ["pushes never seen in a row, unexplained or missed by the watcher:", *unseen_lines(result)]
    if result.final_run_unexpected_failures():
        lines += [
            "the final run failed, other than for malformed heads: " + "; ".join(result.final_run_unexpected_failures())
        ]
    if result.errors():
        lines += ["soak errors:", *(f"  {e.line()}" for e in result.errors())]
    lines.append(
        f"verdict: {'PASS' if result.passed else 'FAIL'}"
        + ("" if result.passed else f" ({sum(1 for n in counts.values() if n)} non-zero counts)")
    )
    return "\n".join(lines)
